"""`records.evolve`: the same record as `attrs.evolve`, validating only the changed fields."""

from __future__ import annotations

from typing import Any

import attrs
import pytest

from engine.errors import UnknownCurrency
from engine.records import Payment, PaymentOrder, evolve
from engine.states import OrderStatus, PaymentStatus


def _order() -> PaymentOrder:
    return PaymentOrder("ord-1", "pay-1", "seller-1", "USD", 1250, OrderStatus.NOT_STARTED, 1, 1)


def test_evolve_builds_the_same_record_as_attrs_evolve() -> None:
    order = _order()
    changes: dict[str, Any] = {"status": OrderStatus.EXECUTING, "updated_at_ms": 7, "version": 3}
    evolved = evolve(order, **changes)
    assert evolved == attrs.evolve(order, **changes)
    assert hash(evolved) == hash(attrs.evolve(order, **changes))
    assert type(evolved) is PaymentOrder and evolved is not order
    assert evolve(order) == order
    payment = Payment(
        "pay-1", "chk-1", "buyer-1", "JPY", 1500, PaymentStatus.CREATED, 1, 1, 9, version=2
    )
    assert evolve(payment, psp_session_id="s", version=3) == attrs.evolve(
        payment, psp_session_id="s", version=3
    )


@pytest.mark.parametrize(
    ("changes", "error"),
    [
        ({"version": -1}, ValueError),
        ({"attempts": True}, ValueError),
        ({"amount_minor": 0}, ValueError),
        ({"order_id": ""}, ValueError),
        ({"currency": "usd"}, UnknownCurrency),
        ({"no_such_field": 1}, TypeError),
    ],
)
def test_evolve_rejects_a_bad_new_value_as_attrs_evolve_does(
    changes: dict[str, Any], error: type[Exception]
) -> None:
    with pytest.raises(error):
        attrs.evolve(_order(), **changes)
    with pytest.raises(error):
        evolve(_order(), **changes)


def test_evolve_keeps_frozen_records_frozen() -> None:
    evolved = evolve(_order(), version=1)
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        evolved.version = 2  # type: ignore[misc]
