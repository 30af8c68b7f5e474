"""The sandbox: a simulated social network used by the demo and the tests, deterministic per channel."""

from __future__ import annotations

import math
import random
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from workers.connectors.base import (
    ChannelRef,
    CheckResult,
    Connector,
    ConnectorError,
    FailureKind,
    Fetched,
    Health,
    Page,
    Published,
    VariantRef,
)

REJECT_MARKER = "[sandbox:reject]"
_NAMESPACE = uuid.UUID("5d1b7c8e-3f0a-4e7e-9a51-2b8c0d6f4a10")

# (weight, kind, sentiment, texts): mostly praise and questions, some complaints, a little spam, offers of help.
_VOICES: list[tuple[int, str, str, tuple[str, ...]]] = [
    (40, "COMMENT", "positive", (
        "Super nouvelle, bravo à toute l'équipe !",
        "J'adore, vivement la suite 😍",
        "Love this, great work!",
        "This made my day, thank you 🙌",
    )),
    (10, "REPLY", "positive", ("Merci pour la réponse rapide !", "Thanks, that answers my question.")),
    (10, "MENTION", "neutral", (
        "Quelqu'un sait si c'est disponible à Lyon ?",
        "Is this available in Canada too?",
    )),
    (7, "DIRECT_MESSAGE", "neutral", (
        "Bonjour, comment puis-je vous contacter pour une collaboration ?",
        "Hi, who should I talk to about a partnership?",
    )),
    (14, "COMMENT", "negative", (
        "Toujours pas de réponse du service client, c'est décevant.",
        "Commande reçue abîmée, je suis très déçu.",
        "Prices went up again? Not impressed.",
        "Still waiting for my refund after three weeks.",
    )),
    (5, "COMMENT", "spam", (
        "Gagnez 1000 € par jour depuis chez vous, lien en bio !!!",
        "Buy followers cheap 👉 bit.ly/xyz",
        "Investissez en bitcoin avec moi, gains garantis 💰 écrivez-moi en privé",
    )),
    (6, "OFFER", "positive", (
        "Je suis photographe, je peux vous aider pour votre prochaine campagne.",
        "Happy to help with translations into Spanish if you need it!",
        "Je peux héberger une famille sinistrée, deux chambres libres à Saumur.",
        "J'ai une pompe et une remorque, disponible ce week-end pour vider les caves.",
        "I can drive water and blankets to the shelters tomorrow morning.",
    )),
]
_WEIGHTS = [weight for weight, *_ in _VOICES]
_AUTHORS = ("camille_d", "lucas.m", "ines_b", "hugo_r", "jade.l", "sam_k", "emma_w", "noah.p", "lea_f", "tom_h")


class SandboxConnector:
    """Accepts any credentials except the ones that say they are expired, revoked or unreachable."""

    name = "sandbox"

    def __init__(self, clock: Callable[[], datetime] | None = None) -> None:
        self._clock = clock or (lambda: datetime.now(UTC))

    def check(self, channel: ChannelRef) -> CheckResult:
        creds = channel.credentials
        if creds.get("unreachable"):
            raise ConnectorError(FailureKind.NETWORK, "the sandbox network is unreachable")
        if creds.get("revoked"):
            return CheckResult(Health.REVOKED, "the sandbox says: access revoked by the account owner")
        if creds.get("expired"):
            return CheckResult(Health.EXPIRED, "the sandbox says: token expired")
        return CheckResult(Health.OK, f"sandbox account {channel.handle} reachable")

    def publish(self, channel: ChannelRef, variant: VariantRef, idempotency_key: str) -> Published:
        """Publish on the simulated network: the post's id is a function of the key, so a retry is the same post."""
        _check_access(channel)
        if REJECT_MARKER in variant.body:
            raise ConnectorError(FailureKind.REJECTED_CONTENT, "the sandbox says: this post breaks the house rules")
        external_id = str(uuid.uuid5(_NAMESPACE, f"{channel.id}/{idempotency_key}"))
        url = f"https://sandbox.parvis.dev/@{channel.handle.lstrip('@')}/{external_id}"
        return Published(external_id, url, datetime.now(UTC))

    def fetch_interactions(
        self, channel: ChannelRef, cursor: str | None, published: list[tuple[str, datetime]]
    ) -> Page:
        """What the simulation delivered on our posts after the cursor (the time of the last fetch) until now."""
        _check_access(channel)
        since = datetime.fromisoformat(cursor) if cursor else None
        # A clock set back never moves the cursor back: what was delivered is not delivered again.
        now = max(self._clock(), since) if since else self._clock()
        received = interactions_for(channel, published, now)
        return Page([_fetched(i) for i in received if since is None or i["received_at"] > since], now.isoformat())


    def fetch_metrics(self, channel: ChannelRef, published: list[tuple[str, datetime]]) -> list[dict[str, Any]]:
        """What the simulation measures now: each post's running totals, then the channel's followers."""
        _check_access(channel)
        return metrics_for(channel, published, self._clock())


def _check_access(channel: ChannelRef) -> None:
    """Refuse as the channel's credentials say: unreachable, or expired or revoked."""
    creds = channel.credentials
    if creds.get("unreachable"):
        raise ConnectorError(FailureKind.NETWORK, "the sandbox network is unreachable")
    if creds.get("expired") or creds.get("revoked"):
        raise ConnectorError(FailureKind.AUTH_EXPIRED, "the sandbox says: token expired")


def _fetched(item: dict[str, Any]) -> Fetched:
    return Fetched(
        item["kind"],
        item["external_id"],
        "@" + item["author_handle"],
        item["text"],
        item["received_at"],
        item["post_external_id"],
    )


def interactions_for(
    channel: ChannelRef, published: list[tuple[str, datetime]], until: datetime
) -> list[dict[str, Any]]:
    """The comments, replies, mentions, messages and offers received on these posts up to `until`, oldest first."""
    received: list[dict[str, Any]] = []
    for post_id, published_at in published:
        # Every post always draws the same interactions; `until` only decides how many of them have arrived yet.
        rng = _rng(channel, post_id, "interactions")
        for n in range(rng.randint(3, 12)):
            _, kind, sentiment, texts = rng.choices(_VOICES, weights=_WEIGHTS)[0]
            # Most reactions come within the first half hour, a few trickle in for up to two days.
            at = published_at + timedelta(minutes=0.5 + min(rng.expovariate(1 / 10), 48 * 60))
            author, text = rng.choice(_AUTHORS), rng.choice(texts)
            if at <= until:
                received.append(
                    {
                        "external_id": f"{post_id}-i{n}",
                        "post_external_id": post_id,
                        "author_handle": author,
                        "text": text,
                        "kind": kind,
                        "sentiment": sentiment,
                        "received_at": at,
                    }
                )
    return sorted(received, key=lambda i: (i["received_at"], i["external_id"]))


def metrics_for(channel: ChannelRef, published: list[tuple[str, datetime]], until: datetime) -> list[dict[str, Any]]:
    """Metrics as of `until`: one row per post (`followers` are those it brought), then one for the channel."""
    rows = [_post_metrics(channel, post_id, at, until) for post_id, at in published if at <= until]
    followers = _rng(channel, "followers").randint(300, 20_000) + sum(r["followers"] for r in rows)
    totals = {key: sum(r[key] for r in rows) for key in ("impressions", "reach", "engagements", "shares", "clicks")}
    return [*rows, {"scope": "CHANNEL", "external_id": None, "followers": followers, **totals, "measured_at": until}]


def _rng(channel: ChannelRef, *topic: str) -> random.Random:
    """A generator seeded by the channel and the topic: the same inputs always draw the same simulation."""
    return random.Random("/".join([channel.id, *topic]))  # noqa: S311 (a simulation, not a secret)


def _post_metrics(channel: ChannelRef, post_id: str, published_at: datetime, until: datetime) -> dict[str, Any]:
    rng = _rng(channel, post_id, "metrics")
    peak = rng.randint(200, 8_000)
    # Audiences saturate: most impressions arrive in the first hours, then the curve flattens (never decreases).
    seen = peak * (1 - math.exp(-(until - published_at).total_seconds() / (6 * 3600)))
    engagement_rate = rng.uniform(0.02, 0.08)
    return {
        "scope": "POST",
        "external_id": post_id,
        "followers": int(seen * rng.uniform(0.001, 0.005)),
        "impressions": int(seen),
        "reach": int(seen * 0.7),
        "engagements": int(seen * engagement_rate),
        "shares": int(seen * engagement_rate * 0.1),
        "clicks": int(seen * 0.015),
        "measured_at": until,
    }


def connectors() -> dict[str, Connector]:
    """Connectors by name; the registry lives in `workers.connectors.registry`, this name stays for old imports."""
    from workers.connectors.registry import connectors as registry

    return registry()
