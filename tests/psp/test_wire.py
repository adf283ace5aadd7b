"""The fake PSP's Stripe wire rules, without sockets: what the official library encodes decodes
back to the same parameters; an amount is a positive integer or a Stripe error naming the
parameter, never another exception; the idempotency cache replays, refuses and stays bounded."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl, urlencode

import pytest
from hypothesis import given
from hypothesis import strategies as st
from stripe._encode import _api_encode

from psp import wire
from psp.idempotency import IdempotencyCache
from psp.wire import StripeError

NAMES = st.text("abcdefghijklmnopqrstuvwxyz_", min_size=1, max_size=8)
VALUES = st.text(st.characters(exclude_characters="\x00", codec="utf-8"), min_size=1, max_size=20)
LEAF_DICTS = st.dictionaries(NAMES, VALUES, min_size=1, max_size=3)
NESTED = st.recursive(
    LEAF_DICTS,
    lambda inner: st.dictionaries(
        NAMES,
        VALUES | inner | st.lists(VALUES, min_size=1, max_size=3) | st.lists(inner, min_size=1),
        min_size=1,
        max_size=3,
    ),
    max_leaves=12,
)


def _depth(node: Any) -> int:
    if isinstance(node, dict):
        return 1 + max(_depth(v) for v in node.values())
    if isinstance(node, list):
        return 1 + max(_depth(v) for v in node)
    return 0


@given(NESTED)
def test_what_the_stripe_library_encodes_decodes_to_the_same_parameters(
    params: dict[str, Any],
) -> None:
    body = urlencode(list(_api_encode(params)))
    pairs = parse_qsl(body, keep_blank_values=True)
    if _depth(params) > wire.PARAM_DEPTH_MAX:
        with pytest.raises(StripeError):
            wire.decode_params(pairs)
    else:
        assert wire.decode_params(pairs) == params


@given(st.text(max_size=16))
def test_an_amount_is_a_positive_integer_or_a_stripe_error_naming_it(raw: str) -> None:
    try:
        value = wire.integer(raw, "amount")
    except StripeError as exc:
        assert exc.status == 400 and exc.param == "amount" and exc.code is not None
        assert not (raw.isascii() and raw.isdigit() and 0 < int(raw) <= wire.AMOUNT_MINOR_MAX)
    else:
        assert value is not None and 0 < value <= wire.AMOUNT_MINOR_MAX
        assert str(value) == raw.lstrip("0")


@pytest.mark.parametrize("raw", ["usd", "USD", "jpy", "Bhd"])
def test_a_currency_is_an_iso_4217_code_in_any_case(raw: str) -> None:
    assert wire.currency(raw, "currency") == raw.upper()


@pytest.mark.parametrize("raw", ["xyz", "eu", "euro", "12€", ""])
def test_an_unknown_currency_is_refused(raw: str) -> None:
    with pytest.raises(StripeError) as refused:
        wire.currency(raw, "currency")
    assert (refused.value.status, refused.value.param) == (400, "currency")


def test_the_idempotency_cache_replays_refuses_expires_and_stays_bounded() -> None:
    now = [0.0]
    cache = IdempotencyCache(lambda: now[0], ttl_s=60.0, keys_max=2)
    assert cache.begin("sk", "k1", "POST /a x=1") is None
    with pytest.raises(StripeError) as running:
        cache.begin("sk", "k1", "POST /a x=1")
    assert running.value.status == 409
    cache.finish("sk", "k1", 200, b"{}")
    saved = cache.begin("sk", "k1", "POST /a x=1")
    assert saved is not None and (saved.status, saved.body) == (200, b"{}")
    with pytest.raises(StripeError) as reused:
        cache.begin("sk", "k1", "POST /a x=2")
    assert (reused.value.status, reused.value.type) == (400, "idempotency_error")
    assert cache.begin("other", "k1", "POST /a x=2") is None  # another API key's k1
    cache.abandon("other", "k1")
    assert cache.begin("other", "k1", "POST /a x=2") is None  # nothing was saved
    cache.finish("other", "k1", 400, b"e")
    for key in ("k2", "k3"):
        assert cache.begin("sk", key, "POST /a") is None
        cache.finish("sk", key, 200, b"{}")
    assert cache.statistics() == {"saved": 2, "running": 0}
    now[0] = 61.0
    assert cache.begin("sk", "k3", "POST /b") is None  # expired: a new request
    with pytest.raises(StripeError):
        cache.begin("sk", "x" * 256, "POST /a")
