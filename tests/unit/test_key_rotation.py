"""Rotation of the master secret, without I/O: previous keys still open, the current one seals."""

from __future__ import annotations

import pytest

from domain.channel import Channel, ChannelHealth
from parvis.crypto import SecretBox, UnreadableSecret, personal_cipher
from parvis.settings import Settings

OLD, NEW = b"old-master-secret", b"new-master-secret"


def test_a_secret_sealed_under_a_previous_key_opens_and_is_sealed_again_under_the_current_one() -> None:
    sealed = SecretBox(OLD).seal("token")
    box = SecretBox(NEW, [OLD])
    assert box.open(sealed) == "token"
    assert not box.is_current(sealed)
    resealed = box.reseal(sealed)
    assert resealed is not None
    assert box.reseal(resealed) is None
    assert SecretBox(NEW).open(resealed) == "token"
    with pytest.raises(UnreadableSecret):
        SecretBox(OLD).open(resealed)
    with pytest.raises(UnreadableSecret):
        SecretBox(NEW).open(sealed)


def test_a_wrong_key_is_a_failed_login_not_an_error() -> None:
    hashed = SecretBox(OLD).hash_password("correct horse battery")
    assert SecretBox(NEW, [OLD]).verify_password(hashed, "correct horse battery")
    assert not SecretBox(NEW).verify_password(hashed, "correct horse battery")


def test_an_author_key_wrapped_under_a_previous_key_unwraps_and_is_wrapped_again() -> None:
    key, wrapped = personal_cipher(OLD).new_key()
    cipher = personal_cipher(NEW, [OLD])
    assert cipher.unwrap(wrapped) == key
    assert not cipher.is_current(wrapped)
    again = cipher.wrap(cipher.unwrap(wrapped))
    assert personal_cipher(NEW).unwrap(again) == key
    assert not personal_cipher(OLD).is_current(again)


def test_previous_keys_are_read_comma_separated_without_the_current_one() -> None:
    settings = Settings(secret_key="new", previous_secret_keys="old, older,,new")  # type: ignore[arg-type]
    assert settings.previous_secrets() == [b"old", b"older"]


def test_resealing_credentials_keeps_their_version_and_health() -> None:
    channel = Channel(tenant_key="t" * 32, platform="MASTODON", handle="@a", mission=None, connector="mastodon",
                      credentials="v1:old")
    channel.record_health(ChannelHealth.OK, None)
    channel.reseal_credentials("v1:new")
    assert channel.credentials == "v1:new"
    assert channel.credentials_version == 1
    assert channel.health == "OK"
    events = channel.collect_events()
    assert type(events[-1]).__name__ == "CredentialsResealed"
    assert "credentials" in events[-1].SECRET_FIELDS
