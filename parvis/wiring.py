"""The composition root: turns settings into the domain application, the API, the runner, the workers."""

from __future__ import annotations

from urllib.parse import unquote, urlparse

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from api.context import ApiConfig
from api.throttle import RateLimitConfig
from domain.app import Parvis
from parvis.crypto import AuthorVault, SecretBox, personal_cipher, subkey
from parvis.settings import Settings
from projections.base import Projection
from projections.checkpoints import public_key_bytes, signing_key
from projections.directory import Directory
from projections.history import History
from projections.metrics import Metrics
from projections.moderation import Moderation
from projections.publishing import Publishing


def event_store_env(database_url: str, *, pool_size: int = 10, create_table: bool = False) -> dict[str, str]:
    """The eventsourcing library's settings, built explicitly from ours."""
    url = urlparse(database_url)
    return {
        "PERSISTENCE_MODULE": "eventsourcing.postgres",
        "APPLICATION_RECORDER_TOPIC": "parvis.store:ReceiptRecorder",
        "POSTGRES_DBNAME": (url.path or "/postgres").lstrip("/"),
        "POSTGRES_HOST": url.hostname or "127.0.0.1",
        "POSTGRES_PORT": str(url.port or 5432),
        "POSTGRES_USER": unquote(url.username or "postgres"),
        "POSTGRES_PASSWORD": unquote(url.password or ""),
        "POSTGRES_SCHEMA": "public",
        "POSTGRES_POOL_SIZE": str(pool_size),
        "POSTGRES_MAX_OVERFLOW": "4",
        "POSTGRES_LOCK_TIMEOUT": "5",
        "ORIGINATOR_ID_TYPE": "text",
        "CREATE_TABLE": "y" if create_table else "n",
    }


def secret_box(settings: Settings) -> SecretBox:
    return SecretBox(settings.secret(), settings.previous_secrets())


def domain(settings: Settings, *, create_table: bool = False) -> Parvis:
    """The event-sourced application, on PostgreSQL."""
    assert settings.database_url, "database_url is resolved before wiring"
    env = event_store_env(settings.database_url, pool_size=settings.db_pool_size, create_table=create_table)
    vault = AuthorVault(settings.database_url, settings.secret(), previous=settings.previous_secrets())
    return Parvis(env=env, secrets=secret_box(settings), personal=vault)


def projections(settings: Settings) -> list[Projection]:
    """Every read model, in the order the runner starts them."""
    cipher = personal_cipher(settings.secret(), settings.previous_secrets())
    return [Directory(), History(), Publishing(), Moderation(cipher), Metrics()]


def read_model_names() -> list[str]:
    """The names of the read models (what the API waits for after a mutation)."""
    return [Directory.name, History.name, Publishing.name, Moderation.name, Metrics.name]


def api_config(settings: Settings) -> ApiConfig:
    return ApiConfig(
        development=settings.development,
        allowed_origins=tuple(settings.allowed_origins),
        consistency_timeout=settings.consistency_timeout_seconds,
        max_body_bytes=settings.max_body_bytes,
        max_depth=settings.max_query_depth,
        max_aliases=settings.max_aliases,
        max_tokens=settings.max_tokens,
        max_cost=settings.max_query_cost,
        rate_limits=RateLimitConfig(
            per_ip=settings.rate_limit_per_ip,
            per_bearer=settings.rate_limit_per_token,
            login=settings.login_rate_limit,
        ),
        request_timeout=settings.request_timeout_seconds,
        ws_init_timeout=settings.ws_init_timeout_seconds,
        ws_recheck=settings.ws_recheck_seconds,
    )


def hook_key(settings: Settings) -> bytes:
    """The key inbound webhook secrets are derived from (one secret per channel)."""
    return subkey(settings.secret(), "parvis/hooks")


def token_key(settings: Settings) -> bytes:
    return subkey(settings.secret(), "parvis/access-tokens")


def checkpoint_key(settings: Settings) -> Ed25519PrivateKey:
    """The Ed25519 key that signs the history checkpoints (its seed is derived from the master secret)."""
    return signing_key(subkey(settings.secret(), "parvis/checkpoints"))


def checkpoint_public_key(settings: Settings) -> bytes:
    return public_key_bytes(checkpoint_key(settings))


def asgi_app(settings: Settings):  # type: ignore[no-untyped-def]
    """The API as an ASGI application."""
    from api.app import create_app

    assert settings.database_url
    return create_app(
        api_config(settings),
        database_url=settings.database_url,
        domain_factory=lambda: domain(settings),
        secrets=secret_box(settings),
        token_key=token_key(settings),
        token_ttl=settings.access_token_ttl_seconds,
        read_models=read_model_names(),
        hook_key=hook_key(settings),
        pool_size=settings.db_pool_size,
        redis_url=settings.redis_url,
        checkpoint_namespace=settings.queue_namespace,
        checkpoint_public_key=checkpoint_public_key(settings),
        read_database_url=settings.read_database_url,
    )
