"""The optimised allocation (lots dropped from the candidate lists once used up, expired or too old) returns exactly
what the plain greedy specification returns."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from green.allocation import allocate, allocate_reference
from tests.green.test_allocation import consumption_strategy, lots_strategy


@settings(max_examples=300)
@given(lots=lots_strategy, consumption=consumption_strategy, vintage=st.integers(0, 12))
def test_property_optimised_allocation_equals_the_specification(lots, consumption, vintage):
    unique = list({lot.id: lot for lot in lots}.values())
    items = list({c.id: c for c in consumption}.values())
    assert allocate(unique, items, vintage_months=vintage) == allocate_reference(unique, items, vintage_months=vintage)
