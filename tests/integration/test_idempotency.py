"""An idempotency key answers once: the command's result is stored with its events, in their transaction.

The API records a keyed mutation's result after the command's events are stored. If the process dies in between,
the key keeps no result; once its reservation lapses, a retry would run the command again (a second post drafted,
the scale-out test saw it). The event store now records the result in the events' own transaction."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import psycopg
import pytest

from domain.context import Receipt, answering
from domain.errors import Conflict
from parvis import wiring
from tests.conftest import make_settings
from tests.support import Processes, fresh_database, process_env, register_agency

pytestmark = pytest.mark.slow

ADMIN = "admin@recus.test"
LAPSE = 3  # PARVIS_REQUEST_TIMEOUT_SECONDS: a reservation older than this has no attempt left
CREATE = "mutation($i: CreateTenantInput!) { createTenant(input: $i) { tenant { id } } }"
CONNECT = "mutation($i: ConnectChannelInput!) { connectChannel(input: $i) { channel { id } } }"
DRAFT = """mutation($i: DraftPostInput!) { draftPost(input: $i) {
  post { id } userErrors { code field message } position } }"""
POSTS = "query($t: ID!) { tenant(id: $t) { posts(first: 50) { totalCount edges { node { id } } } } }"

# What a process that dies right after the command's transaction leaves behind: the API never gets to write the
# result (its role, parvis_app, is refused); the event store (the owner) still can.
CUT_AFTER_COMMAND = """
CREATE FUNCTION parvis.cut_after_command() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF current_user = 'parvis_app' THEN RAISE EXCEPTION 'the API process died here'; END IF;
  RETURN NEW;
END $$;
CREATE TRIGGER cut_after_command BEFORE UPDATE ON parvis.idempotency
  FOR EACH ROW EXECUTE FUNCTION parvis.cut_after_command();
"""


def test_a_retry_after_the_api_died_past_the_commands_transaction_answers_the_first_result(
    servers: tuple[str, str], tmp_path: Path
) -> None:
    with fresh_database(servers[0]) as url:
        register_agency(url, servers[1], tmp_path, ADMIN)
        deployment = Processes(process_env(url, servers[1], PARVIS_REQUEST_TIMEOUT_SECONDS=str(LAPSE),
                                           PARVIS_QUEUE_NAMESPACE=f"parvis-receipts-{uuid.uuid4().hex[:8]}"),
                               tmp_path)
        try:
            deployment.start("project")
            admin = deployment.api().login(ADMIN)
            tid = admin.data(CREATE, {"i": {"name": "Reçus", "kind": "NGO", "timezone": "Europe/Paris"}})[
                "createTenant"]["tenant"]["id"]
            channel = admin.data(CONNECT, {"i": {"tenantId": tid, "platform": "SANDBOX", "handle": "@recus"}})[
                "connectChannel"]["channel"]["id"]
            draft = {"i": {"tenantId": tid, "idempotencyKey": "draft-1",
                           "variants": [{"channelId": channel, "body": "Collecte de printemps"}]}}
            with psycopg.connect(url, autocommit=True) as conn:
                conn.execute(CUT_AFTER_COMMAND)

            # The first attempt: the post is drafted, then the API "dies" before it records the result
            first = admin.execute(DRAFT, draft)
            assert [e["extensions"]["code"] for e in first["errors"]] == ["INTERNAL"]
            assert first["data"] is None

            # Once the reservation has lapsed (no attempt is left to finish it), the retry gets the first result
            time.sleep(LAPSE + 0.5)
            again = admin.data(DRAFT, draft)["draftPost"]
            assert again["userErrors"] == []
            posts = admin.data(POSTS, {"t": tid})["tenant"]["posts"]
            assert posts["totalCount"] == 1
            assert again["post"]["id"] == posts["edges"][0]["node"]["id"]

            # The same key with another input is still refused, naming the key
            other = admin.data(DRAFT, {"i": {**draft["i"], "variants": [{"channelId": channel, "body": "Autre"}]}})
            assert other["draftPost"]["userErrors"] == [{
                "code": "CONFLICT", "field": ["input", "idempotencyKey"],
                "message": "this idempotency key was used with another input"}]
            assert admin.data(POSTS, {"t": tid})["tenant"]["posts"]["totalCount"] == 1
        finally:
            deployment.stop()


def test_a_command_refused_at_save_records_no_result_under_its_key(
    servers: tuple[str, str], tmp_path: Path
) -> None:
    with fresh_database(servers[0]) as url:
        register_agency(url, servers[1], tmp_path, ADMIN)
        settings = make_settings(url, servers[1], tmp_path)
        first, second = wiring.domain(settings), wiring.domain(settings)
        try:
            agency = first.register_agency("Agence Reçus", "autre@recus.test", "correct horse battery").value[0]
            tenant = first.create_tenant(agency, "Reçus", "NGO", "Europe/Paris").value
            with psycopg.connect(url, autocommit=True) as conn:
                conn.execute("INSERT INTO parvis.idempotency (principal, key, operation, input_hash) "
                             "VALUES ('u1', 'k1', 'updateTenant', 'h'), ('u1', 'k2', 'updateTenant', 'h')")

                # Two writers hold the same version of the tenant; the second to save is refused
                stale = second.tenant(tenant)
                with answering(Receipt("u1", "k1")):
                    outcome = first.update_tenant(tenant, name="Reçus (1)")
                stale.rename("Reçus (2)")
                with answering(Receipt("u1", "k2")), pytest.raises(Conflict):
                    second.done("lost", stale)

                rows = {key: (result, position) for key, result, position in conn.execute(
                    "SELECT key, result, position FROM parvis.idempotency WHERE principal = 'u1'")}
            # The saved command's result and position are there; the refused one left its key without a result
            assert rows["k1"] == ({"value": tenant, "errors": []}, outcome.position)
            assert rows["k2"] == (None, None)
        finally:
            first.close()
            second.close()
