"""A pg_auto_failover pair (monitor, primary, synchronous standby) for the failover test, made
and unmade by scripts/ha/cluster.sh; payengine reaches it through the multi-host DSN
`postgresql://postgres@127.0.0.1:p1,127.0.0.1:p2/payengine?target_session_attrs=read-write`."""

from __future__ import annotations

import random
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from tests.reliability.stack import fetch

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "ha" / "cluster.sh"
#: Installing packages (first run) and creating three servers on a loaded machine.
UP_TIMEOUT_S = 900
COMMAND_TIMEOUT_S = 60


def _ports_free(base: int, count: int) -> bool:
    for port in range(base, base + count):
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                return False
    return True


def _base_port() -> int:
    rng = random.SystemRandom()
    for _ in range(50):
        base = rng.randrange(20_000, 40_000)
        if _ports_free(base, 3):
            return base
    raise AssertionError("no three free ports in a row")


class HaCluster:
    def __init__(self) -> None:
        self._parent = Path(tempfile.mkdtemp(prefix="payengine-ha-"))
        self._parent.chmod(0o755)  # the nodes run as the `postgres` user when we are root
        self.dir = self._parent / "cluster"
        try:
            out = self._run("up", str(_base_port()), timeout_s=UP_TIMEOUT_S)
        except BaseException:
            self.close()
            raise
        self.dsn = out.strip().splitlines()[-1]
        assert "target_session_attrs=read-write" in self.dsn, out

    def _run(self, action: str, *args: str, timeout_s: float = COMMAND_TIMEOUT_S) -> str:
        done = subprocess.run(
            [str(SCRIPT), action, str(self.dir), *args],
            capture_output=True,
            text=True,
            timeout=timeout_s,
        )
        assert done.returncode == 0, f"cluster.sh {action}: {done.stdout}\n{done.stderr}"
        return done.stdout

    def fetch(self, sql: str, *args: Any) -> list[Any]:
        return fetch(self.dsn, sql, *args)

    def primary(self) -> str:
        return self._run("primary").strip()

    def kill_primary(self) -> str:
        return self._run("kill-primary").strip()

    def state(self) -> str:
        return self._run("state")

    def close(self) -> None:
        if self.dir.exists():
            subprocess.run([str(SCRIPT), "down", str(self.dir)], timeout=COMMAND_TIMEOUT_S)
        shutil.rmtree(self._parent, ignore_errors=True)
