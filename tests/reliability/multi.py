"""Several engine processes on one database (issue 14): what the lease tests add to stack.py.

- `LeasedEngine`: `payengine serve --leases` (one of several processes), on its own port, with
  its own way to the PSP.
- `PspRecorder`: an HTTP proxy between one engine process and the fake PSP that records every
  call (which process, which entity, when it started and ended): the PSP's call log, from which
  the test asserts that no payment's family was driven by two processes at once.
- `LeaseWatch`: samples the lease table on a thread: every partition's epoch only grows, and a
  partition changes hands only at a new epoch.
"""

from __future__ import annotations

import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import attrs
import httpx

from tests.reliability.load import Load
from tests.reliability.stack import PSP_API_KEY, WEBHOOK_SECRET, Child, Engine, Psp, Sql, _env

#: How often the lease table is sampled.
SAMPLE_S = 0.1
#: Entity ids in a PSP call (idempotency key, path, query, form body).
ENTITY_RE = re.compile(r"(?:pay|ord|re)_[0-9A-HJKMNP-TV-Z]{26}")
#: The most calls a recorder keeps.
CALLS_MAX = 200_000


@attrs.frozen
class Call:
    process: str
    method: str
    path: str
    entities: tuple[str, ...]
    started: float
    ended: float


class PspRecorder:
    """A recording proxy in front of the fake PSP; `process` names who is calling now (set by
    the test at every (re)start, so each incarnation has its own name)."""

    def __init__(self, psp_url: str, calls: list[Call], lock: threading.Lock) -> None:
        self.process = "?"
        recorder = self
        client = httpx.Client(base_url=psp_url, timeout=60)

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _forward(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                process = recorder.process
                started = time.monotonic()
                headers = {
                    k: v
                    for k, v in self.headers.items()
                    if k.lower() not in ("host", "content-length", "connection")
                }
                try:
                    answer = client.request(self.command, self.path, content=body, headers=headers)
                except httpx.HTTPError:
                    self.send_error(502)
                    return
                ended = time.monotonic()
                text = f"{self.headers.get('Idempotency-Key', '')} {self.path} {body[:4000]!r}"
                with lock:
                    if len(calls) < CALLS_MAX:
                        calls.append(
                            Call(
                                process,
                                self.command,
                                self.path.split("?")[0],
                                tuple(sorted(set(ENTITY_RE.findall(text)))),
                                started,
                                ended,
                            )
                        )
                try:
                    self.send_response(answer.status_code)
                    for k, v in answer.headers.items():
                        if k.lower() in ("content-type", "idempotency-key", "request-id"):
                            self.send_header(k, v)
                    self.send_header("Content-Length", str(len(answer.content)))
                    self.end_headers()
                    self.wfile.write(answer.content)
                except OSError:
                    pass  # the caller was killed meanwhile: nobody to answer

            do_GET = do_POST = do_DELETE = _forward

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()


class LeasedEngine(Engine):
    """`payengine serve --leases` through its own recording proxy to the PSP."""

    def __init__(self, name: str, dsn: str, psp: Psp, port: int, recorder: PspRecorder) -> None:
        super().__init__(dsn, psp, port)
        self.name = name
        self.recorder = recorder
        self.generation = 0

    def start(self, *, print_keys: bool = False) -> None:
        self.generation += 1
        self.recorder.process = f"{self.name}#{self.generation}"
        argv = ["serve", "--leases", "--port", str(self.port), "--psp-url", self.recorder.url]
        argv += ["--psp-api-key", PSP_API_KEY, "--webhook-secret", WEBHOOK_SECRET]
        self.child = Child([*argv, *(["--print-keys"] if print_keys else [])], _env(self.dsn))
        if print_keys:
            for scope in ("storefront", "admin"):
                line = self.child.wait_for(f"{scope} key: ")
                self.keys[scope] = line.split(f"{scope} key: ", 1)[1].strip()


class LeaseWatch:
    """Samples the lease table; `problems` lists any epoch that went down or any change of
    hands without a new epoch."""

    def __init__(self, db: Sql) -> None:
        self._db = db
        self.samples = 0
        self.problems: list[str] = []
        self.last: dict[int, tuple[str | None, int]] = {}
        self.takeovers = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(SAMPLE_S):
            try:
                rows = self._db.fetch("SELECT partition, owner, epoch FROM partition_leases")
            except Exception:  # the database is the engines' concern here, not the watch's
                continue
            self.samples += 1
            for r in rows:
                p, owner, epoch = int(r["partition"]), r["owner"], int(r["epoch"])
                before = self.last.get(p)
                if before is not None:
                    old_owner, old_epoch = before
                    if epoch < old_epoch:
                        self.problems.append(f"partition {p}: epoch {old_epoch} -> {epoch}")
                    if owner is not None and owner != old_owner and epoch == old_epoch:
                        self.problems.append(f"partition {p}: {old_owner} -> {owner} at {epoch}")
                    self.takeovers += max(0, epoch - old_epoch)
                self.last[p] = (owner, epoch)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)


def overlaps(calls: list[Call], family_of: dict[str, str]) -> list[str]:
    """Calls to the PSP for one payment's family (the payment, its orders, their refunds) by
    two processes at the same time: each is a payment driven by two processes at once."""
    by_family: dict[str, list[Call]] = {}
    for call in calls:
        for entity in call.entities:
            family = family_of.get(entity, entity)
            by_family.setdefault(family, []).append(call)
    found = []
    for family, mine in by_family.items():
        mine.sort(key=lambda c: c.started)
        for i, b in enumerate(mine):
            for a in mine[:i]:
                if a.process != b.process and b.started < a.ended:
                    found.append(f"{family}: {a.process} {a.path} and {b.process} {b.path}")
    return found


class NamedLoad(Load):
    """`Load` whose clients' checkout ids start with `name` (one load per process, no clash)."""

    def __init__(self, name: str, base_url: str, key: str, clients: int, seed: int) -> None:
        super().__init__(base_url, key, clients, seed)
        self._threads = [
            threading.Thread(
                target=self._client, args=(f"{name}c{n}", seed * 1000 + n), daemon=True
            )
            for n in range(clients)
        ]
