"""The moderation policy of a tenant, versioned: rules applied to incoming interactions, response targets,
business hours and escalation contacts."""

from __future__ import annotations

import math
import re
import uuid
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from enum import Enum
from typing import Any
from zoneinfo import ZoneInfo

from eventsourcing.domain import event

from domain.base import ParvisAggregate, aggregate_id
from domain.errors import InvalidInput


class InteractionKind(str, Enum):
    COMMENT = "COMMENT"
    REPLY = "REPLY"
    DIRECT_MESSAGE = "DIRECT_MESSAGE"
    MENTION = "MENTION"
    REVIEW = "REVIEW"
    OFFER = "OFFER"


class Decision(str, Enum):
    APPROVE = "APPROVE"
    HIDE = "HIDE"
    DELETE = "DELETE"
    REPLY = "REPLY"
    ESCALATE = "ESCALATE"
    MARK_SPAM = "MARK_SPAM"
    DISMISS = "DISMISS"


class Sentiment(str, Enum):
    NEGATIVE = "NEGATIVE"
    NEUTRAL = "NEUTRAL"
    POSITIVE = "POSITIVE"


_SENTIMENT_RANK = {Sentiment.NEGATIVE.value: 0, Sentiment.NEUTRAL.value: 1, Sentiment.POSITIVE.value: 2}
# A rule may act on its own only with these; REPLY and ESCALATE need a person's words or a contact.
RULE_ACTIONS = {Decision.APPROVE, Decision.HIDE, Decision.DELETE, Decision.MARK_SPAM, Decision.DISMISS}
_TIME = re.compile(r"^([01]\d|2[0-3]):[0-5]\d$")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


@dataclass(frozen=True)
class Facts:
    """What a rule looks at: known at ingestion, except sentiment and spam which the analysis adds."""

    text: str
    channel_id: str
    kind: str
    sentiment: str | None = None
    spam_score: float | None = None


@dataclass(frozen=True)
class Rule:
    """Conditions (all that are set must hold) and the action taken when they do."""

    name: str
    action: str
    any_keywords: tuple[str, ...] = ()
    channels: tuple[str, ...] = ()
    kinds: tuple[str, ...] = ()
    max_sentiment: str | None = None
    min_spam_score: float | None = None
    id: str = ""

    def checked(self, tenant_key: str, index: int) -> Rule:
        where = f"rules.{index}"
        name = (self.name or "").strip()
        if not name or len(name) > 120:
            raise InvalidInput("a rule needs a name of at most 120 characters", f"{where}.name")
        if self.action not in {a.value for a in RULE_ACTIONS}:
            raise InvalidInput("a rule may APPROVE, HIDE, DELETE, MARK_SPAM or DISMISS", f"{where}.action")
        keywords = tuple(k.strip().lower() for k in self.any_keywords)
        if len(keywords) > 200 or any(not k or len(k) > 100 for k in keywords):
            raise InvalidInput("anyKeywords: at most 200, each 1 to 100 characters", f"{where}.anyKeywords")
        for i, kind in enumerate(self.kinds):
            if kind not in InteractionKind.__members__:
                raise InvalidInput("not an interaction kind", f"{where}.kinds.{i}")
        if self.max_sentiment is not None and self.max_sentiment not in _SENTIMENT_RANK:
            raise InvalidInput("maxSentiment must be NEGATIVE, NEUTRAL or POSITIVE", f"{where}.maxSentiment")
        if self.min_spam_score is not None and not (math.isfinite(self.min_spam_score)
                                                    and 0 <= self.min_spam_score <= 1):
            raise InvalidInput("minSpamScore must be between 0 and 1", f"{where}.minSpamScore")
        if not (keywords or self.channels or self.kinds or self.max_sentiment or self.min_spam_score is not None):
            raise InvalidInput("a rule needs at least one condition", f"{where}")
        stable = uuid.uuid5(uuid.NAMESPACE_URL, f"{tenant_key}/rule/{name.lower()}").hex
        return Rule(name, self.action, keywords, tuple(self.channels), tuple(self.kinds), self.max_sentiment,
                    self.min_spam_score, stable)

    @property
    def needs_analysis(self) -> bool:
        return self.max_sentiment is not None or self.min_spam_score is not None

    def matches(self, facts: Facts) -> bool | None:
        """Whether the rule applies; None while it waits for the analysis it needs."""
        if self.channels and facts.channel_id not in self.channels:
            return False
        if self.kinds and facts.kind not in self.kinds:
            return False
        if self.any_keywords:
            text = facts.text.lower()
            if not any(_contains_word(text, k) for k in self.any_keywords):
                return False
        if self.max_sentiment is not None:
            if facts.sentiment is None:
                return None
            if _SENTIMENT_RANK[facts.sentiment] > _SENTIMENT_RANK[self.max_sentiment]:
                return False
        if self.min_spam_score is not None:
            if facts.spam_score is None:
                return None
            if facts.spam_score < self.min_spam_score:
                return False
        return True

    @staticmethod
    def from_dict(data: dict[str, Any]) -> Rule:
        return Rule(data["name"], data["action"], tuple(data["any_keywords"]), tuple(data["channels"]),
                    tuple(data["kinds"]), data["max_sentiment"], data["min_spam_score"], data["id"])


def _contains_word(text: str, keyword: str) -> bool:
    """A keyword matches whole words (so 'arnaque' does not match inside another word)."""
    return re.search(rf"(?<!\w){re.escape(keyword)}(?!\w)", text) is not None


@dataclass(frozen=True)
class BusinessHours:
    """Working days (0 = Monday) and hours, in the tenant's time zone; targets count only working time."""

    days: tuple[int, ...] = (0, 1, 2, 3, 4)
    start: str = "09:00"
    end: str = "18:00"

    def check(self) -> None:
        if not self.days or any(d not in range(7) for d in self.days):
            raise InvalidInput("days must be numbers from 0 (Monday) to 6", "businessHours.days")
        if not (_TIME.match(self.start) and _TIME.match(self.end)) or self.start >= self.end:
            raise InvalidInput("start and end must be HH:MM with start before end", "businessHours")

    def add_working_time(self, start: datetime, minutes: float, tz: str) -> datetime:
        """The instant `minutes` of working time after `start`."""
        zone = ZoneInfo(tz)
        local = start.astimezone(zone)
        left = timedelta(minutes=minutes)
        for _ in range(3 * 366):  # a year of days at the most, whatever the schedule
            day_start = local.replace(hour=int(self.start[:2]), minute=int(self.start[3:]), second=0, microsecond=0)
            day_end = local.replace(hour=int(self.end[:2]), minute=int(self.end[3:]), second=0, microsecond=0)
            if local.weekday() in self.days and local < day_end:
                begin = max(local, day_start)
                if begin + left <= day_end:
                    return (begin + left).astimezone(start.tzinfo)
                left -= day_end - begin
            local = (local + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
        raise InvalidInput("business hours leave no working time", "businessHours")


@dataclass(frozen=True)
class Contact:
    name: str
    email: str


@dataclass(frozen=True)
class PolicyTerms:
    """Everything a policy version says."""

    rules: tuple[Rule, ...] = ()
    response_target_seconds: int = 4 * 3600
    crisis_response_target_seconds: int = 30 * 60
    business_hours: BusinessHours | None = None
    contacts: tuple[Contact, ...] = field(default_factory=tuple)

    def check(self, tenant_key: str) -> PolicyTerms:
        if len(self.rules) > 100:
            raise InvalidInput("at most 100 rules", "rules")
        rules = tuple(r.checked(tenant_key, i) for i, r in enumerate(self.rules))
        if len({r.id for r in rules}) != len(rules):
            raise InvalidInput("two rules have the same name", "rules")
        for name, value in (("responseTargetMinutes", self.response_target_seconds),
                            ("crisisResponseTargetMinutes", self.crisis_response_target_seconds)):
            if not 1 <= value <= 30 * 24 * 3600:
                raise InvalidInput("a response target is between 1 second and 30 days", name)
        if self.business_hours is not None:
            self.business_hours.check()
        for i, c in enumerate(self.contacts):
            if not c.name.strip() or not _EMAIL.match(c.email):
                raise InvalidInput("a contact needs a name and an e-mail address", f"escalationContacts.{i}")
        return PolicyTerms(rules, self.response_target_seconds, self.crisis_response_target_seconds,
                           self.business_hours, tuple(self.contacts))

    def as_dict(self) -> dict[str, Any]:
        return _lists(asdict(self))  # type: ignore[no-any-return]

    @staticmethod
    def from_dict(data: dict[str, Any]) -> PolicyTerms:
        hours = data.get("business_hours")
        return PolicyTerms(
            tuple(Rule.from_dict(r) for r in data["rules"]),
            data["response_target_seconds"],
            data["crisis_response_target_seconds"],
            BusinessHours(tuple(hours["days"]), hours["start"], hours["end"]) if hours else None,
            tuple(Contact(**c) for c in data.get("contacts", [])),
        )

    def due_by(self, received_at: datetime, crisis: bool, tz: str) -> datetime:
        """When an interaction received then must have been answered."""
        seconds = self.crisis_response_target_seconds if crisis else self.response_target_seconds
        if self.business_hours is None or crisis:  # a crisis is answered around the clock
            return received_at + timedelta(seconds=seconds)
        return self.business_hours.add_working_time(received_at, seconds / 60, tz)

    def first_match(self, facts: Facts) -> tuple[Rule | None, bool]:
        """The first rule that applies, and whether a rule that comes before it still waits for the analysis."""
        waiting = False
        for rule in self.rules:
            verdict = rule.matches(facts)
            if verdict is None:
                waiting = True
            elif verdict:
                return rule, waiting
        return None, waiting


def _lists(value: Any) -> Any:
    """Tuples as lists, all the way down (what JSON gives back)."""
    if isinstance(value, dict):
        return {k: _lists(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_lists(v) for v in value]
    return value


DEFAULT_TERMS = PolicyTerms()


class ModerationPolicy(ParvisAggregate):
    """One per tenant; each `set` is a new version (version 0 is the default, never stored)."""

    @staticmethod
    def create_id(tenant_key: str) -> str:
        return aggregate_id(tenant_key, "modpolicy", tenant_key)

    class Started(ParvisAggregate.Created):
        tenant_key: str

    @event(Started)
    def __init__(self, tenant_key: str) -> None:
        self.tenant_key = tenant_key
        self.number = 0
        self.terms = DEFAULT_TERMS

    def set(self, terms: PolicyTerms) -> int:
        checked = terms.check(self.tenant_key)
        self._set(number=self.number + 1, terms=checked.as_dict())
        return self.number

    @event("Set")
    def _set(self, number: int, terms: dict[str, Any]) -> None:
        self.number = number
        self.terms = PolicyTerms.from_dict(terms)
