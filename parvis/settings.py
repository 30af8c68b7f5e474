"""Settings, read once from the environment (prefix PARVIS_) at start-up."""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict


class Settings(BaseSettings):
    """Every PARVIS_ variable; the README lists them with the same defaults."""

    model_config = SettingsConfigDict(env_prefix="PARVIS_", extra="ignore")

    env: Literal["production", "development", "test"] = "production"
    database_url: str | None = None
    # A read replica (hot standby) of database_url for queries; read-your-writes holds (README "Read replicas").
    read_database_url: str | None = None
    redis_url: str | None = None
    data_dir: Path = Path(".parvis")
    secret_key: SecretStr | None = None
    # Master secrets in force before PARVIS_SECRET_KEY (newest first): they still open what they sealed until
    # `parvis secrets rotate` has sealed it again under PARVIS_SECRET_KEY.
    previous_secret_keys: Annotated[list[SecretStr], NoDecode] = Field(default_factory=list)
    host: str = "127.0.0.1"
    port: int = 8000
    allowed_origins: Annotated[list[str], NoDecode] = Field(default_factory=list)
    access_token_ttl_seconds: int = 900
    consistency_timeout_seconds: float = 2.0
    db_pool_size: int = 10
    worker_threads: int = 4
    queue_namespace: str = "parvis"
    job_redeliver_seconds: float = 30.0
    poll_seconds: float = 60.0
    metrics_seconds: float = 900.0
    checkpoint_seconds: float = 300.0
    report_check_seconds: float = 600.0
    projection_batch_size: int = 500
    max_body_bytes: int = 8_388_608
    max_query_depth: int = 12
    max_aliases: int = 30
    max_tokens: int = 2_000
    # Abuse limits (README "Abuse limits"): cost model in api/cost.py, rate limits in the `limits` notation.
    max_query_cost: int = 10_000
    rate_limit_per_ip: str = "1200/minute"
    rate_limit_per_token: str = "600/minute"  # noqa: S105 (a rate, not a secret)
    login_rate_limit: str = "10 per 5 minutes"
    request_timeout_seconds: float = 60.0
    header_timeout_seconds: float = 10.0
    body_timeout_seconds: float = 30.0
    keep_alive_seconds: int = 5
    max_connections: int = 1000
    ws_init_timeout_seconds: float = 10.0
    ws_recheck_seconds: float = 30.0
    log_level: str = "INFO"
    log_format: Literal["json", "console"] = "json"
    otlp_endpoint: str | None = None
    projector_metrics_port: int = 0
    worker_metrics_port: int = 0

    @field_validator("allowed_origins", mode="before")
    @classmethod
    def _split(cls, value: str | list[str]) -> list[str]:
        if isinstance(value, list):
            return value
        return [v.strip() for v in value.split(",") if v.strip()]

    @field_validator("rate_limit_per_ip", "rate_limit_per_token", "login_rate_limit")
    @classmethod
    def _rate(cls, value: str) -> str:
        """A rate in the `limits` notation ("600/minute", "10 per 5 minutes"), or empty for none."""
        if value.strip():
            from limits import parse

            parse(value)  # ValueError names the bad value
        return value

    @field_validator("previous_secret_keys", mode="before")
    @classmethod
    def _split_keys(cls, value: str | list[str]) -> list[str]:
        if isinstance(value, list):
            return value
        return [v.strip() for v in value.split(",") if v.strip()]

    @property
    def development(self) -> bool:
        return self.env != "production"

    def secret(self) -> bytes:
        """The master secret: PARVIS_SECRET_KEY, or a key generated once in the data directory (dev only)."""
        if self.secret_key is not None:
            return self.secret_key.get_secret_value().encode()
        if not self.development:
            raise RuntimeError("PARVIS_SECRET_KEY must be set when PARVIS_ENV=production")
        path = self.data_dir / "secret.key"
        if not path.exists():
            self.data_dir.mkdir(parents=True, exist_ok=True)
            path.write_text(secrets.token_urlsafe(48))
            path.chmod(0o600)
        return path.read_text().strip().encode()

    def previous_secrets(self) -> list[bytes]:
        """The previous master secrets (PARVIS_PREVIOUS_SECRET_KEYS), newest first; the current one left out."""
        current = self.secret()
        keys = [k.get_secret_value().encode() for k in self.previous_secret_keys]
        return [k for k in dict.fromkeys(keys) if k != current]
