"""The forwarding decision (web/forward.py, issue 14): a request this process refused as not
the owner goes to the owner only when there is one, it is another process, and the request
has not been forwarded already (one hop)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from web.forward import Decision, decide

ME = "http://127.0.0.1:8001"
OTHER = "http://127.0.0.1:8002"


def test_forwards_to_another_owner() -> None:
    assert decide(True, None, OTHER, ME) is Decision.FORWARD


def test_one_hop_only() -> None:
    assert decide(True, "incarnation-a", OTHER, ME) is Decision.ALREADY_FORWARDED


def test_no_owner_or_itself_or_single_process() -> None:
    assert decide(True, None, None, ME) is Decision.NO_OWNER
    assert decide(True, None, ME, ME) is Decision.OWNER_IS_ME
    assert decide(False, None, OTHER, ME) is Decision.SINGLE_PROCESS


urls = st.sampled_from([ME, OTHER, "http://10.0.0.3:8000"])


@given(st.booleans(), st.none() | st.text(max_size=8), st.none() | urls, urls)
def test_forward_only_when_every_condition_holds(
    leased: bool, forwarded_by: str | None, owner_url: str | None, my_url: str
) -> None:
    decision = decide(leased, forwarded_by, owner_url, my_url)
    forwards = leased and not forwarded_by and owner_url is not None and owner_url != my_url
    assert (decision is Decision.FORWARD) == forwards
