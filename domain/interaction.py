"""An interaction: an incoming comment, reply, message, mention, review or offer, and the decisions on it."""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import datetime
from enum import Enum
from typing import Any, ClassVar

from eventsourcing.domain import event

from domain.base import ParvisAggregate, aggregate_id
from domain.context import acting_as, current_actor
from domain.errors import InvalidInput, InvalidTransition
from domain.moderation import Decision, Facts, PolicyTerms

ERASED = "[erased]"


class ModerationStatus(str, Enum):
    NEW = "NEW"
    ASSIGNED = "ASSIGNED"
    ESCALATED = "ESCALATED"
    DECIDED = "DECIDED"


# Decisions that answer the interaction (an escalation hands it on: the clock keeps running).
ANSWERS = {d.value for d in Decision} - {Decision.ESCALATE.value}


class Interaction(ParvisAggregate):
    """Author and text are sealed with a key of their author, so that destroying the key erases them."""

    @staticmethod
    def create_id(tenant_key: str, channel_id: str, external_id: str) -> str:
        """One per channel and platform id, so that a second delivery of the same item collides."""
        key = uuid.uuid5(uuid.NAMESPACE_URL, f"{channel_id}#{external_id}").hex
        return aggregate_id(tenant_key, "interaction", key)

    class Received(ParvisAggregate.Created):
        tenant_key: str
        channel_id: str
        kind: str
        external_id: str
        author_ref: str
        author: str  # sealed
        text: str  # sealed
        received_at: datetime
        in_reply_to: str | None
        due_by: datetime
        policy_version: int
        SECRET_FIELDS: ClassVar[frozenset[str]] = frozenset({"author", "text"})

    @event(Received)
    def __init__(
        self, tenant_key: str, channel_id: str, kind: str, external_id: str, author_ref: str, author: str,
        text: str, received_at: datetime, in_reply_to: str | None, due_by: datetime, policy_version: int,
    ) -> None:
        self.tenant_key = tenant_key
        self.channel_id = channel_id
        self.kind = kind
        self.external_id = external_id
        self.author_ref = author_ref
        self.author = author
        self.text = text
        self.received_at = received_at
        self.in_reply_to = in_reply_to
        self.due_by = due_by
        self.status = ModerationStatus.NEW.value
        self.decisions: list[dict[str, Any]] = []
        self.assignee: str | None = None
        self.sentiment: str | None = None
        self.spam_score: float | None = None
        self.matched_rule_ids: list[str] = []
        self.breached = False
        self.erased = False
        self.replies: dict[int, str | None] = {}

    # ------------------------------------------------------------------ reading
    def facts(self, text: str) -> Facts:
        return Facts(text, self.channel_id, self.kind, self.sentiment, self.spam_score)

    @property
    def answered(self) -> bool:
        return any(d["decision"] in ANSWERS and not d["overturned"] for d in self.decisions)

    # ------------------------------------------------------------------ rules and analysis
    def apply_rules(self, terms: PolicyTerms, text: str, policy_version: int, strategy_version: int | None) -> None:
        """Record every rule that matches; the first one decides, unless a decision was already made."""
        facts = self.facts(text)
        matched = [r for r in terms.rules if r.matches(facts) and r.id not in self.matched_rule_ids]
        if matched:
            self._rules_matched(rule_ids=[r.id for r in matched])
        first, waiting = terms.first_match(facts)
        if first is not None and not waiting and not self.decisions:
            # The rule is the author of its decision; the correlation with the call that brought the item stays.
            rule = replace(current_actor(), id=f"rule:{first.id}@{policy_version}", role=None, on_behalf_of=None,
                           reason=None, causation_id=current_actor().correlation_id)
            with acting_as(rule):
                self._decided(decision=first.action, by=None, rule_id=first.id, rationale=f"rule: {first.name}",
                              reply_text=None, escalate_to=None, policy_version=policy_version,
                              strategy_version=strategy_version, status=ModerationStatus.DECIDED.value)

    @event("RulesMatched")
    def _rules_matched(self, rule_ids: list[str]) -> None:
        self.matched_rule_ids = [*self.matched_rule_ids, *rule_ids]

    def record_analysis(self, language: str | None, sentiment: str, spam_score: float) -> None:
        self._analysed(language=language, sentiment=sentiment, spam_score=round(spam_score, 4))

    @event("Analysed")
    def _analysed(self, language: str | None, sentiment: str, spam_score: float) -> None:
        self.language = language
        self.sentiment = sentiment
        self.spam_score = spam_score

    def correct_sentiment(self, sentiment: str) -> None:
        self._sentiment_corrected(sentiment=sentiment)

    @event("SentimentCorrected")
    def _sentiment_corrected(self, sentiment: str) -> None:
        self.sentiment = sentiment

    # ------------------------------------------------------------------ people
    def assign(self, assignee_id: str) -> None:
        if self.status == ModerationStatus.DECIDED.value:
            raise InvalidTransition("a decided interaction is not assigned; overturn the decision instead",
                                    "interactionId")
        self._assigned(assignee_id=assignee_id)

    @event("Assigned")
    def _assigned(self, assignee_id: str) -> None:
        self.assignee = assignee_id
        if self.status == ModerationStatus.NEW.value:
            self.status = ModerationStatus.ASSIGNED.value

    def decide(self, decision: Decision, by: str, rationale: str | None, reply_text: str | None,
               escalate_to: str | None, policy_version: int, strategy_version: int | None) -> None:
        if self.status == ModerationStatus.DECIDED.value:
            raise InvalidTransition("this interaction is decided; overturn the decision to change it",
                                    "interactionId")
        self._check_decision(decision, reply_text, escalate_to)
        status = ModerationStatus.ESCALATED if decision == Decision.ESCALATE else ModerationStatus.DECIDED
        self._decided(decision=decision.value, by=by, rule_id=None, rationale=rationale, reply_text=reply_text,
                      escalate_to=escalate_to, policy_version=policy_version, strategy_version=strategy_version,
                      status=status.value)

    @staticmethod
    def _check_decision(decision: Decision, reply_text: str | None, escalate_to: str | None) -> None:
        if decision == Decision.REPLY and not (reply_text or "").strip():
            raise InvalidInput("a REPLY needs the text of the reply", "replyText")
        if reply_text is not None and len(reply_text) > 5000:
            raise InvalidInput("replyText must be at most 5000 characters", "replyText")
        if decision == Decision.ESCALATE and not (escalate_to or "").strip():
            raise InvalidInput("an ESCALATE names the contact it goes to", "escalateTo")

    @event("Decided")
    def _decided(self, decision: str, by: str | None, rule_id: str | None, rationale: str | None,
                 reply_text: str | None, escalate_to: str | None, policy_version: int,
                 strategy_version: int | None, status: str) -> None:
        self.decisions = [*self.decisions, {
            "decision": decision, "by": by, "rule_id": rule_id, "rationale": rationale, "reply_text": reply_text,
            "escalate_to": escalate_to, "policy_version": policy_version, "strategy_version": strategy_version,
            "overturned": False,
        }]
        self.status = status

    def overturn(self, decision: Decision, by: str, rationale: str, reply_text: str | None,
                 escalate_to: str | None, policy_version: int, strategy_version: int | None) -> None:
        if not self.decisions:
            raise InvalidTransition("there is no decision to overturn yet", "interactionId")
        if not (rationale or "").strip():
            raise InvalidInput("an overturn needs a rationale", "rationale")
        self._check_decision(decision, reply_text, escalate_to)
        status = ModerationStatus.ESCALATED if decision == Decision.ESCALATE else ModerationStatus.DECIDED
        self._overturned(decision=decision.value, by=by, rationale=rationale, reply_text=reply_text,
                         escalate_to=escalate_to, policy_version=policy_version, strategy_version=strategy_version,
                         status=status.value)

    @event("Overturned")
    def _overturned(self, decision: str, by: str, rationale: str, reply_text: str | None,
                    escalate_to: str | None, policy_version: int, strategy_version: int | None,
                    status: str) -> None:
        previous = [{**d, "overturned": True} if i == len(self.decisions) - 1 else d
                    for i, d in enumerate(self.decisions)]
        self.decisions = [*previous, {
            "decision": decision, "by": by, "rule_id": None, "rationale": rationale, "reply_text": reply_text,
            "escalate_to": escalate_to, "policy_version": policy_version, "strategy_version": strategy_version,
            "overturned": False,
        }]
        self.status = status

    # ------------------------------------------------------------------ replies sent by the workers
    def record_reply(self, decision_version: int, external_id: str | None, url: str | None,
                     failure: str | None) -> bool:
        """The outcome of sending the reply decided at `decision_version` (recorded once)."""
        if decision_version in self.replies:
            return False
        self._reply_sent(decision_version=decision_version, external_id=external_id, url=url, failure=failure)
        return True

    @event("ReplySent")
    def _reply_sent(self, decision_version: int, external_id: str | None, url: str | None,
                    failure: str | None) -> None:
        self.replies = {**self.replies, decision_version: failure or external_id}

    # ------------------------------------------------------------------ targets and erasure
    def record_breach(self, now: datetime) -> bool:
        """The response target passed unanswered (once; nothing when it was answered in time)."""
        if self.breached or self.answered or now < self.due_by:
            return False
        self._breached(due_by=self.due_by)
        return True

    @event("TargetBreached")
    def _breached(self, due_by: datetime) -> None:
        self.breached = True

    def erase(self) -> bool:
        if self.erased:
            return False
        self._erased()
        return True

    @event("AuthorErased")
    def _erased(self) -> None:
        self.erased = True

