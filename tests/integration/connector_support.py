"""What the connector tests share: a post, an address where nothing listens, fixtures of the fake platforms."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.fakes import serve
from tests.fakes.bluesky import FakeBluesky
from tests.fakes.mastodon import FakeMastodon
from workers.connectors.base import ChannelRef, ConnectorError, VariantRef

POST = VariantRef("Notre nouvelle collection arrive demain ✨")
CLOSED = "http://127.0.0.1:9"  # the discard port: nothing listens there


def failure(call: object) -> ConnectorError:
    """The ConnectorError a call raises."""
    assert callable(call)
    with pytest.raises(ConnectorError) as caught:
        call()
    return caught.value


@pytest.fixture(scope="module")
def mastodon_server() -> Iterator[tuple[FakeMastodon, str]]:
    fake = FakeMastodon()
    with serve(fake.app) as url:
        yield fake, url


@pytest.fixture
def mastodon(mastodon_server: tuple[FakeMastodon, str]) -> tuple[FakeMastodon, ChannelRef]:
    """A fresh instance (the server is shared by the module) and a channel connected to it."""
    fake, url = mastodon_server
    fake.reset()
    return fake, ChannelRef("ch-m", "MASTODON", "@parvis_demo", {"base_url": url, "access_token": fake.access_token})


@pytest.fixture(scope="module")
def bluesky_server() -> Iterator[tuple[FakeBluesky, str]]:
    fake = FakeBluesky()
    with serve(fake.app) as url:
        yield fake, url


@pytest.fixture
def bluesky(bluesky_server: tuple[FakeBluesky, str]) -> tuple[FakeBluesky, ChannelRef]:
    fake, url = bluesky_server
    fake.reset()
    credentials = {"service": url, "identifier": fake.handle, "app_password": fake.app_password}
    return fake, ChannelRef("ch-b", "BLUESKY", fake.handle, credentials)
