"""The post state machine, driven through the application service by random sequences of commands (hypothesis).

The machine keeps its own account of each post, built only from the commands that succeeded: the policy in force
when the post was last submitted, who approved it since, when it is scheduled. After every step it checks the
posts the service holds against that account and against the rules of the approval chain and of crisis mode.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import Bundle, RuleBasedStateMachine, initialize, invariant, rule

from domain.app import Parvis
from domain.errors import Conflict, DomainError, InvalidInput, InvalidTransition, SelfApproval
from domain.post import PostStatus, Variant
from domain.publishing import StepNotAllowed
from domain.tenant import ApprovalPolicy

S = PostStatus
STAFF = ("cm-ana", "cm-bob", "cm-dee", "admin-cho")  # agency staff: they take the internal step
CLIENTS = ("client-dan", "client-eve")  # the client's reviewers: they take the client step
STEPS_OF = {**{u: {"internal"} for u in STAFF}, **{u: {"client"} for u in CLIENTS}}
WAITS_FOR = {S.IN_REVIEW.value: "internal", S.AWAITING_CLIENT.value: "client"}
PAST_APPROVAL = {s.value for s in (S.APPROVED, S.SCHEDULED, S.PUBLISHING, S.PUBLISHED, S.HELD, S.FAILED)}
START = datetime(2025, 3, 1, 12, tzinfo=UTC)


class FakeSecrets:
    def seal(self, plaintext: str) -> str:
        return "sealed:" + plaintext[::-1]

    def hash_password(self, password: str) -> str:
        return "hashed"


@dataclass
class Account:
    """What the test knows of a post, from the commands that succeeded."""

    author: str
    temperature: str
    channels: tuple[str, ...]
    status: str = S.DRAFT.value
    policy: ApprovalPolicy | None = None  # in force at the last submission
    submission: int = 0
    internal_approvers: set[str] = field(default_factory=set)
    client_approved: bool = False
    scheduled_at: datetime | None = None
    published: set[str] = field(default_factory=set)

    @property
    def cold(self) -> bool:
        return self.temperature == "COLD"


def check_outcome(error: DomainError | None, expected: type[DomainError] | None) -> None:
    """The command succeeded when expected to, else was refused with the expected error and its code."""
    if expected is None:
        assert error is None, f"refused unexpectedly: {error!r}"
        return
    assert isinstance(error, expected), f"expected {expected.__name__}, got {error!r}"
    assert error.code == expected.code
    if expected is InvalidTransition:
        assert error.code == "INVALID_TRANSITION"


class PostLifecycle(RuleBasedStateMachine):
    posts = Bundle("posts")

    def __init__(self) -> None:
        super().__init__()
        self.now = START
        self.app = Parvis(env={"PERSISTENCE_MODULE": "eventsourcing.popo"}, secrets=FakeSecrets(),
                          clock=lambda: self.now)
        agency_key = self.app.register_agency("Agence", "admin@agence.test", "correct horse battery").value[0]
        self.tenant = self.app.create_tenant(agency_key, "Client", "NGO", "Europe/Paris").value
        self.channels = tuple(
            self.app.connect_channel(self.tenant, "MASTODON", f"@client{i}", None, None).value for i in range(2)
        )
        self.policy = ApprovalPolicy()  # a new tenant's policy
        self.crisis = False
        self.accounts: dict[str, Account] = {}

    # ------------------------------------------------------------------ plumbing
    def attempt(self, post_id: str | None, command: Callable[[], Any]) -> tuple[DomainError | None, Any]:
        """Run a command. A refusal must be a DomainError and must leave the post as it was; any other
        exception is a crash and fails the test."""
        before = self.app.post(post_id).version if post_id else None
        try:
            value = command().value
        except DomainError as refused:
            if post_id:
                assert self.app.post(post_id).version == before, "a refused command changed the post"
            return refused, None
        return None, value

    # ------------------------------------------------------------------ tenant
    @initialize(internal=st.integers(0, 3), client=st.booleans())
    def a_policy_to_start_with(self, internal: int, client: bool) -> None:
        self.set_approval_policy(internal, client, None)

    @rule(
        internal=st.integers(-1, 4),
        client=st.booleans(),
        expiry=st.sampled_from([None, 0, 1, 48, 2160, 2161]),
    )
    def set_approval_policy(self, internal: int, client: bool, expiry: int | None) -> None:
        valid = 0 <= internal <= 3 and (expiry is None or 1 <= expiry <= 2160)
        error, _ = self.attempt(None, lambda: self.app.set_approval_policy(self.tenant, internal, client, expiry))
        check_outcome(error, None if valid else InvalidInput)
        if valid:
            self.policy = ApprovalPolicy(internal, client, expiry)

    @rule()
    def activate_crisis(self) -> None:
        error, held = self.attempt(None, lambda: self.app.activate_crisis(self.tenant, "Flood", list(self.accounts)))
        check_outcome(error, InvalidTransition if self.crisis else None)
        if error:
            return
        self.crisis = True
        to_hold = [a for a in self.accounts.values() if a.status == S.SCHEDULED.value and a.cold]
        for account in to_hold:
            account.status = S.HELD.value
        assert held == len(to_hold)

    @rule(hours_later=st.integers(0, 72))
    def deactivate_crisis(self, hours_later: int) -> None:
        self.now += timedelta(hours=hours_later)
        error, released = self.attempt(None, lambda: self.app.deactivate_crisis(self.tenant, list(self.accounts)))
        check_outcome(error, None if self.crisis else InvalidTransition)
        if error:
            return
        self.crisis = False
        held = {pid: a for pid, a in self.accounts.items() if a.status == S.HELD.value}
        for post_id, account in held.items():
            # Released: rescheduled if its time is still ahead, else back to APPROVED
            ahead = account.scheduled_at is not None and account.scheduled_at > self.now
            account.status = S.SCHEDULED.value if ahead else S.APPROVED.value
            account.scheduled_at = account.scheduled_at if ahead else None
            assert self.app.post(post_id).status == account.status
        assert released == len(held)

    @rule(hours=st.integers(1, 48))
    def time_passes(self, hours: int) -> None:
        self.now += timedelta(hours=hours)

    # ------------------------------------------------------------------ drafting and review
    @rule(target=posts, author=st.sampled_from(STAFF), temperature=st.sampled_from(["HOT", "COLD"]),
          both_channels=st.booleans())
    def draft(self, author: str, temperature: str, both_channels: bool) -> str:
        channels = self.channels if both_channels else self.channels[:1]
        variants = [Variant(c, f"Bonjour {c}") for c in channels]
        post_id = self.app.draft_post(self.tenant, author, variants, None, None, None, temperature).value
        self.accounts[post_id] = Account(author, temperature, channels)
        return post_id

    @rule(post_id=posts, version=st.sampled_from(["current", "stale", "unchecked"]))
    def edit(self, post_id: str, version: str) -> None:
        account = self.accounts[post_id]
        current = self.app.post(post_id).version
        given = {"current": current, "stale": current - 1, "unchecked": None}[version]
        variants = [Variant(c, "Edited") for c in account.channels]
        error, _ = self.attempt(post_id, lambda: self.app.edit_post(post_id, variants, given))
        if version == "stale":
            check_outcome(error, Conflict)
        elif account.status in (S.DRAFT.value, S.CHANGES_REQUESTED.value):
            check_outcome(error, None)
            account.status = S.DRAFT.value
        else:
            check_outcome(error, InvalidTransition)

    @rule(post_id=posts)
    def submit(self, post_id: str) -> None:
        account = self.accounts[post_id]
        error, _ = self.attempt(post_id, lambda: self.app.submit_post(post_id))
        if account.status != S.DRAFT.value:
            check_outcome(error, InvalidTransition)
            return
        check_outcome(error, None)
        policy = self.policy
        account.policy, account.submission = policy, account.submission + 1
        account.internal_approvers, account.client_approved = set(), False
        if policy.internal_approvals > 0:
            account.status = S.IN_REVIEW.value
        elif policy.client_approval:
            account.status = S.AWAITING_CLIENT.value
        else:
            # (d) the policy in force requires no approval at all: approved at once
            account.status = S.APPROVED.value
            assert self.app.post(post_id).status == S.APPROVED.value

    def review(self, post_id: str, user: str, verdict: str, steps: set[str]) -> DomainError | None:
        account = self.accounts[post_id]
        step = WAITS_FOR.get(account.status)
        expected: type[DomainError] | None = None
        if step is None:
            expected = InvalidTransition
        elif step not in steps:
            expected = StepNotAllowed
        elif verdict == "approve" and user == account.author:
            expected = SelfApproval
        elif verdict == "approve" and step == "internal" and user in account.internal_approvers:
            expected = InvalidTransition  # the same person twice does not make two approvals
        error, _ = self.attempt(post_id, lambda: self.app.review_post(post_id, user, verdict, "ok", steps))
        check_outcome(error, expected)
        if error is None:
            self.reviewed(account, user, verdict, step)
        return error

    @staticmethod
    def reviewed(account: Account, user: str, verdict: str, step: str | None) -> None:
        assert account.policy is not None
        if verdict == "request_changes":
            account.status = S.CHANGES_REQUESTED.value
        elif verdict == "reject":
            account.status = S.CANCELLED.value
        elif step == "client":
            account.client_approved = True
            account.status = S.APPROVED.value
        else:
            account.internal_approvers.add(user)
            if len(account.internal_approvers) >= account.policy.internal_approvals:
                account.status = (S.AWAITING_CLIENT if account.policy.client_approval else S.APPROVED).value

    @rule(post_id=posts, user=st.sampled_from(STAFF + CLIENTS),
          verdict=st.sampled_from(["approve", "approve", "approve", "request_changes", "reject"]))
    def review_as_staff_or_client(self, post_id: str, user: str, verdict: str) -> None:
        self.review(post_id, user, verdict, STEPS_OF[user])

    @rule(post_id=posts, steps=st.sampled_from([{"internal"}, {"client"}, {"internal", "client"}]))
    def author_approves_own_post(self, post_id: str, steps: set[str]) -> None:
        account = self.accounts[post_id]
        waits_for = WAITS_FOR.get(account.status)
        error = self.review(post_id, account.author, "approve", set(steps))
        # (b) a self-approval is never accepted; when the post waits for a step the author may take, it is SELF_APPROVAL
        assert error is not None
        if waits_for in steps:
            assert isinstance(error, SelfApproval)
            assert error.code == "SELF_APPROVAL"

    @rule(post_id=posts, user=st.sampled_from(STAFF + CLIENTS),
          verdict=st.sampled_from(["publish", "cancel", "schedule", "submit", "edit", "__init__", "APPROVE", ""]))
    def review_with_a_verdict_that_is_not_one(self, post_id: str, user: str, verdict: str) -> None:
        error, _ = self.attempt(post_id, lambda: self.app.review_post(post_id, user, verdict, None, STEPS_OF[user]))
        check_outcome(error, InvalidInput)
        assert error is not None
        assert error.field == ("verdict",)

    def colleague(self, post_id: str, pick: int) -> str:
        """A member of the agency staff other than the post's author."""
        others = [u for u in STAFF if u != self.accounts[post_id].author]
        return others[pick % len(others)]

    @rule(post_id=posts, pick=st.integers(0, 100))
    def the_same_colleague_approves_twice(self, post_id: str, pick: int) -> None:
        colleague = self.colleague(post_id, pick)
        self.review(post_id, colleague, "approve", {"internal"})
        self.review(post_id, colleague, "approve", {"internal"})

    @rule(post_id=posts, approvals=st.integers(0, 2), how=st.sampled_from(["request_changes", "expire"]),
          pick=st.integers(0, 100))
    def partly_approved_then_sent_back_and_resubmitted(self, post_id: str, approvals: int, how: str,
                                                       pick: int) -> None:
        """A post in review, approved by some, goes back to its author, who edits it and submits it again: the
        approvals start over."""
        for n in range(approvals):
            self.review(post_id, self.colleague(post_id, pick + n), "approve", {"internal"})
        step = WAITS_FOR.get(self.accounts[post_id].status)
        if step is None:
            return
        if how == "expire":
            self.expire_approval(post_id, stale=False)
        else:
            reviewers = STAFF if step == "internal" else CLIENTS
            self.review(post_id, reviewers[pick % len(reviewers)], "request_changes", {step})
        self.edit(post_id, "current")
        self.submit(post_id)

    @rule(post_id=posts, stale=st.booleans())
    def expire_approval(self, post_id: str, stale: bool) -> None:
        account = self.accounts[post_id]
        submission = account.submission - 1 if stale else account.submission
        error, expired = self.attempt(post_id, lambda: self.app.expire_approval(post_id, submission))
        check_outcome(error, None)
        pending = account.status in WAITS_FOR
        assert expired == (pending and not stale)
        if expired:
            account.status = S.DRAFT.value
            account.internal_approvers, account.client_approved = set(), False

    # ------------------------------------------------------------------ scheduling and publishing
    @rule(post_id=posts, hours=st.integers(-3, 96))
    def schedule(self, post_id: str, hours: int) -> None:
        account = self.accounts[post_id]
        at = self.now + timedelta(hours=hours)
        error, _ = self.attempt(post_id, lambda: self.app.schedule_post(post_id, at))
        if account.status not in (S.APPROVED.value, S.SCHEDULED.value):
            check_outcome(error, InvalidTransition)
        elif at <= self.now:
            check_outcome(error, InvalidInput)
        else:
            check_outcome(error, None)
            account.scheduled_at = at
            # (e) a COLD post scheduled during a crisis waits at once; a HOT one does not
            account.status = (S.HELD if self.crisis and account.cold else S.SCHEDULED).value

    @rule(post_id=posts)
    def start_publishing(self, post_id: str) -> None:
        account = self.accounts[post_id]
        error, status = self.attempt(post_id, lambda: self.app.start_publishing(post_id))
        if account.status == S.PUBLISHING.value:
            check_outcome(error, None)  # a redelivered job
        elif account.status == S.SCHEDULED.value:
            check_outcome(error, None)
            account.status = (S.HELD if self.crisis and account.cold else S.PUBLISHING).value
        else:
            check_outcome(error, InvalidTransition)
        if error is None:
            assert status == account.status

    @rule(post_id=posts, channel=st.integers(0, 1))
    def record_published(self, post_id: str, channel: int) -> None:
        account, channel_id = self.accounts[post_id], self.channels[channel]
        error, _ = self.attempt(post_id, lambda: self.app.record_variant_published(
            post_id, channel_id, f"ext-{channel}", None, self.now))
        if account.status != S.PUBLISHING.value:
            check_outcome(error, InvalidTransition)
        elif channel_id not in account.channels:
            check_outcome(error, InvalidInput)  # the post does not go to that channel
        else:
            check_outcome(error, None)
            account.published.add(channel_id)
            if account.published == set(account.channels):
                account.status = S.PUBLISHED.value

    @rule(post_id=posts, channel=st.integers(0, 1))
    def record_failure(self, post_id: str, channel: int) -> None:
        account, channel_id = self.accounts[post_id], self.channels[channel]
        error, _ = self.attempt(post_id, lambda: self.app.record_publish_failure(
            post_id, channel_id, "REJECTED", "The platform said no"))
        if account.status != S.PUBLISHING.value:
            check_outcome(error, InvalidTransition)
        elif channel_id not in account.channels:
            check_outcome(error, InvalidInput)
        else:
            check_outcome(error, None)
            account.status = S.FAILED.value

    @rule(post_id=posts)
    def cancel(self, post_id: str) -> None:
        account = self.accounts[post_id]
        error, _ = self.attempt(post_id, lambda: self.app.cancel_post(post_id))
        if account.status in (S.PUBLISHED.value, S.PUBLISHING.value, S.CANCELLED.value):
            # (c) a PUBLISHED post cannot be cancelled
            check_outcome(error, InvalidTransition)
        else:
            check_outcome(error, None)
            account.status = S.CANCELLED.value

    @rule(post_id=posts, pick=st.integers(0, 100), steps=st.integers(1, 10))
    def move_along(self, post_id: str, pick: int, steps: int) -> None:
        """The natural next commands for the post, so that random runs reach the end of the chain."""
        account = self.accounts[post_id]
        for n in range(steps):
            step = WAITS_FOR.get(account.status)
            if account.status == S.DRAFT.value:
                self.submit(post_id)
            elif step == "internal":
                self.review(post_id, self.colleague(post_id, pick + n), "approve", {step})
            elif step == "client":
                self.review(post_id, CLIENTS[(pick + n) % len(CLIENTS)], "approve", {step})
            elif account.status == S.APPROVED.value:
                self.schedule(post_id, 1 + pick % 48)
            elif account.status == S.SCHEDULED.value:
                self.start_publishing(post_id)
            elif account.status == S.PUBLISHING.value:
                self.record_published(post_id, self.channels.index(account.channels[n % len(account.channels)]))

    # ------------------------------------------------------------------ what holds after every step
    @invariant()
    def the_posts_keep_the_rules(self) -> None:
        tenant = self.app.tenant(self.tenant)
        assert (tenant.crisis is not None) == self.crisis
        for post_id, account in self.accounts.items():
            post = self.app.post(post_id)
            if post.status in PAST_APPROVAL:
                self.check_approved_as_submitted(post.policy, account)
            self.check_crisis_rule(post.status, account)
            assert post.status == account.status, f"{post_id}: {post.status}, expected {account.status}"
            assert post.submission == account.submission
            assert post.internal_approvers() == account.internal_approvers  # only those since the last submission
            if post.status in (S.SCHEDULED.value, S.HELD.value):
                assert post.scheduled_at == account.scheduled_at

    @staticmethod
    def check_approved_as_submitted(recorded: dict[str, Any] | None, account: Account) -> None:
        """(a) Approved only with the distinct approvers, none of them the author, and the client approval that the
        policy in force at submission required, whatever the policy has become since."""
        policy = account.policy
        assert policy is not None, "approved without being submitted"
        assert recorded is not None
        assert recorded["internal_approvals"] == policy.internal_approvals
        assert recorded["client_approval"] == policy.client_approval
        assert account.author not in account.internal_approvers
        assert len(account.internal_approvers) >= policy.internal_approvals
        assert account.client_approved or not policy.client_approval

    def check_crisis_rule(self, status: str, account: Account) -> None:
        """(e) During a crisis no COLD post stays SCHEDULED; a HOT post is never HELD; no post is HELD after it."""
        if status == S.HELD.value:
            assert account.cold
            assert self.crisis
        if self.crisis and account.cold:
            assert status != S.SCHEDULED.value


PostLifecycle.TestCase.settings = settings(
    max_examples=200,
    stateful_step_count=50,
    deadline=None,
    database=None,  # unit tests write nothing to disk
    suppress_health_check=[HealthCheck.too_slow],
)
TestAnySequenceOfCommandsKeepsTheApprovalChainAndCrisisRules = PostLifecycle.TestCase


# ---------------------------------------------------------------------- the same rules, as examples


@pytest.fixture
def machine() -> PostLifecycle:
    return PostLifecycle()


def test_a_policy_changed_after_submission_does_not_change_what_the_post_needs(machine: PostLifecycle) -> None:
    # Given a post submitted while two internal approvals and the client's were required
    machine.set_approval_policy(2, True, None)
    post_id = machine.draft("cm-ana", "COLD", both_channels=False)
    machine.submit(post_id)
    # When the tenant stops requiring any approval, and one colleague approves
    machine.set_approval_policy(0, False, None)
    machine.review(post_id, "cm-bob", "approve", {"internal"})
    # Then the post still waits for a second colleague, then for the client
    assert machine.app.post(post_id).status == "IN_REVIEW"
    machine.review(post_id, "admin-cho", "approve", {"internal"})
    assert machine.app.post(post_id).status == "AWAITING_CLIENT"
    machine.review(post_id, "client-dan", "approve", {"client"})
    assert machine.app.post(post_id).status == "APPROVED"
    machine.the_posts_keep_the_rules()


def test_an_author_never_approves_their_own_post(machine: PostLifecycle) -> None:
    # Given a post waiting for one internal approval
    post_id = machine.draft("cm-ana", "HOT", both_channels=False)
    machine.submit(post_id)
    # When its author approves it
    with pytest.raises(SelfApproval) as refused:
        machine.app.review_post(post_id, "cm-ana", "approve", None, {"internal"})
    # Then it is refused as a self-approval and the post still waits
    assert refused.value.code == "SELF_APPROVAL"
    assert machine.app.post(post_id).status == "IN_REVIEW"


def test_the_same_colleague_approving_twice_counts_once(machine: PostLifecycle) -> None:
    # Given a post that needs two internal approvals, approved once by a colleague
    machine.set_approval_policy(2, False, None)
    post_id = machine.draft("cm-ana", "HOT", both_channels=False)
    machine.submit(post_id)
    machine.app.review_post(post_id, "cm-bob", "approve", None, {"internal"})
    # When the same colleague approves again
    with pytest.raises(InvalidTransition) as refused:
        machine.app.review_post(post_id, "cm-bob", "approve", None, {"internal"})
    # Then it is refused and the post still waits for a second person
    assert refused.value.code == "INVALID_TRANSITION"
    assert machine.app.post(post_id).status == "IN_REVIEW"


@pytest.mark.parametrize("how", ["request_changes", "expire"])
def test_approvals_start_over_when_a_post_is_submitted_again(machine: PostLifecycle, how: str) -> None:
    # Given a post that needs two internal approvals, approved by one colleague, then sent back to its author
    machine.set_approval_policy(2, False, None)
    post_id = machine.draft("cm-ana", "HOT", both_channels=False)
    machine.submit(post_id)
    machine.partly_approved_then_sent_back_and_resubmitted(post_id, approvals=1, how=how, pick=0)
    # When, after the author's edit and new submission, one other colleague approves
    machine.review(post_id, "cm-dee", "approve", {"internal"})
    # Then the approval given before the new submission does not count
    assert machine.app.post(post_id).status == "IN_REVIEW"
    machine.the_posts_keep_the_rules()


def test_a_published_post_cannot_be_cancelled(machine: PostLifecycle) -> None:
    # Given a post published on its only channel
    post_id = machine.draft("cm-ana", "HOT", both_channels=False)
    machine.move_along(post_id, pick=0, steps=5)
    assert machine.app.post(post_id).status == "PUBLISHED"
    # When it is cancelled
    with pytest.raises(InvalidTransition) as refused:
        machine.app.cancel_post(post_id)
    # Then it is refused as a transition the state machine does not allow
    assert refused.value.code == "INVALID_TRANSITION"
    assert machine.app.post(post_id).status == "PUBLISHED"


def test_a_crisis_holds_cold_posts_only_and_its_end_releases_them_by_their_time(machine: PostLifecycle) -> None:
    # Given a tenant that needs no approval, and three scheduled posts: two COLD (in 2 h and 30 h), one HOT
    machine.set_approval_policy(0, False, None)
    soon, later, hot = (machine.draft("cm-ana", t, both_channels=False) for t in ("COLD", "COLD", "HOT"))
    for post_id, hours in ((soon, 2), (later, 30), (hot, 2)):
        machine.submit(post_id)
        machine.schedule(post_id, hours)
    # When a crisis starts, a day passes, and it ends
    machine.activate_crisis()
    held = {p: machine.app.post(p).status for p in (soon, later, hot)}
    machine.deactivate_crisis(hours_later=24)
    # Then the COLD posts were held and the HOT one was not; the one whose time passed is back to APPROVED
    assert held == {soon: "HELD", later: "HELD", hot: "SCHEDULED"}
    assert machine.app.post(soon).status == "APPROVED"
    assert machine.app.post(soon).scheduled_at is None
    assert machine.app.post(later).status == "SCHEDULED"


def test_a_variant_on_a_channel_of_another_tenant_is_refused_naming_it(machine: PostLifecycle) -> None:
    # Given a channel of another tenant
    agency_key = machine.app.register_agency("Autre", "admin@autre.test", "correct horse battery").value[0]
    other = machine.app.create_tenant(agency_key, "Autre", "BRAND", "Europe/Paris").value
    foreign = machine.app.connect_channel(other, "MASTODON", "@autre", None, None).value
    # When a post of our tenant has a second variant for it
    variants = [Variant(machine.channels[0], "Bonjour"), Variant(foreign, "Hello")]
    with pytest.raises(InvalidInput) as refused:
        machine.app.draft_post(machine.tenant, "cm-ana", variants, None, None, None, "HOT")
    # Then the refusal names that variant's channel
    assert refused.value.field == ("variants", "1", "channelId")
