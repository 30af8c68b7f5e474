"""A campaign: a name, a hashtag, dates, the objectives it serves, an optional paid budget."""

from __future__ import annotations

import math
import re
from datetime import datetime

from eventsourcing.domain import event

from domain.base import ParvisAggregate, aggregate_id
from domain.errors import InvalidInput

_HASHTAG = re.compile(r"^#?\w{1,100}$")


class Campaign(ParvisAggregate):
    @staticmethod
    def create_id(tenant_key: str) -> str:
        return aggregate_id(tenant_key, "campaign")

    class Created(ParvisAggregate.Created):
        tenant_key: str
        name: str
        hashtag: str | None
        starts_at: datetime | None
        ends_at: datetime | None
        objective_ids: list[str]
        budget: float | None

    @event(Created)
    def __init__(
        self, tenant_key: str, name: str, hashtag: str | None, starts_at: datetime | None,
        ends_at: datetime | None, objective_ids: list[str], budget: float | None,
    ) -> None:
        self.tenant_key = tenant_key
        self.name = name
        self.hashtag = hashtag
        self.starts_at = starts_at
        self.ends_at = ends_at
        self.objective_ids = objective_ids
        self.budget = budget

    @staticmethod
    def check(name: str, hashtag: str | None, starts_at: datetime | None, ends_at: datetime | None,
              budget: float | None) -> tuple[str, str | None]:
        """The checked name and normalised hashtag ('#word')."""
        name = (name or "").strip()
        if not name or len(name) > 200:
            raise InvalidInput("name must have 1 to 200 characters", "name")
        if hashtag is not None:
            if not _HASHTAG.match(hashtag.strip()):
                raise InvalidInput("hashtag must be one word, with or without '#'", "hashtag")
            hashtag = "#" + hashtag.strip().lstrip("#")
        if starts_at and ends_at and ends_at < starts_at:
            raise InvalidInput("endsAt must not be before startsAt", "endsAt")
        if budget is not None and not (math.isfinite(budget) and budget >= 0):
            raise InvalidInput("budget must be a positive amount", "budget")
        return name, hashtag
