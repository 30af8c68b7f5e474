"""Deny by default: every field of the schema declares who may resolve it."""

from __future__ import annotations

from strawberry.types.base import StrawberryObjectDefinition

from api.access import INHERITED, PERMISSION, Anyone, Authenticated
from api.context import ApiConfig
from api.schema import build_schema
from domain.roles import Permission

ROOTS = {"Query", "Mutation", "Subscription"}
# A field open to either of two permissions declares them as "A|B".
ALLOWED = {p.name for p in Permission} | {"AUTHENTICATED", "ANONYMOUS", INHERITED}


def _object_types() -> list[StrawberryObjectDefinition]:
    schema = build_schema(ApiConfig(development=True))
    out = []
    for graphql_type in schema._schema.type_map.values():
        definition = getattr(graphql_type, "extensions", {}).get("strawberry-definition")
        if isinstance(definition, StrawberryObjectDefinition) and not definition.is_input:
            out.append(definition)
    return out


def test_every_field_of_every_type_declares_its_permission() -> None:
    missing = [
        f"{d.name}.{f.python_name}"
        for d in _object_types()
        for f in d.fields
        if not set(str((f.metadata or {}).get(PERMISSION)).split("|")) <= ALLOWED
    ]
    assert missing == []


def test_root_fields_check_authentication_at_run_time() -> None:
    roots = [d for d in _object_types() if d.name in ROOTS]
    assert {d.name for d in roots} == ROOTS
    for definition in roots:
        for f in definition.fields:
            classes = set(f.permission_classes)
            assert classes & {Authenticated, Anyone}, f"{definition.name}.{f.python_name}"
            assert f.metadata[PERMISSION] != INHERITED, f"{definition.name}.{f.python_name}"


def test_only_login_is_open_to_anonymous_callers() -> None:
    anonymous = [
        f"{d.name}.{f.python_name}" for d in _object_types() for f in d.fields if Anyone in set(f.permission_classes)
    ]
    assert anonymous == ["Mutation.login"]


def test_tenant_fields_that_need_a_role_check_it_on_that_tenant() -> None:
    tenant = next(d for d in _object_types() if d.name == "Tenant")
    for f in tenant.fields:
        permission = f.metadata[PERMISSION]
        if permission in {p.name for p in Permission}:
            names = {c.__name__ for c in f.permission_classes}
            assert any(n.startswith("OnTenant") for n in names), f"Tenant.{f.python_name}"
