"""The bucket sizes of metric series (a module of its own: the Tenant type imports it directly)."""

from __future__ import annotations

from enum import Enum

import strawberry


@strawberry.enum
class Granularity(Enum):
    DAY = "day"
    WEEK = "week"
    MONTH = "month"
