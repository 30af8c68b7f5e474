"""The tenant: one client organisation of an agency, with its status and approval policy."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Any

from eventsourcing.domain import event

from domain.base import ParvisAggregate, aggregate_id
from domain.errors import InvalidInput, InvalidTransition


class TenantKind(str, Enum):
    NGO = "NGO"
    BRAND = "BRAND"
    PUBLIC_BODY = "PUBLIC_BODY"
    OTHER = "OTHER"


class TenantStatus(str, Enum):
    ACTIVE = "ACTIVE"
    PAUSED = "PAUSED"
    OFFBOARDED = "OFFBOARDED"


@dataclass(frozen=True)
class ApprovalPolicy:
    """Which approval steps a post goes through before it may be scheduled."""

    internal_approvals: int = 1
    client_approval: bool = False
    expires_after_hours: int | None = None

    def check(self) -> None:
        if not 0 <= self.internal_approvals <= 3:
            raise InvalidInput("internalApprovals must be between 0 and 3", "internalApprovals")
        if self.expires_after_hours is not None and not 1 <= self.expires_after_hours <= 24 * 90:
            raise InvalidInput("expiresAfterHours must be between 1 and 2160", "expiresAfterHours")

    def as_dict(self) -> dict[str, Any]:
        return {
            "internal_approvals": self.internal_approvals,
            "client_approval": self.client_approval,
            "expires_after_hours": self.expires_after_hours,
        }


# Allowed status changes; offboarding is final.
_STATUS_MOVES = {
    TenantStatus.ACTIVE: {TenantStatus.PAUSED, TenantStatus.OFFBOARDED},
    TenantStatus.PAUSED: {TenantStatus.ACTIVE, TenantStatus.OFFBOARDED},
    TenantStatus.OFFBOARDED: set(),
}


class Tenant(ParvisAggregate):
    """A client account."""

    @staticmethod
    def create_id(tenant_key: str) -> str:
        return aggregate_id(tenant_key, "tenant", tenant_key)

    class Created(ParvisAggregate.Created):
        tenant_key: str
        agency_key: str
        name: str
        kind: str
        timezone: str
        locale: str

    @event(Created)
    def __init__(self, tenant_key: str, agency_key: str, name: str, kind: str, timezone: str, locale: str) -> None:
        self.tenant_key = tenant_key
        self.agency_key = agency_key
        self.name = name
        self.kind = kind
        self.timezone = timezone
        self.locale = locale
        self.status = TenantStatus.ACTIVE.value
        self.approval_policy = ApprovalPolicy()
        self.approval_policy_version = 0
        self.crisis: dict[str, Any] | None = None
        self.suggested_windows: tuple[str, ...] = ()

    def check_not_offboarded(self) -> None:
        if self.status == TenantStatus.OFFBOARDED.value:
            raise InvalidTransition("the tenant is offboarded", "tenantId")

    @event("Renamed")
    def rename(self, name: str) -> None:
        self.name = name

    @event("TimezoneChanged")
    def change_timezone(self, timezone: str) -> None:
        self.timezone = timezone

    def change_status(self, status: TenantStatus) -> None:
        current = TenantStatus(self.status)
        if status == current:
            return
        if status not in _STATUS_MOVES[current]:
            raise InvalidTransition(f"a {current.value} tenant cannot become {status.value}", "status")
        self._set_status(status=status.value)

    @event("StatusChanged")
    def _set_status(self, status: str) -> None:
        self.status = status

    def set_approval_policy(self, policy: ApprovalPolicy) -> None:
        policy.check()
        self.check_not_offboarded()
        self._set_approval_policy(policy=policy.as_dict(), version=self.approval_policy_version + 1)

    @event("ApprovalPolicySet")
    def _set_approval_policy(self, policy: dict[str, Any], version: int) -> None:
        self.approval_policy = ApprovalPolicy(**policy)
        self.approval_policy_version = version

    # ------------------------------------------------------------------ crisis mode
    def activate_crisis(self, reason: str) -> None:
        self.check_not_offboarded()
        if self.crisis is not None:
            raise InvalidTransition("the tenant is already in crisis mode", "tenantId")
        reason = (reason or "").strip()
        if not reason or len(reason) > 2000:
            raise InvalidInput("a crisis needs a reason of at most 2000 characters", "reason")
        self._crisis_activated(reason=reason)

    @event("CrisisActivated")
    def _crisis_activated(self, reason: str) -> None:
        self.crisis = {"reason": reason}

    def suggest_crisis(self, reason: str, figures: dict[str, Any], window_key: str) -> bool:
        """A spike in volume or negativity: suggested once per window, never while already in crisis."""
        if self.crisis is not None or window_key in self.suggested_windows:
            return False
        self._crisis_suggested(reason=reason, figures=figures, window_key=window_key)
        return True

    @event("CrisisSuggested")
    def _crisis_suggested(self, reason: str, figures: dict[str, Any], window_key: str) -> None:
        self.suggested_windows = (*self.suggested_windows[-50:], window_key)

    def deactivate_crisis(self) -> None:
        if self.crisis is None:
            raise InvalidTransition("the tenant is not in crisis mode", "tenantId")
        self._crisis_deactivated()

    @event("CrisisDeactivated")
    def _crisis_deactivated(self) -> None:
        self.crisis = None
