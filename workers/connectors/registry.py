"""Every connector of this version, by the name a channel records."""

from __future__ import annotations

from workers.connectors.base import Connector
from workers.connectors.bluesky import BlueskyConnector
from workers.connectors.mastodon import MastodonConnector
from workers.connectors.sandbox import SandboxConnector
from workers.connectors.webhook import WebhookConnector


def connectors() -> dict[str, Connector]:
    """One instance of each connector, keyed by its name (built by the worker's composition root)."""
    return {c.name: c for c in (SandboxConnector(), MastodonConnector(), BlueskyConnector(), WebhookConnector())}
