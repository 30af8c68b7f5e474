"""Fetching incoming interactions for the moderation inbox: cursors, kinds, plain text, typed failures."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from tests.fakes.bluesky import FakeBluesky
from tests.fakes.mastodon import FakeMastodon
from tests.integration.connector_support import CLOSED, POST, failure
from workers.connectors import bluesky as bluesky_module
from workers.connectors import mastodon as mastodon_module
from workers.connectors.base import ChannelRef, FailureKind, Fetched
from workers.connectors.bluesky import BlueskyConnector
from workers.connectors.mastodon import MastodonConnector, plain_text
from workers.connectors.sandbox import SandboxConnector, interactions_for

# Mastodon


def test_a_first_mastodon_fetch_returns_the_mentions_and_a_cursor(mastodon: tuple[FakeMastodon, ChannelRef]) -> None:
    # Given a status of ours, then a mention, a reply, a direct message and a favourite
    fake, channel = mastodon
    ours = MastodonConnector().publish(channel, POST, "post-1/ch-m")
    fake.add_mention("alice@other.example", "Disponible à Lyon ?")
    fake.add_reply("bob", "Magnifique !", in_reply_to=ours.external_id)
    last = fake.add_mention("carol@other.example", "Un partenariat ?", visibility="direct")
    fake.add_favourite("dave@other.example", ours.external_id)
    # When the channel's interactions are fetched for the first time
    page = MastodonConnector().fetch_interactions(channel, None, [(ours.external_id, ours.published_at)])
    # Then the three mentions come oldest first, as plain text from their authors, and the cursor is the last one
    assert [(f.kind, f.author) for f in page.items] == [
        ("MENTION", "@alice@other.example"),
        ("REPLY", "@bob"),
        ("DIRECT_MESSAGE", "@carol@other.example"),
    ]
    assert page.items[0].text == "@parvis_demo Disponible à Lyon ?"
    assert page.items[0].external_id == fake.notifications[0]["status"]["id"]
    assert all(f.received_at.tzinfo is not None for f in page.items)
    assert page.cursor == last["id"]
    # And only mentions were asked for, one page of 40
    assert fake.listings == [{"types[]": ["mention"], "limit": ["40"]}]


def test_a_mastodon_fetch_with_the_cursor_returns_only_newer_mentions(
    mastodon: tuple[FakeMastodon, ChannelRef],
) -> None:
    # Given a first fetch, then two new mentions
    fake, channel = mastodon
    connector = MastodonConnector()
    fake.add_mention("alice@other.example", "Première")
    first = connector.fetch_interactions(channel, None, [])
    fake.add_mention("bob@other.example", "Deuxième")
    newest = fake.add_mention("carol@other.example", "Troisième")
    # When the interactions are fetched with the cursor, then again with the new one
    second = connector.fetch_interactions(channel, first.cursor, [])
    third = connector.fetch_interactions(channel, second.cursor, [])
    # Then the second fetch has only the new mentions, asked for with `since_id`, and the third has nothing
    assert [f.text for f in second.items] == ["@parvis_demo Deuxième", "@parvis_demo Troisième"]
    assert second.cursor == newest["id"]
    assert fake.listings[1]["since_id"] == [first.cursor]
    assert (third.items, third.cursor) == ([], second.cursor)


def test_a_mastodon_reply_names_the_status_it_answers(mastodon: tuple[FakeMastodon, ChannelRef]) -> None:
    # Given a reply to our status, a plain mention, and a private answer to our status
    fake, channel = mastodon
    ours = MastodonConnector().publish(channel, POST, "post-1/ch-m")
    fake.add_reply("bob", "Merci !", in_reply_to=ours.external_id)
    fake.add_mention("alice@other.example", "Coucou")
    fake.add_mention("carol", "En privé", visibility="direct", in_reply_to=ours.external_id)
    # When they are fetched
    page = MastodonConnector().fetch_interactions(channel, None, [])
    # Then the reply names our status, the mention names none, and the private one stays a direct message
    assert [(f.kind, f.in_reply_to) for f in page.items] == [
        ("REPLY", ours.external_id),
        ("MENTION", None),
        ("DIRECT_MESSAGE", ours.external_id),
    ]


def test_a_mastodon_status_html_is_stripped_to_plain_text(mastodon: tuple[FakeMastodon, ChannelRef]) -> None:
    # Given a mention whose HTML has an h-card, entities, a line break, paragraphs and a shortened link
    fake, channel = mastodon
    link = (
        '<a href="https://shop.example/collection/ete-2025" rel="nofollow noopener" target="_blank">'
        '<span class="invisible">https://</span><span class="ellipsis">shop.example/collection/</span>'
        '<span class="invisible">ete-2025</span></a>'
    )
    content = (
        '<p><span class="h-card"><a href="https://m.example/@parvis_demo" class="u-url mention">'
        "@<span>parvis_demo</span></a></span> Prix &amp; d&eacute;lais ?<br />Merci &lt;3</p>"
        f"<p>Vu ici : {link}</p>"
    )
    fake.add_mention("alice@other.example", "", content=content)
    # When it is fetched
    [fetched] = MastodonConnector().fetch_interactions(channel, None, []).items
    # Then its text is plain, with the line break, the paragraph break and the whole URL kept
    assert fetched.text == (
        "@parvis_demo Prix & délais ?\nMerci <3\n\nVu ici : https://shop.example/collection/ete-2025"
    )
    assert plain_text("<p>a</p><p>b<br>c</p>") == "a\n\nb\nc"


def test_text_postgresql_cannot_store_is_made_storable_whatever_the_platform(
    mastodon: tuple[FakeMastodon, ChannelRef],
) -> None:
    # Given a mention whose text carries NULs (HTML-escaped and raw)
    fake, channel = mastodon
    fake.add_mention("nul@other.example", "", content="<p>avant&#0;apr\u00e8s\x00 fin</p>")
    # When it is fetched
    [fetched] = MastodonConnector().fetch_interactions(channel, None, []).items
    # Then what is kept can be stored in PostgreSQL text (no NUL, valid UTF-8), and nothing else changed; a lone
    # surrogate (as JSON can carry one) becomes U+FFFD
    assert "\x00" not in fetched.text
    fetched.text.encode("utf-8")
    assert fetched.text == "avant\ufffdaprès fin"  # &#0; is U+FFFD in HTML; the raw NUL is dropped
    assert Fetched("COMMENT", "id\x00", "@a\x00", "x\udfff", datetime.now(UTC), "p\x00").author == "@a"
    assert Fetched("COMMENT", "id", "@a", "x\udfff", datetime.now(UTC)).text == "x\ufffd"


def test_a_burst_of_mastodon_mentions_is_fetched_whole_and_once(mastodon: tuple[FakeMastodon, ChannelRef]) -> None:
    # Given a cursor, then more new mentions than one page holds
    fake, channel = mastodon
    connector = MastodonConnector()
    fake.add_mention("a", "avant")
    cursor = connector.fetch_interactions(channel, None, []).cursor
    added = [fake.add_mention(f"fan{i}@other.example", f"n°{i}") for i in range(95)]
    # When the interactions are fetched with the cursor
    page = connector.fetch_interactions(channel, cursor, [])
    # Then every new mention comes once, oldest first, walking up from the cursor with `min_id` and `prev` links
    assert [f.external_id for f in page.items] == [n["status"]["id"] for n in added]
    assert page.cursor == added[-1]["id"]
    assert [q.get("min_id") for q in fake.listings[2:]] == [[cursor], [added[39]["id"]], [added[79]["id"]]]


def test_a_mastodon_burst_past_the_page_cap_is_finished_by_the_next_fetch_without_a_gap(
    mastodon: tuple[FakeMastodon, ChannelRef], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a connector that reads at most two pages per fetch, and 100 new mentions after a cursor
    fake, channel = mastodon
    monkeypatch.setattr(mastodon_module, "MAX_PAGES", 2)
    connector = MastodonConnector()
    fake.add_mention("a", "avant")
    cursor = connector.fetch_interactions(channel, None, []).cursor
    added = [fake.add_mention(f"fan{i}", f"n°{i}") for i in range(100)]
    # When two fetches follow each other
    first = connector.fetch_interactions(channel, cursor, [])
    second = connector.fetch_interactions(channel, first.cursor, [])
    # Then the first has the oldest 80 and the second the other 20: none lost, none twice
    assert [f.external_id for f in first.items] == [n["status"]["id"] for n in added[:80]]
    assert [f.external_id for f in second.items] == [n["status"]["id"] for n in added[80:]]


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        (401, FailureKind.AUTH_EXPIRED),
        (403, FailureKind.AUTH_EXPIRED),
        (429, FailureKind.RATE_LIMITED),
        (500, FailureKind.NETWORK),
        (503, FailureKind.NETWORK),
        (404, FailureKind.UNKNOWN),
    ],
)
def test_each_mastodon_fetching_error_maps_to_a_failure_kind(
    mastodon: tuple[FakeMastodon, ChannelRef], status: int, kind: FailureKind
) -> None:
    # Given an instance that refuses the next notifications request
    fake, channel = mastodon
    fake.add_mention("alice@other.example", "Bonjour")
    fake.faults.fail_next(status, endpoint="notifications", reset_in=60)
    # When the interactions are fetched
    error = failure(lambda: MastodonConnector().fetch_interactions(channel, None, []))
    # Then the failure is typed, and a rate limit says when to retry
    assert (error.kind, error.transient) == (kind, kind in (FailureKind.RATE_LIMITED, FailureKind.NETWORK))
    if status == 429:
        assert 55 <= (error.retry_after or 0) <= 60


def test_a_wrong_mastodon_token_or_no_instance_fails_a_fetch_typed(
    mastodon: tuple[FakeMastodon, ChannelRef],
) -> None:
    _, channel = mastodon
    stale = ChannelRef(channel.id, channel.platform, channel.handle, {**channel.credentials, "access_token": "old"})
    gone = ChannelRef(channel.id, channel.platform, channel.handle, {"base_url": CLOSED, "access_token": "t"})
    assert failure(lambda: MastodonConnector().fetch_interactions(stale, None, [])).kind == FailureKind.AUTH_EXPIRED
    assert failure(lambda: MastodonConnector().fetch_interactions(gone, None, [])).kind == FailureKind.NETWORK


# Bluesky


def test_a_first_bluesky_fetch_returns_mentions_replies_and_quotes_and_a_cursor(
    bluesky: tuple[FakeBluesky, ChannelRef],
) -> None:
    # Given a post of ours, then a like, a mention, a reply and a quote
    fake, channel = bluesky
    connector = BlueskyConnector()
    ours = connector.publish(channel, POST, "post-1/ch-b")
    fake.add_like("dave.bsky.social", ours.external_id)
    mention = fake.add_mention("alice.bsky.social", "@parvis.bsky.social disponible à Lyon ?")
    fake.add_reply("bob.bsky.social", "Magnifique !", parent=ours.external_id)
    quote = fake.add_quote("carol.bsky.social", "Regardez ça", quoted=ours.external_id)
    # When the channel's interactions are fetched for the first time
    page = connector.fetch_interactions(channel, None, [(ours.external_id, ours.published_at)])
    # Then the mention, reply and quote come oldest first with their authors and texts; the like does not
    assert [(f.kind, f.author, f.text) for f in page.items] == [
        ("MENTION", "alice.bsky.social", "@parvis.bsky.social disponible à Lyon ?"),
        ("REPLY", "bob.bsky.social", "Magnifique !"),
        ("MENTION", "carol.bsky.social", "Regardez ça"),
    ]
    assert page.items[0].external_id == mention["uri"]
    assert page.items[0].received_at == datetime.fromisoformat(mention["record"]["createdAt"])
    # And the cursor is the newest one's indexedAt; the reasons were asked for, with the session's token
    assert page.cursor == quote["indexedAt"]
    assert fake.listings[0]["reasons"] == ["mention", "reply", "quote"]
    assert fake.logins == 1


def test_a_bluesky_fetch_with_the_cursor_returns_only_newer_notifications(
    bluesky: tuple[FakeBluesky, ChannelRef],
) -> None:
    # Given a first fetch, then two new mentions
    fake, channel = bluesky
    connector = BlueskyConnector()
    fake.add_mention("alice.bsky.social", "Première")
    first = connector.fetch_interactions(channel, None, [])
    fake.add_mention("bob.bsky.social", "Deuxième")
    newest = fake.add_mention("carol.bsky.social", "Troisième")
    # When the interactions are fetched with the cursor, then again with the new one
    second = connector.fetch_interactions(channel, first.cursor, [])
    third = connector.fetch_interactions(channel, second.cursor, [])
    # Then the second fetch has only the new ones, and the third nothing, keeping its cursor
    assert [f.text for f in second.items] == ["Deuxième", "Troisième"]
    assert second.cursor == newest["indexedAt"]
    assert (third.items, third.cursor) == ([], second.cursor)


def test_a_bluesky_reply_names_our_post_only_when_its_parent_is_ours(bluesky: tuple[FakeBluesky, ChannelRef]) -> None:
    # Given a reply to our post, and a reply in our thread to someone else's reply
    fake, channel = bluesky
    connector = BlueskyConnector()
    ours = connector.publish(channel, POST, "post-1/ch-b")
    direct = fake.add_reply("bob.bsky.social", "Merci !", parent=ours.external_id)
    fake.add_reply("carol.bsky.social", "+1 Bob", parent=direct["uri"], root=ours.external_id)
    # When they are fetched
    page = connector.fetch_interactions(channel, None, [(ours.external_id, ours.published_at)])
    # Then the first names our post by its id (its at:// URI), the second names none
    assert [(f.kind, f.in_reply_to) for f in page.items] == [("REPLY", ours.external_id), ("REPLY", None)]


def test_a_burst_of_bluesky_notifications_is_read_across_pages_down_to_the_cursor(
    bluesky: tuple[FakeBluesky, ChannelRef],
) -> None:
    # Given a cursor, then more new mentions than one page holds
    fake, channel = bluesky
    connector = BlueskyConnector()
    fake.add_mention("a.bsky.social", "avant")
    cursor = connector.fetch_interactions(channel, None, []).cursor
    added = [fake.add_mention(f"fan{i}.bsky.social", f"n°{i}") for i in range(150)]
    # When the interactions are fetched with the cursor
    page = connector.fetch_interactions(channel, cursor, [])
    # Then every new one comes once, oldest first, the second page asked for with the API's own cursor
    assert [f.external_id for f in page.items] == [n["uri"] for n in added]
    assert fake.listings[2]["cursor"] == [added[50]["indexedAt"]]
    assert page.cursor == added[-1]["indexedAt"]


@pytest.mark.parametrize(
    ("status", "error", "kind"),
    [
        (401, "AuthenticationRequired", FailureKind.AUTH_EXPIRED),
        (400, "InvalidToken", FailureKind.AUTH_EXPIRED),
        (429, None, FailureKind.RATE_LIMITED),
        (500, None, FailureKind.NETWORK),
        (502, None, FailureKind.NETWORK),
    ],
)
def test_each_bluesky_fetching_error_maps_to_a_failure_kind(
    bluesky: tuple[FakeBluesky, ChannelRef], status: int, error: str | None, kind: FailureKind
) -> None:
    # Given a PDS that refuses the next listing, to a connector with a fresh session
    fake, channel = bluesky
    fake.add_mention("alice.bsky.social", "Bonjour")
    fake.faults.fail_next(status, endpoint="listNotifications", error=error, reset_in=60)
    # When the interactions are fetched
    failed = failure(lambda: BlueskyConnector().fetch_interactions(channel, None, []))
    # Then the failure is typed, and a rate limit says when to retry
    assert (failed.kind, failed.transient) == (kind, kind in (FailureKind.RATE_LIMITED, FailureKind.NETWORK))
    if status == 429:
        assert 55 <= (failed.retry_after or 0) <= 61


def test_an_expired_bluesky_session_is_renewed_once_while_fetching(bluesky: tuple[FakeBluesky, ChannelRef]) -> None:
    # Given a connector whose cached session has expired since its last fetch
    fake, channel = bluesky
    connector = BlueskyConnector()
    connector.fetch_interactions(channel, None, [])
    fake.expire_sessions()
    fake.add_mention("alice.bsky.social", "Bonjour")
    # When it fetches again
    page = connector.fetch_interactions(channel, None, [])
    # Then it logged in once more and read the mention
    assert [f.text for f in page.items] == ["Bonjour"]
    assert fake.logins == 2


def test_a_bluesky_fetch_past_the_page_cap_stops_there(
    bluesky: tuple[FakeBluesky, ChannelRef], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a connector that reads at most two pages of 100 per fetch, and 250 new mentions
    fake, channel = bluesky
    monkeypatch.setattr(bluesky_module, "MAX_PAGES", 2)
    connector = BlueskyConnector()
    fake.add_mention("a.bsky.social", "avant")
    cursor = connector.fetch_interactions(channel, None, []).cursor
    added = [fake.add_mention(f"fan{i}.bsky.social", f"n°{i}") for i in range(250)]
    # When they are fetched
    page = connector.fetch_interactions(channel, cursor, [])
    # Then the newest 200 come (the API only pages backwards), with two listings
    assert [f.external_id for f in page.items] == [n["uri"] for n in added[50:]]
    assert len(fake.listings) == 3


# Sandbox

SANDBOX = ChannelRef("tenant-1/channel/sb", "SANDBOX", "@maison_demo", {})
T0 = datetime(2025, 3, 3, 9, 0, tzinfo=UTC)
PUBLISHED = [(f"p{i}", T0 + timedelta(hours=i)) for i in range(3)]


def test_sandbox_fetching_is_deterministic_for_the_same_inputs_and_time() -> None:
    # Given two sandboxes whose clocks read the same instant
    at = T0 + timedelta(hours=6)
    one, other = SandboxConnector(clock=lambda: at), SandboxConnector(clock=lambda: at)
    # When both fetch the same channel's interactions
    page = one.fetch_interactions(SANDBOX, None, PUBLISHED)
    # Then they get the same page: the simulation's interactions until then, each naming the post it answers
    assert page == other.fetch_interactions(SANDBOX, None, PUBLISHED)
    expected = interactions_for(SANDBOX, PUBLISHED, at)
    assert [(f.external_id, f.kind, f.in_reply_to) for f in page.items] == [
        (i["external_id"], i["kind"], i["post_external_id"]) for i in expected
    ]
    assert page.items
    assert page.cursor == at.isoformat()


def test_sandbox_fetching_returns_only_what_arrived_after_the_cursor() -> None:
    # Given a sandbox whose clock moves from three hours to two days after the first post
    now = [T0 + timedelta(hours=3)]
    connector = SandboxConnector(clock=lambda: now[0])
    first = connector.fetch_interactions(SANDBOX, None, PUBLISHED)
    now[0] = T0 + timedelta(days=2)
    # When it fetches with the first cursor, then again at the same time
    second = connector.fetch_interactions(SANDBOX, first.cursor, PUBLISHED)
    third = connector.fetch_interactions(SANDBOX, second.cursor, PUBLISHED)
    # Then the second has only what arrived in between, the two together are everything once, the third nothing
    assert all(T0 + timedelta(hours=3) < f.received_at <= now[0] for f in second.items)
    everything = [i["external_id"] for i in interactions_for(SANDBOX, PUBLISHED, now[0])]
    assert [f.external_id for f in first.items + second.items] == everything
    assert (third.items, third.cursor) == ([], second.cursor)


@pytest.mark.parametrize(
    ("credentials", "kind"),
    [({"expired": True}, FailureKind.AUTH_EXPIRED), ({"unreachable": True}, FailureKind.NETWORK)],
)
def test_sandbox_fetching_fails_as_its_credentials_say(credentials: dict[str, bool], kind: FailureKind) -> None:
    channel = ChannelRef("ch-s", "SANDBOX", "@s", credentials)
    assert failure(lambda: SandboxConnector().fetch_interactions(channel, None, PUBLISHED)).kind == kind
