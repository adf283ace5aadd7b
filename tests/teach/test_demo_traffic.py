"""`payengine demo --traffic`: the simulator's buyers (simulator/traffic.py) in real time.

A real demo process with background traffic: within seconds its ledger holds captures in more
than one currency (the simulator's currency mix, not the Shop's euros), every currency's trial
balance sums to zero, and the process stops cleanly."""

from __future__ import annotations

import re
import time

import httpx

from tests import pgfixtures
from tests.web.test_serve_process import Process, _free_port

#: How long the traffic has to put money in two currencies (5 purchases a second).
TRAFFIC_WAIT_S = 60.0
SUM = re.compile(r'class="trial-sum (zero|nonzero)" data-currency="(\w+)" data-zero="(\w+)"')


def test_background_traffic_moves_money_in_several_currencies_and_the_books_balance() -> None:
    dsn, name = pgfixtures.create_database_sync("embedded")
    port = _free_port()
    process = Process(["demo", "--no-narration", "--port", str(port), "--traffic", "5/s"], dsn)
    try:
        process.wait_for(f"payengine demo on http://127.0.0.1:{port}")
        sums: list[tuple[str, str, str]] = []
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60) as client:
            deadline = time.monotonic() + TRAFFIC_WAIT_S
            while time.monotonic() < deadline:
                sums = SUM.findall(client.get("/money").text)
                if len({currency for _, currency, _ in sums}) >= 2:
                    break
                time.sleep(1.0)
        currencies = {currency for _, currency, _ in sums}
        assert len(currencies) >= 2, sums
        assert currencies <= {"EUR", "USD", "JPY", "BHD"}, currencies
        assert all(zero == "true" for _, _, zero in sums), sums
        assert process.stop() == 0, "\n".join(process.lines)
    finally:
        process.kill()
        pgfixtures.drop_database_sync("embedded", name)
