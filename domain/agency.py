"""The agency: the operator that owns tenants and employs staff."""

from __future__ import annotations

from eventsourcing.domain import event

from domain.base import ParvisAggregate, aggregate_id


class Agency(ParvisAggregate):
    """An agency, its own scope (its key is the scope of its staff and agency-wide memberships)."""

    @staticmethod
    def create_id(agency_key: str) -> str:
        return aggregate_id(agency_key, "agency", agency_key)

    class Registered(ParvisAggregate.Created):
        agency_key: str
        name: str
        primary_color: str

    @event(Registered)
    def __init__(self, agency_key: str, name: str, primary_color: str = "#0b6e4f") -> None:
        self.agency_key = agency_key
        self.name = name
        self.primary_color = primary_color

    @event("Renamed")
    def rename(self, name: str) -> None:
        self.name = name
