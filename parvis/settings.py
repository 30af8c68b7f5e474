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
    redis_url: str | None = None
    data_dir: Path = Path(".parvis")
    secret_key: SecretStr | None = None
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
    projection_batch_size: int = 500
    max_body_bytes: int = 8_388_608
    max_query_depth: int = 12
    max_aliases: int = 30
    max_tokens: int = 2_000
    log_level: str = "INFO"

    @field_validator("allowed_origins", mode="before")
    @classmethod
    def _split(cls, value: str | list[str]) -> list[str]:
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
