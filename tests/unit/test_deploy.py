"""The deployment files describe the processes the README names, as an unprivileged user."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"


def test_the_image_is_multi_stage_and_runs_as_a_non_root_user() -> None:
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    stages = re.findall(r"^FROM .+ AS (\w+)$", dockerfile, re.MULTILINE)
    assert len(stages) >= 2
    users = re.findall(r"^USER (\S+)$", dockerfile, re.MULTILINE)
    assert users
    assert users[-1].split(":")[0] not in {"root", "0"}
    assert 'ENTRYPOINT ["parvis"]' in dockerfile


def test_compose_runs_postgres_redis_and_each_process_of_the_image() -> None:
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    services = compose["services"]
    assert {"postgres", "redis", "api", "projector", "worker", "migrate"} <= set(services)
    commands = {name: services[name]["command"] for name in ("api", "projector", "worker", "migrate")}
    assert commands == {"api": ["serve"], "projector": ["project"], "worker": ["work"], "migrate": ["migrate"]}
    for name in ("api", "projector", "worker"):
        env = services[name]["environment"]
        assert env["PARVIS_DATABASE_URL"].startswith("postgresql://")
        assert env["PARVIS_REDIS_URL"].startswith("redis://")
        assert services[name]["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
