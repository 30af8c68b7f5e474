"""The social-media strategy of a tenant, versioned: objectives with one KPI each, personas, editorial line."""

from __future__ import annotations

import math
import re
import uuid
from dataclasses import asdict, dataclass, field
from datetime import datetime
from enum import Enum
from typing import Any

from eventsourcing.domain import event

from domain.base import ParvisAggregate, aggregate_id
from domain.errors import InvalidInput

_METRIC = re.compile(r"^[a-z][a-z0-9_]{1,63}$")


class Intent(str, Enum):
    AWARENESS = "AWARENESS"
    APPRECIATION = "APPRECIATION"
    ACTION = "ACTION"
    ADVOCACY = "ADVOCACY"


@dataclass(frozen=True)
class Objective:
    """A SMART objective measured by exactly one KPI."""

    title: str
    intent: str
    metric: str
    target: float
    channel_id: str | None = None
    baseline: float | None = None
    deadline: datetime | None = None
    id: str = ""

    def checked(self, tenant_key: str, index: int) -> Objective:
        where = f"objectives.{index}"
        title = (self.title or "").strip()
        if not title or len(title) > 200:
            raise InvalidInput("an objective needs a title of at most 200 characters", f"{where}.title")
        if self.intent not in Intent.__members__:
            raise InvalidInput("intent must be AWARENESS, APPRECIATION, ACTION or ADVOCACY", f"{where}.intent")
        if not _METRIC.match(self.metric or ""):
            raise InvalidInput("metric must be a snake_case name such as followers", f"{where}.metric")
        if self.target is None:
            raise InvalidInput("an objective needs a target: its KPI is a metric and a target", f"{where}.target")
        for name in ("target", "baseline"):
            value = getattr(self, name)
            if value is not None and not math.isfinite(value):
                raise InvalidInput(f"{name} must be a finite number", f"{where}.{name}")
        if self.baseline is not None and self.baseline == self.target:
            raise InvalidInput("target must differ from baseline", f"{where}.target")
        # Stable identity across revisions: the same title and metric are the same objective.
        stable = uuid.uuid5(uuid.NAMESPACE_URL, f"{tenant_key}/objective/{title.lower()}/{self.metric}").hex
        return Objective(title, self.intent, self.metric, float(self.target), self.channel_id,
                         None if self.baseline is None else float(self.baseline), self.deadline, stable)


@dataclass(frozen=True)
class Persona:
    name: str
    description: str | None = None
    channel_ids: tuple[str, ...] = ()
    id: str = ""

    def checked(self, tenant_key: str, index: int) -> Persona:
        name = (self.name or "").strip()
        if not name or len(name) > 120:
            raise InvalidInput("a persona needs a name of at most 120 characters", f"personas.{index}.name")
        if self.description and len(self.description) > 4000:
            raise InvalidInput("description must be at most 4000 characters", f"personas.{index}.description")
        stable = uuid.uuid5(uuid.NAMESPACE_URL, f"{tenant_key}/persona/{name.lower()}").hex
        return Persona(name, self.description, tuple(self.channel_ids), stable)


@dataclass(frozen=True)
class EditorialLine:
    tone: str | None = None
    themes: tuple[str, ...] = ()
    hot_share: float | None = None
    posts_per_week: tuple[tuple[str, float], ...] = field(default_factory=tuple)

    def check(self) -> None:
        if self.hot_share is not None and not (math.isfinite(self.hot_share) and 0 <= self.hot_share <= 1):
            raise InvalidInput("hotShare must be between 0 and 1", "editorialLine.hotShare")
        if len(self.themes) > 50 or any(not t.strip() or len(t) > 100 for t in self.themes):
            raise InvalidInput("themes: at most 50, each 1 to 100 characters", "editorialLine.themes")
        for i, (_, per_week) in enumerate(self.posts_per_week):
            if not (math.isfinite(per_week) and 0 <= per_week <= 500):
                raise InvalidInput("postsPerWeek must be between 0 and 500",
                                   f"editorialLine.postsPerWeek.{i}.postsPerWeek")


def _plain(value: Any) -> Any:
    data = asdict(value)
    return {k: (v.isoformat() if isinstance(v, datetime) else list(v) if isinstance(v, tuple) else v)
            for k, v in data.items()}


class Strategy(ParvisAggregate):
    """One per tenant; each revision is a new version with its author (the actor) and a reason."""

    @staticmethod
    def create_id(tenant_key: str) -> str:
        return aggregate_id(tenant_key, "strategy", tenant_key)

    class Started(ParvisAggregate.Created):
        tenant_key: str

    @event(Started)
    def __init__(self, tenant_key: str) -> None:
        self.tenant_key = tenant_key
        self.current = 0
        self.objective_ids: tuple[str, ...] = ()
        self.persona_ids: tuple[str, ...] = ()

    class Revised(ParvisAggregate.Event):
        number: int
        reason: str
        positioning: str | None
        objectives: list[dict[str, Any]]
        personas: list[dict[str, Any]]
        editorial_line: dict[str, Any]

    def revise(
        self,
        reason: str,
        positioning: str | None,
        objectives: list[Objective],
        personas: list[Persona],
        editorial_line: EditorialLine,
    ) -> int:
        reason = (reason or "").strip()
        if not reason:
            raise InvalidInput("a revision needs a reason", "reason")
        if positioning is not None and len(positioning) > 4000:
            raise InvalidInput("positioning must be at most 4000 characters", "positioning")
        if len(objectives) > 50 or len(personas) > 50:
            raise InvalidInput("at most 50 objectives and 50 personas", "objectives")
        checked = [o.checked(self.tenant_key, i) for i, o in enumerate(objectives)]
        if len({o.id for o in checked}) != len(checked):
            raise InvalidInput("two objectives have the same title and metric", "objectives")
        people = [p.checked(self.tenant_key, i) for i, p in enumerate(personas)]
        if len({p.id for p in people}) != len(people):
            raise InvalidInput("two personas have the same name", "personas")
        editorial_line.check()
        self._revised(
            number=self.current + 1, reason=reason, positioning=positioning,
            objectives=[_plain(o) for o in checked], personas=[_plain(p) for p in people],
            editorial_line=_plain(editorial_line),
        )
        return self.current

    @event(Revised)
    def _revised(
        self, number: int, reason: str, positioning: str | None, objectives: list[dict[str, Any]],
        personas: list[dict[str, Any]], editorial_line: dict[str, Any],
    ) -> None:
        self.current = number
        self.objective_ids = tuple(o["id"] for o in objectives)
        self.persona_ids = tuple(p["id"] for p in personas)
