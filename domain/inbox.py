"""Commands of the moderation inbox: policy versions, ingestion, assignment, decisions, analysis, erasure."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol

from eventsourcing.persistence import IntegrityError

from domain.base import kind_of, scope_of
from domain.errors import Conflict, InvalidInput, NotFound
from domain.interaction import Interaction
from domain.moderation import Decision, InteractionKind, ModerationPolicy, PolicyTerms, Sentiment
from domain.strategy import Strategy
from domain.tenant import Tenant

if TYPE_CHECKING:
    from domain.app import Outcome

MAX_BATCH = 1000


class PersonalData(Protocol):
    """Per-author keys: what the domain needs to seal a commenter's data so that it can be erased."""

    def author_ref(self, tenant_key: str, handle: str) -> str:
        """A pseudonymous reference to an author (the same handle gives the same reference)."""

    def seal(self, tenant_key: str, items: list[tuple[str, str]]) -> list[str]:
        """Seal (author_ref, plaintext) pairs, each with its author's key (created on first use)."""

    def open(self, tenant_key: str, items: list[tuple[str, str]]) -> list[str | None]:
        """Open (author_ref, sealed) pairs; None where the author's key was destroyed."""

    def erase(self, tenant_key: str, author_ref: str) -> None:
        """Destroy an author's key: everything sealed with it becomes unreadable, everywhere."""


@dataclass(frozen=True)
class Incoming:
    """One interaction as a platform, a webhook or an import delivers it."""

    channel_id: str
    kind: str
    external_id: str
    author: str
    text: str
    received_at: datetime
    in_reply_to: str | None = None


class ModerationCommands:
    """Mixed into the application service (domain.app.Parvis)."""

    load: Callable[..., Any]
    commit: Callable[..., int | None]
    done: Callable[..., Outcome[Any]]
    exists: Callable[[str], bool]
    tenant: Callable[..., Tenant]
    now: Callable[[], datetime]
    strategy: Callable[[str], Strategy | None]
    check_channel: Callable[[str, str, str], None]
    personal: PersonalData

    def _outcome(self, value: Any, position: int | None) -> Outcome[Any]:
        from domain.app import Outcome

        return Outcome(value, position)

    # ------------------------------------------------------------------ policy
    def moderation_policy(self, tenant_key: str) -> ModerationPolicy | None:
        pid = ModerationPolicy.create_id(tenant_key)
        return self.load(pid, ModerationPolicy) if self.exists(pid) else None

    def terms_in_force(self, tenant_key: str) -> tuple[int, PolicyTerms]:
        policy = self.moderation_policy(tenant_key)
        return (policy.number, policy.terms) if policy else (0, PolicyTerms())

    def set_moderation_policy(self, tenant_key: str, terms: PolicyTerms) -> Outcome[int]:
        self.tenant(tenant_key).check_not_offboarded()
        for i, rule in enumerate(terms.rules):
            for j, channel_id in enumerate(rule.channels):
                self.check_channel(tenant_key, channel_id, f"rules.{i}.channels.{j}")
        policy = self.moderation_policy(tenant_key) or ModerationPolicy(tenant_key=tenant_key)
        number = policy.set(terms)
        return self.done(number, policy)

    def _versions(self, tenant_key: str) -> tuple[int, PolicyTerms, int | None]:
        number, terms = self.terms_in_force(tenant_key)
        strategy = self.strategy(tenant_key)
        return number, terms, strategy.current if strategy else None

    # ------------------------------------------------------------------ ingestion
    def ingest_interactions(self, tenant_key: str, items: list[Incoming]) -> Outcome[tuple[int, int]]:
        """Save new interactions in one batch, each decided at once by the first rule that applies to it;
        returns (accepted, duplicates). Duplicates (same channel and external id) are counted, never stored."""
        tenant = self.tenant(tenant_key)
        tenant.check_not_offboarded()
        if len(items) > MAX_BATCH:
            raise InvalidInput(f"at most {MAX_BATCH} items in one call", "items")
        self._check_items(tenant_key, items)
        fresh: dict[str, Incoming] = {}
        for item in items:
            fresh.setdefault(Interaction.create_id(tenant_key, item.channel_id, item.external_id.strip()), item)
        for _ in range(2):
            try:
                accepted = self._save_new(tenant, fresh)
            except IntegrityError:
                # Some were stored before (another call, or a redelivered webhook): keep the new ones only.
                fresh = {iid: item for iid, item in fresh.items() if not self.exists(iid)}
                continue
            return self._outcome((len(fresh), len(items) - len(fresh)), accepted)
        raise Conflict("interactions of this batch were being stored at the same time; retry", "items")

    def _check_items(self, tenant_key: str, items: list[Incoming]) -> None:
        channels: set[str] = set()
        latest = self.now() + timedelta(days=1)
        for i, item in enumerate(items):
            where = f"items.{i}"
            if item.channel_id not in channels:
                self.check_channel(tenant_key, item.channel_id, f"{where}.channelId")
                channels.add(item.channel_id)
            if item.kind not in InteractionKind.__members__:
                raise InvalidInput("not an interaction kind", f"{where}.kind")
            if not 1 <= len(item.external_id.strip()) <= 200:
                raise InvalidInput("externalId must have 1 to 200 characters", f"{where}.externalId")
            if not 1 <= len(item.author.strip()) <= 200:
                raise InvalidInput("author must have 1 to 200 characters", f"{where}.author")
            if not item.text.strip() or len(item.text) > 10_000:
                raise InvalidInput("text must have 1 to 10,000 characters", f"{where}.text")
            if item.received_at.tzinfo is None or item.received_at.utcoffset() is None:
                raise InvalidInput("receivedAt must carry an offset", f"{where}.receivedAt")
            if item.received_at > latest:
                raise InvalidInput("receivedAt is in the future", f"{where}.receivedAt")
            if item.in_reply_to is not None and (scope_of(item.in_reply_to) != tenant_key
                                                 or kind_of(item.in_reply_to) != "post"
                                                 or not self.exists(item.in_reply_to)):
                raise InvalidInput("no post of this tenant has this id", f"{where}.inReplyToPostId")

    def _save_new(self, tenant: Tenant, fresh: dict[str, Incoming]) -> int | None:
        if not fresh:
            return None
        key = tenant.tenant_key
        number, terms, strategy_version = self._versions(key)
        refs = [self.personal.author_ref(key, item.author.strip()) for item in fresh.values()]
        sealed = self.personal.seal(key, [
            pair for ref, item in zip(refs, fresh.values(), strict=True)
            for pair in ((ref, item.author.strip()), (ref, item.text))
        ])
        aggregates = []
        for n, item in enumerate(fresh.values()):
            interaction = Interaction(
                tenant_key=key, channel_id=item.channel_id, kind=item.kind,
                external_id=item.external_id.strip(), author_ref=refs[n], author=sealed[2 * n],
                text=sealed[2 * n + 1], received_at=item.received_at, in_reply_to=item.in_reply_to,
                due_by=terms.due_by(item.received_at, tenant.crisis is not None, tenant.timezone),
                policy_version=number,
            )
            interaction.apply_rules(terms, item.text, number, strategy_version)
            aggregates.append(interaction)
        return self.commit_or_raise(*aggregates)

    def commit_or_raise(self, *aggregates: Any) -> int | None:
        """Save atomically, letting the library's IntegrityError through (the caller tells duplicates apart)."""
        recordings = self.save(*aggregates)  # type: ignore[attr-defined]
        return max((r.notification.id for r in recordings), default=None)

    # ------------------------------------------------------------------ people deciding
    def interaction(self, interaction_id: str) -> Interaction:
        return self.load(interaction_id, Interaction, "interactionId")  # type: ignore[no-any-return]

    def assign_interaction(self, interaction_id: str, assignee_id: str) -> Outcome[str]:
        interaction = self.interaction(interaction_id)
        if kind_of(assignee_id) != "user" or not self.exists(assignee_id):
            raise NotFound("assigneeId does not name a user", "assigneeId")
        interaction.assign(assignee_id)
        return self.done(interaction_id, interaction)

    def decide_interaction(self, interaction_id: str, user_id: str, decision: str, rationale: str | None,
                           reply_text: str | None, escalate_to: str | None) -> Outcome[str]:
        interaction = self.interaction(interaction_id)
        number, terms, strategy_version = self._versions(interaction.tenant_key)
        verdict = _decision(decision)
        _check_contact(terms, verdict, escalate_to)
        if rationale is not None and len(rationale) > 4000:
            raise InvalidInput("rationale must be at most 4000 characters", "rationale")
        interaction.decide(verdict, user_id, rationale, reply_text, escalate_to, number, strategy_version)
        return self.done(interaction_id, interaction)

    def overturn_decision(self, interaction_id: str, user_id: str, decision: str, rationale: str,
                          reply_text: str | None = None, escalate_to: str | None = None) -> Outcome[str]:
        interaction = self.interaction(interaction_id)
        number, terms, strategy_version = self._versions(interaction.tenant_key)
        verdict = _decision(decision)
        _check_contact(terms, verdict, escalate_to)
        interaction.overturn(verdict, user_id, rationale, reply_text, escalate_to, number, strategy_version)
        return self.done(interaction_id, interaction)

    def correct_sentiment(self, interaction_id: str, sentiment: str) -> Outcome[str]:
        if sentiment not in Sentiment.__members__:
            raise InvalidInput("sentiment must be NEGATIVE, NEUTRAL or POSITIVE", "sentiment")
        interaction = self.interaction(interaction_id)
        interaction.correct_sentiment(sentiment)
        return self.done(interaction_id, interaction)

    # ------------------------------------------------------------------ workers
    def record_analysis(self, interaction_id: str, language: str | None, sentiment: str,
                        spam_score: float) -> Outcome[bool]:
        """The analysis of an interaction; rules that waited for it apply now. False if already recorded."""
        interaction = self.interaction(interaction_id)
        if interaction.sentiment is not None or interaction.spam_score is not None:
            return self.done(False)
        interaction.record_analysis(language, sentiment, spam_score)
        (text,) = self.personal.open(interaction.tenant_key, [(interaction.author_ref, interaction.text)])
        if text is not None:
            number, terms, strategy_version = self._versions(interaction.tenant_key)
            interaction.apply_rules(terms, text, number, strategy_version)
        return self.done(True, interaction)

    def interaction_at(self, interaction_id: str, version: int) -> Interaction:
        """An interaction as it was after its event number `version`."""
        return self.repository.get(interaction_id, version=version)  # type: ignore[attr-defined, no-any-return]

    def record_reply(self, interaction_id: str, decision_version: int, external_id: str | None, url: str | None,
                     failure: str | None) -> Outcome[bool]:
        interaction = self.interaction(interaction_id)
        recorded = interaction.record_reply(decision_version, external_id, url, failure)
        return self.done(recorded, interaction if recorded else None)

    def record_breach(self, interaction_id: str) -> Outcome[bool]:
        interaction = self.interaction(interaction_id)
        breached = interaction.record_breach(self.now())
        return self.done(breached, interaction if breached else None)

    def suggest_crisis(self, tenant_key: str, reason: str, figures: dict[str, Any], window_key: str) -> Outcome[bool]:
        tenant = self.tenant(tenant_key)
        suggested = tenant.suggest_crisis(reason, figures, window_key)
        return self.done(suggested, tenant if suggested else None)

    def erase_author(self, tenant_key: str, handle: str, interaction_ids: Iterable[str]) -> Outcome[int]:
        """Erase a commenter: mark each of their interactions, then destroy their key."""
        self.tenant(tenant_key)
        handle = (handle or "").strip()
        if not handle:
            raise InvalidInput("author is required", "author")
        ref = self.personal.author_ref(tenant_key, handle)
        erased = []
        for interaction_id in interaction_ids:
            interaction = self.interaction(interaction_id)
            if interaction.tenant_key != tenant_key or interaction.author_ref != ref:
                raise NotFound("no interaction of this author in this tenant", "author")
            if interaction.erase():
                erased.append(interaction)
        outcome: Outcome[int] = self.done(len(erased), *erased)
        self.personal.erase(tenant_key, ref)
        return outcome


def _decision(value: str) -> Decision:
    if value not in Decision.__members__:
        raise InvalidInput("not a decision", "decision")
    return Decision(value)


def _check_contact(terms: PolicyTerms, decision: Decision, escalate_to: str | None) -> None:
    """An escalation goes to one of the policy's contacts, when the policy names any."""
    if decision != Decision.ESCALATE or not terms.contacts or escalate_to is None:
        return
    known = {c.email.lower() for c in terms.contacts} | {c.name.lower() for c in terms.contacts}
    if escalate_to.strip().lower() not in known:
        raise InvalidInput("escalateTo must be one of the policy's escalation contacts", "escalateTo")
