"""The Kubernetes manifests: each overlay renders, every resource passes the Kubernetes schemas (offline), and the
processes run as the README describes them: unprivileged, probed where they have health endpoints, scaled, fenced."""

from __future__ import annotations

import copy
import os
import re
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from kubernetes_validate.utils import latest_version

from parvis.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
BUILDS = ("base", "overlays/staging", "overlays/production")
ENVIRONMENTS = ("overlays/staging", "overlays/production")
# Files that are not part of any build: filled in by hand, outside the repository.
TEMPLATES = ("secret.template.yaml",)
# The oldest Kubernetes these files are meant for, and the newest the validator knows.
VERSIONS = ("1.29", latest_version())

SECRET_SETTINGS = {
    "PARVIS_SECRET_KEY",
    "PARVIS_PREVIOUS_SECRET_KEYS",
    "PARVIS_DATABASE_URL",
    "PARVIS_READ_DATABASE_URL",
    "PARVIS_REDIS_URL",
}
COMMANDS = {"api": ["serve"], "projector": ["project"], "worker": ["work"], "migrate": ["migrate"]}
UID = 10001  # the user of deploy/Dockerfile

Doc = dict[str, Any]


# ------------------------------------------------------------------------------------------------ rendering
# There is no kustomize binary here and no PyPI package that runs it on Python 3.11, so the builds are rendered
# by the few lines below. They implement the part of kustomize these files use, with its semantics, and refuse
# anything else, so that a file using more fails here instead of being rendered differently.
_KUSTOMIZATION_FIELDS = {"apiVersion", "kind", "resources", "namespace", "labels", "images", "patches"}
# Strategic-merge keys of the lists these patches may reach; any other list is replaced (as for atomic lists).
_MERGE_KEYS = {
    "containers": "name",
    "initContainers": "name",
    "env": "name",
    "volumes": "name",
    "ports": "containerPort",
    "volumeMounts": "mountPath",
}
_CLUSTER_SCOPED = {"Namespace", "ClusterRole", "ClusterRoleBinding", "PersistentVolume", "StorageClass"}


def load_docs(path: Path) -> list[Doc]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def kustomization(directory: Path) -> Doc:
    data: Doc = yaml.safe_load((directory / "kustomization.yaml").read_text())
    unsupported = set(data) - _KUSTOMIZATION_FIELDS
    assert not unsupported, f"{directory}: kustomization fields this test does not render: {unsupported}"
    assert data.get("kind") == "Kustomization"
    return data


def merge(target: Any, patch: Any, key: str = "") -> Any:
    """A strategic merge patch: maps merge (null deletes), lists of known merge keys merge item by item."""
    if isinstance(target, dict) and isinstance(patch, dict):
        out = dict(target)
        for name, value in patch.items():
            if value is None:
                out.pop(name, None)
            else:
                out[name] = merge(out[name], value, name) if name in out else copy.deepcopy(value)
        return out
    if isinstance(target, list) and isinstance(patch, list) and key in _MERGE_KEYS:
        merge_key = _MERGE_KEYS[key]
        out = list(target)
        for item in patch:
            index = next((i for i, old in enumerate(out) if old.get(merge_key) == item[merge_key]), None)
            if index is None:
                out.append(copy.deepcopy(item))
            else:
                out[index] = merge(out[index], item)
        return out
    return copy.deepcopy(patch)


def pod_spec(doc: Doc) -> Doc | None:
    if doc["kind"] in ("Deployment", "StatefulSet", "DaemonSet", "Job"):
        spec: Doc = doc["spec"]["template"]["spec"]
        return spec
    return None


def containers(doc: Doc) -> list[Doc]:
    spec = pod_spec(doc)
    return [*spec.get("initContainers", []), *spec["containers"]] if spec else []


def render(directory: Path) -> list[Doc]:
    """What `kustomize build directory` prints, as documents."""
    k = kustomization(directory)
    docs: list[Doc] = []
    for entry in k.get("resources", []):
        path = (directory / entry).resolve()
        assert path.exists(), f"{directory / 'kustomization.yaml'}: resource {entry} does not exist"
        docs += render(path) if path.is_dir() else load_docs(path)
    for entry in k.get("patches", []):
        assert set(entry) == {"path"}, f"{directory}: only strategic-merge patches by path are rendered here"
        _patch(docs, directory / entry["path"])
    for image in k.get("images", []):
        _set_image(docs, image)
    for label in k.get("labels", []):
        assert set(label) == {"pairs"}, f"{directory}: labels with selectors or templates are not rendered here"
        for doc in docs:
            doc["metadata"].setdefault("labels", {}).update(label["pairs"])
    if "namespace" in k:
        for doc in docs:
            if doc["kind"] == "Namespace":
                doc["metadata"]["name"] = k["namespace"]  # what kustomize does to Namespace objects
            elif doc["kind"] not in _CLUSTER_SCOPED:
                doc["metadata"]["namespace"] = k["namespace"]
    return docs


def _patch(docs: list[Doc], path: Path) -> None:
    assert path.is_file(), f"patch {path} does not exist"
    for patch in load_docs(path):
        key = (patch["kind"], patch["metadata"]["name"])
        found = [i for i, d in enumerate(docs) if (d["kind"], d["metadata"]["name"]) == key]
        assert len(found) == 1, f"{path}: the patch matches {len(found)} resources"
        docs[found[0]] = merge(docs[found[0]], patch)


def _set_image(docs: list[Doc], image: Doc) -> None:
    for doc in docs:
        for container in containers(doc):
            name = re.split(r"[:@]", container["image"], maxsplit=1)[0]
            if name != image["name"]:
                continue
            reference = image.get("newName", name)
            if "digest" in image:
                reference += "@" + image["digest"]
            elif "newTag" in image:
                reference += ":" + image["newTag"]
            container["image"] = reference


def rendered(build: str) -> list[Doc]:
    return render(K8S / build)


def one(docs: list[Doc], kind: str, name: str) -> Doc:
    found = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(found) == 1, f"{kind}/{name}: {len(found)} found"
    return found[0]


def component_of(doc: Doc) -> str:
    labels: dict[str, str] = doc["spec"]["template"]["metadata"]["labels"]
    return labels["app.kubernetes.io/component"]


def workloads(docs: list[Doc]) -> Iterator[Doc]:
    return (d for d in docs if pod_spec(d) is not None)


def selects(selector: Doc, labels: dict[str, str]) -> bool:
    """Whether a label selector (matchLabels, and matchExpressions with In) selects these labels."""
    expressions = selector.get("matchExpressions", [])
    assert all(e["operator"] == "In" for e in expressions), "only In expressions are checked here"
    return all(labels.get(k) == v for k, v in selector.get("matchLabels", {}).items()) and all(
        labels.get(e["key"]) in e["values"] for e in expressions
    )


# ------------------------------------------------------------------------------------------------ checks
def pod_problems(doc: Doc) -> list[str]:
    """What makes a workload's pods run with more privilege than an unprivileged user needs."""
    name = f"{doc['kind']}/{doc['metadata']['name']}"
    spec = pod_spec(doc)
    assert spec is not None
    problems = []
    pod = spec.get("securityContext", {})
    if not (pod.get("runAsNonRoot") and pod.get("runAsUser") == UID and pod.get("runAsGroup") == UID):
        problems.append(f"{name}: pods must run as {UID}:{UID} (runAsNonRoot)")
    if pod.get("seccompProfile", {}).get("type") != "RuntimeDefault":
        problems.append(f"{name}: seccompProfile must be RuntimeDefault")
    if spec.get("automountServiceAccountToken") is not False:
        problems.append(f"{name}: no process calls the Kubernetes API; do not mount a token")
    if any(spec.get(host) for host in ("hostNetwork", "hostPID", "hostIPC")):
        problems.append(f"{name}: host namespaces")
    for container in containers(doc):
        where = f"{name} container {container['name']}"
        sc = container.get("securityContext", {})
        if sc.get("readOnlyRootFilesystem") is not True:
            problems.append(f"{where}: readOnlyRootFilesystem")
        if sc.get("allowPrivilegeEscalation") is not False:
            problems.append(f"{where}: allowPrivilegeEscalation must be false")
        if sc.get("privileged"):
            problems.append(f"{where}: privileged")
        if sc.get("capabilities", {}).get("drop") != ["ALL"] or sc.get("capabilities", {}).get("add"):
            problems.append(f"{where}: capabilities must drop ALL and add none")
        if sc.get("runAsUser") not in (None, UID):
            problems.append(f"{where}: runs as another user")
        resources = container.get("resources", {})
        if not {"cpu", "memory"} <= set(resources.get("requests", {})) or "memory" not in resources.get("limits", {}):
            problems.append(f"{where}: cpu and memory requests and a memory limit")
        mounts = {m["mountPath"] for m in container.get("volumeMounts", [])}
        if "/tmp" not in mounts:  # noqa: S108 - a mount point in the manifests, not a file this test writes
            problems.append(f"{where}: a writable /tmp (the root file system is read-only)")
    return problems


def api_routes() -> set[str]:
    """The paths the Starlette app serves (api/app.py)."""
    return set(re.findall(r'Route\("(/[^"{]*)"', (ROOT / "api" / "app.py").read_text()))


def probe_problems(doc: Doc) -> list[str]:
    """HTTP probes only on `parvis serve`, on paths it serves; the API probed alive and ready."""
    problems = []
    routes = api_routes()
    for container in containers(doc):
        where = f"{doc['metadata']['name']} container {container['name']}"
        ports = {p.get("name"): p["containerPort"] for p in container.get("ports", [])}
        probes = {
            kind: container[kind] for kind in ("startupProbe", "livenessProbe", "readinessProbe") if kind in container
        }
        for kind, probe in probes.items():
            http = probe.get("httpGet")
            if http is None:
                continue
            if container.get("args") != ["serve"]:
                problems.append(f"{where}: {kind} over HTTP, but only `parvis serve` has health endpoints")
            if http["path"] not in routes:
                problems.append(f"{where}: {kind} on {http['path']}, which the API does not serve")
            if http["port"] not in ports and http["port"] not in ports.values():
                problems.append(f"{where}: {kind} on port {http['port']}, which the container does not expose")
        if container.get("args") == ["serve"]:
            if probes.get("livenessProbe", {}).get("httpGet", {}).get("path") != "/healthz":
                problems.append(f"{where}: liveness on /healthz")
            if probes.get("readinessProbe", {}).get("httpGet", {}).get("path") != "/readyz":
                problems.append(f"{where}: readiness on /readyz")
    return problems


# ------------------------------------------------------------------------------------------------ the validator
@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch) -> None:
    """No network: the schemas must come from the package itself."""

    def refuse(*_args: object, **_kwargs: object) -> None:
        raise OSError("network access during schema validation")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


def test_the_validator_works_offline_and_refuses_broken_manifests(offline: None) -> None:
    # Given the production API Deployment, which passes
    deployment = one(rendered("overlays/production"), "Deployment", "parvis-api")
    kubernetes_validate.validate(deployment, VERSIONS[0], strict=True)

    # When it is broken in the ways a hand-edited manifest breaks
    misspelt = copy.deepcopy(deployment)
    misspelt["spec"]["template"]["spec"]["containers"][0]["securityContext"]["readOnlyRootFileSystem"] = True
    mistyped = copy.deepcopy(deployment)
    mistyped["spec"]["revisionHistoryLimit"] = "five"
    incomplete = copy.deepcopy(deployment)
    del incomplete["spec"]["selector"]
    nameless = copy.deepcopy(deployment)
    del nameless["spec"]["template"]["spec"]["containers"][0]["name"]

    # Then the validator refuses each one
    for broken in (misspelt, mistyped, incomplete, nameless):
        with pytest.raises(kubernetes_validate.ValidationError):
            kubernetes_validate.validate(broken, VERSIONS[0], strict=True)


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("build", BUILDS)
def test_every_rendered_resource_passes_the_kubernetes_schemas(offline: None, build: str, version: str) -> None:
    docs = rendered(build)
    assert len(docs) >= 15
    failures = []
    for doc in docs:
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except (kubernetes_validate.ValidationError, kubernetes_validate.SchemaNotFoundError) as exc:
            failures.append(f"{doc['kind']}/{doc['metadata']['name']}: {getattr(exc, 'message', exc)}")
    assert failures == []
    # And names are unique per kind and namespace, as the API server requires
    keys = [(d["kind"], d["metadata"].get("namespace"), d["metadata"]["name"]) for d in docs]
    assert len(keys) == len(set(keys))


@pytest.mark.parametrize("template", TEMPLATES)
def test_the_templates_pass_the_kubernetes_schemas(offline: None, template: str) -> None:
    for doc in load_docs(K8S / template):
        kubernetes_validate.validate(doc, VERSIONS[0], strict=True)


def test_every_manifest_belongs_to_a_build_and_every_reference_exists() -> None:
    # Given every YAML file under deploy/k8s
    files = {p.resolve() for p in K8S.rglob("*.yaml")}
    # When the kustomizations are walked (render checks that what they name exists)
    used: set[Path] = set()
    for build in BUILDS:
        directory = K8S / build
        used.add((directory / "kustomization.yaml").resolve())
        k = kustomization(directory)
        used |= {(directory / r).resolve() for r in k.get("resources", []) if (directory / r).is_file()}
        used |= {(directory / p["path"]).resolve() for p in k.get("patches", [])}
        render(directory)
    # Then each file is in a build, or is a template filled in by hand
    assert files - used == {(K8S / t).resolve() for t in TEMPLATES}


def test_the_renderer_refuses_what_it_does_not_render(tmp_path: Path) -> None:
    # Given a kustomization whose patch names a resource that is not there, and one using a generator
    (tmp_path / "a").mkdir()
    base = os.path.relpath(K8S / "base", tmp_path / "a")
    (tmp_path / "a" / "kustomization.yaml").write_text(
        f"apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources: [{base}]\n"
        "patches: [{path: patch.yaml}]\n"
    )
    (tmp_path / "a" / "patch.yaml").write_text("apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: nowhere}\n")
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "kustomization.yaml").write_text(
        "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n"
        "configMapGenerator: [{name: x, literals: [A=b]}]\n"
    )
    # Then neither renders
    with pytest.raises(AssertionError, match="matches 0 resources"):
        render(tmp_path / "a")
    with pytest.raises(AssertionError, match="does not render"):
        render(tmp_path / "b")


# ------------------------------------------------------------------------------------------------ the processes
@pytest.mark.parametrize("build", BUILDS)
def test_each_process_of_the_readme_runs_from_the_one_image(build: str) -> None:
    docs = rendered(build)
    found = {component_of(d): d for d in workloads(docs)}
    assert set(found) == set(COMMANDS)
    images = set()
    for component, doc in found.items():
        (container,) = pod_spec(doc)["containers"]  # type: ignore[index]
        assert container["args"] == COMMANDS[component]
        assert "command" not in container  # the image's entrypoint is `parvis`
        images.add(container["image"])
    assert len(images) == 1
    assert one(docs, "Job", "parvis-migrate")["spec"]["template"]["spec"]["restartPolicy"] in ("Never", "OnFailure")


@pytest.mark.parametrize("build", ENVIRONMENTS)
def test_environments_pin_the_image_and_put_everything_in_their_namespace(build: str) -> None:
    docs = rendered(build)
    (namespace,) = [d for d in docs if d["kind"] == "Namespace"]
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    for doc in docs:
        if doc["kind"] != "Namespace":
            assert doc["metadata"]["namespace"] == namespace["metadata"]["name"], doc["metadata"]["name"]
    for doc in workloads(docs):
        for container in containers(doc):
            assert re.search(r"(:[\w.-]+|@sha256:[0-9a-f]{64})$", container["image"]), container["image"]
            assert not container["image"].endswith(":latest")


@pytest.mark.parametrize("build", BUILDS)
def test_every_pod_runs_unprivileged(build: str) -> None:
    problems = [p for doc in workloads(rendered(build)) for p in pod_problems(doc)]
    assert problems == []


@pytest.mark.parametrize("build", BUILDS)
def test_only_the_api_is_probed_over_http_on_the_paths_it_serves(build: str) -> None:
    assert {"/healthz", "/readyz"} <= api_routes()
    problems = [p for doc in workloads(rendered(build)) for p in probe_problems(doc)]
    assert problems == []


def test_the_checks_refuse_weakened_pods() -> None:
    # Given the production pods, which pass
    docs = rendered("overlays/production")
    api = one(docs, "Deployment", "parvis-api")
    worker = one(docs, "Deployment", "parvis-worker")
    assert pod_problems(api) == probe_problems(api) == probe_problems(worker) == []
    # When one is given a writable root, another runs as root, and the worker gets an HTTP probe it cannot answer
    writable = copy.deepcopy(api)
    writable["spec"]["template"]["spec"]["containers"][0]["securityContext"]["readOnlyRootFilesystem"] = False
    rooted = copy.deepcopy(api)
    rooted["spec"]["template"]["spec"]["securityContext"]["runAsUser"] = 0
    probed = copy.deepcopy(worker)
    probed["spec"]["template"]["spec"]["containers"][0]["livenessProbe"] = {"httpGet": {"path": "/live", "port": 8000}}
    # Then the checks name what is wrong
    assert any("readOnlyRootFilesystem" in p for p in pod_problems(writable))
    assert any("10001" in p for p in pod_problems(rooted))
    assert len(probe_problems(probed)) == 3  # not `parvis serve`, no such path, no such port


@pytest.mark.parametrize("build", BUILDS)
def test_the_api_and_the_workers_scale_and_the_projector_keeps_one_standby(build: str) -> None:
    docs = rendered(build)
    api, projector, worker = (one(docs, "Deployment", f"parvis-{c}") for c in ("api", "projector", "worker"))
    # The API scales on CPU, the workers on the depth of the job queue (an External metric)
    hpas = {d["spec"]["scaleTargetRef"]["name"]: d for d in docs if d["kind"] == "HorizontalPodAutoscaler"}
    assert set(hpas) == {"parvis-api", "parvis-worker"}
    assert [m["type"] for m in hpas["parvis-api"]["spec"]["metrics"]] == ["Resource"]
    (queue,) = hpas["parvis-worker"]["spec"]["metrics"]
    assert queue["type"] == "External"
    assert queue["external"]["metric"]["name"] == "parvis_queue_depth"
    for hpa in hpas.values():
        assert hpa["spec"]["scaleTargetRef"]["kind"] == "Deployment"
        assert 1 <= hpa["spec"]["minReplicas"] < hpa["spec"]["maxReplicas"]
    # So the autoscaled Deployments leave `replicas` to them; the projector is one active and one standby
    assert "replicas" not in api["spec"]
    assert "replicas" not in worker["spec"]
    assert projector["spec"]["replicas"] == 2
    # Every workload that stays up has a disruption budget that keeps one pod of it
    budgets = [d for d in docs if d["kind"] == "PodDisruptionBudget"]
    for deployment in (api, projector, worker):
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        (budget,) = [b for b in budgets if selects(b["spec"]["selector"], labels)]
        assert budget["spec"].get("minAvailable") == 1 or budget["spec"].get("maxUnavailable") == 1
        if deployment is projector:  # the standby may go, never the last runner
            assert budget["spec"].get("minAvailable") == 1


@pytest.mark.parametrize("build", BUILDS)
def test_selectors_find_their_pods_and_the_service_its_port(build: str) -> None:
    docs = rendered(build)
    for doc in docs:
        if doc["kind"] in ("Deployment", "Job") and "selector" in doc["spec"]:
            assert selects(doc["spec"]["selector"], doc["spec"]["template"]["metadata"]["labels"])
    pods = [d["spec"]["template"]["metadata"]["labels"] for d in workloads(docs)]
    for doc in docs:
        if doc["kind"] == "PodDisruptionBudget":
            assert any(selects(doc["spec"]["selector"], labels) for labels in pods), doc["metadata"]["name"]
        if doc["kind"] == "NetworkPolicy" and doc["spec"]["podSelector"]:
            assert any(selects(doc["spec"]["podSelector"], labels) for labels in pods), doc["metadata"]["name"]
    service = one(docs, "Service", "parvis-api")
    api = one(docs, "Deployment", "parvis-api")
    assert selects({"matchLabels": service["spec"]["selector"]}, api["spec"]["template"]["metadata"]["labels"])
    named = {p["name"]: p["containerPort"] for p in api["spec"]["template"]["spec"]["containers"][0]["ports"]}
    for port in service["spec"]["ports"]:
        assert port["targetPort"] in named or port["targetPort"] in named.values()


# ------------------------------------------------------------------------------------------------ configuration
@pytest.mark.parametrize("build", BUILDS)
def test_the_config_map_and_the_secret_hold_every_setting_once(build: str, monkeypatch: pytest.MonkeyPatch) -> None:
    docs = rendered(build)
    config = one(docs, "ConfigMap", "parvis-config")["data"]
    (secret,) = load_docs(K8S / "secret.template.yaml")
    settings = {f"PARVIS_{name.upper()}" for name in Settings.model_fields}
    # Every setting is in exactly one of them, and the secret ones only in the Secret
    assert set(secret["stringData"]) == SECRET_SETTINGS
    assert set(config) == settings - SECRET_SETTINGS
    # The Secret is a template: placeholders (or nothing), never a value that could be a real credential
    assert all(re.search(r"<[^>]+>", value) or value == "" for value in secret["stringData"].values())
    # Every pod reads both, by these names
    for doc in workloads(docs):
        for container in containers(doc):
            sources = container["envFrom"]
            assert {"configMapRef": {"name": "parvis-config"}} in sources
            assert {"secretRef": {"name": secret["metadata"]["name"]}} in sources
    # And the values are ones the settings accept, with the API on the port the pods expose
    for key in [k for k in os.environ if k.startswith("PARVIS_")]:
        monkeypatch.delenv(key)
    for key, value in config.items():
        monkeypatch.setenv(key, value)
    parsed = Settings()
    assert parsed.env == "production"
    assert parsed.host == "0.0.0.0"  # noqa: S104 - the pod's address, reached through the Service
    # And each port a process listens on is the one its pods declare (the API's, the others' metrics)
    listening = {"api": parsed.port, "projector": parsed.projector_metrics_port, "worker": parsed.worker_metrics_port}
    for component, port in listening.items():
        (container,) = pod_spec(one(docs, "Deployment", f"parvis-{component}"))["containers"]  # type: ignore[index]
        assert [p["containerPort"] for p in container["ports"]] == [port], component


# ------------------------------------------------------------------------------------------------ network
def _allowed(docs: list[Doc], labels: dict[str, str], direction: str) -> set[tuple[str, int]]:
    """(protocol, port) that the policies selecting these pods allow in one direction."""
    out: set[tuple[str, int]] = set()
    for doc in docs:
        if doc["kind"] != "NetworkPolicy" or not selects(doc["spec"]["podSelector"], labels):
            continue
        for rule in doc["spec"].get(direction, []):
            assert rule.get("ports"), f"{doc['metadata']['name']}: a rule without ports allows every port"
            out |= {(p.get("protocol", "TCP"), p["port"]) for p in rule["ports"]}
    return out


@pytest.mark.parametrize("build", BUILDS)
def test_network_policies_deny_by_default_and_allow_what_each_process_needs(build: str) -> None:
    docs = rendered(build)
    # Given a policy that selects every pod and allows nothing
    default = [d for d in docs if d["kind"] == "NetworkPolicy" and d["spec"]["podSelector"] == {}]
    assert len(default) == 1
    assert set(default[0]["spec"]["policyTypes"]) == {"Ingress", "Egress"}
    assert "ingress" not in default[0]["spec"]
    assert "egress" not in default[0]["spec"]
    # Then each process may reach what it uses, and nothing more
    dns = {("UDP", 53), ("TCP", 53)}
    needs = {
        "api": ({("TCP", 8000)}, dns | {("TCP", 5432), ("TCP", 6379)}),
        "projector": ({("TCP", 9100)}, dns | {("TCP", 5432), ("TCP", 6379)}),
        "worker": ({("TCP", 9100)}, dns | {("TCP", 5432), ("TCP", 6379), ("TCP", 443)}),
        "migrate": (set(), dns | {("TCP", 5432), ("TCP", 6379)}),
    }
    for doc in workloads(docs):
        labels = doc["spec"]["template"]["metadata"]["labels"]
        ingress, egress = needs[component_of(doc)]
        assert _allowed(docs, labels, "ingress") == ingress, component_of(doc)
        assert _allowed(docs, labels, "egress") == egress, component_of(doc)
    # The workers' way out is the public internet only (no private ranges, no cloud metadata service)
    https = one(docs, "NetworkPolicy", "parvis-worker-egress-https")["spec"]["egress"]
    for rule in https:
        for peer in rule["to"]:
            assert {"169.254.0.0/16", "10.0.0.0/8"} <= set(peer["ipBlock"]["except"])
