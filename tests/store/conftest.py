"""The `store` fixture: every conformance test runs against each store kind.

Kinds: `memory` always; `embedded` (a PostgreSQL started from the pip package, one fresh
database per test); `service` when PAYENGINE_TEST_SERVICE_URL points at a reachable server
(CI sets it for the machine's PostgreSQL service).
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import trio

from engine.store.memory import MemoryStore
from engine.store.port import Store
from tests import pgfixtures


def _kinds() -> list[str]:
    kinds = ["memory", "embedded"]
    if pgfixtures.service_url() is not None:
        kinds.append("service")
    return kinds


@pytest.fixture(params=_kinds())
async def store(request: pytest.FixtureRequest) -> AsyncIterator[Store]:
    if request.param == "memory":
        yield MemoryStore(checkpoint=trio.lowlevel.checkpoint)
        return
    from engine.store.postgres import open_postgres_store

    async with pgfixtures.fresh_database(request.param) as dsn, open_postgres_store(dsn) as pg:
        yield pg
