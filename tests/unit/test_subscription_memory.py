"""Each subscription event is executed with a memo of its own (graphql-core 3.3 shares the subscription's)."""

from __future__ import annotations

from graphql import build_schema, parse

from api.schema import PerEventExecution

SDL = "type Query { a: String } type Thing { x: String } type Subscription { thing: Thing }"


def test_each_subscription_event_collects_its_subfields_in_a_memo_of_its_own() -> None:
    # Given the executor of a subscription, whose memo holds what an earlier event collected
    executor = PerEventExecution.build(build_schema(SDL), parse("subscription { thing { x } }"))
    executor._relevant_sub_fields[("Thing", 1)] = (["a list"], "its subfields")

    # When an event's executor is made
    event = executor.build_per_event_executor({"thing": {"x": "1"}})

    # Then it starts from an empty memo, so what it collects dies with it; the subscription's is untouched
    assert event._relevant_sub_fields == {}
    assert event._relevant_sub_fields is not executor._relevant_sub_fields
    assert len(executor._relevant_sub_fields) == 1
