"""Roles and the permission matrix of the contract header."""

from __future__ import annotations

from enum import Enum


class Role(str, Enum):
    AGENCY_ADMIN = "AGENCY_ADMIN"
    COMMUNITY_MANAGER = "COMMUNITY_MANAGER"
    CLIENT_ADMIN = "CLIENT_ADMIN"
    CLIENT_REVIEWER = "CLIENT_REVIEWER"
    CLIENT_VIEWER = "CLIENT_VIEWER"
    AUDITOR = "AUDITOR"

    @property
    def is_agency_staff(self) -> bool:
        return self in (Role.AGENCY_ADMIN, Role.COMMUNITY_MANAGER)

    @property
    def is_client(self) -> bool:
        return self in (Role.CLIENT_ADMIN, Role.CLIENT_REVIEWER, Role.CLIENT_VIEWER)


class Permission(str, Enum):
    SEE = "see tenant data"
    MANAGE_TENANTS = "manage tenants, staff"
    MANAGE_CLIENT_USERS = "manage own client users"
    REVISE_STRATEGY = "revise strategy, policies"
    DRAFT = "draft/submit/schedule"
    INTERNAL_APPROVAL = "internal approval"
    CLIENT_APPROVAL = "client approval"
    MODERATE = "moderate, ingest, metrics"
    CRISIS = "crisis mode on/off"
    AUDIT = "history, asOf, verify"


_A, _CM, _CA, _CR, _CV, _AU = (
    Role.AGENCY_ADMIN,
    Role.COMMUNITY_MANAGER,
    Role.CLIENT_ADMIN,
    Role.CLIENT_REVIEWER,
    Role.CLIENT_VIEWER,
    Role.AUDITOR,
)

MATRIX: dict[Permission, frozenset[Role]] = {
    Permission.SEE: frozenset({_A, _CM, _CA, _CR, _CV, _AU}),
    Permission.MANAGE_TENANTS: frozenset({_A}),
    Permission.MANAGE_CLIENT_USERS: frozenset({_A, _CA}),
    Permission.REVISE_STRATEGY: frozenset({_A, _CM}),
    Permission.DRAFT: frozenset({_A, _CM}),
    Permission.INTERNAL_APPROVAL: frozenset({_A, _CM}),
    Permission.CLIENT_APPROVAL: frozenset({_CA, _CR}),
    Permission.MODERATE: frozenset({_A, _CM}),
    Permission.CRISIS: frozenset({_A, _CM, _CA}),
    Permission.AUDIT: frozenset({_A, _CM, _CA, _AU}),
}


def allows(role: Role, permission: Permission) -> bool:
    """Whether a role holds a permission (deny by default)."""
    return role in MATRIX.get(permission, frozenset())
