"""Fixtures of the integration tests: the fake platforms (one server per module, a fresh state per test)."""

from tests.integration.connector_support import bluesky, bluesky_server, mastodon, mastodon_server

__all__ = ["bluesky", "bluesky_server", "mastodon", "mastodon_server"]
