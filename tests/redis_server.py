"""A real ``redis-server`` for tests: loopback only, a free port, no persistence.

    with RedisServer() as server:
        store = RedisStore(server.url, prefix="t")
        ...
        server.restart()      # same port, empty dataset (persistence is off)

The server is started with ``--save '' --appendonly no`` in a private temp
directory, is waited for until it answers PING (bounded), and is stopped by
its PID in ``stop()`` / on leaving the ``with`` block, even when the test fails.
"""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType

__all__ = ["RedisServer", "free_port", "redis_server_available"]


def redis_server_available() -> bool:
    """Whether a ``redis-server`` binary is on PATH."""
    return shutil.which("redis-server") is not None


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class RedisServer:
    """Runs one ``redis-server`` process on 127.0.0.1 for the duration of a test.

    Args:
        password: if given, the server requires it (``--requirepass``).
        startup_timeout: seconds to wait for the first PONG before giving up.
    """

    def __init__(self, *, password: str | None = None, startup_timeout: float = 10.0) -> None:
        self.password = password
        self.startup_timeout = startup_timeout
        self.port: int | None = None
        self.process: subprocess.Popen[bytes] | None = None
        self._dir: Path | None = None

    @property
    def url(self) -> str:
        """``redis://127.0.0.1:<port>/0`` (without the password)."""
        if self.port is None:
            raise RuntimeError("RedisServer is not started")
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def pid(self) -> int | None:
        """PID of the running server, or None."""
        return None if self.process is None else self.process.pid

    def start(self) -> RedisServer:
        """Start on a free port (a few attempts if the port is taken meanwhile); return self.

        Raises:
            RuntimeError: the server did not answer PING within ``startup_timeout``.
        """
        if self._dir is None:
            self._dir = Path(tempfile.mkdtemp(prefix="ray-dispatch-redis-"))
        last_error: Exception | None = None
        for _attempt in range(3):
            self.port = free_port()
            try:
                self._launch()
                return self
            except RuntimeError as exc:
                last_error = exc
        raise RuntimeError(f"redis-server did not start after 3 attempts: {last_error}")

    def restart(self) -> None:
        """Stop the server and start a fresh one on the same port (empty: persistence is off).

        Raises:
            RuntimeError: the new server did not come up (e.g. the port was taken meanwhile).
        """
        self.stop(keep_dir=True)
        self._launch()

    def stop(self, *, keep_dir: bool = False) -> None:
        """Stop the server by PID (SIGTERM, then SIGKILL after 5 s); idempotent."""
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=5)
        if not keep_dir and self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None

    def kill(self) -> None:
        """Kill the server at once (SIGKILL) without cleaning up, as a crash would."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=5)
        self.process = None

    def ping(self, timeout: float = 0.5) -> bool:
        """Whether the server answers PING now (NOAUTH counts as answering)."""
        if self.port is None:
            return False
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=timeout) as sock:
                sock.sendall(b"PING\r\n")
                reply = sock.recv(64)
        except OSError:
            return False
        return reply.startswith((b"+PONG", b"-NOAUTH"))

    def _launch(self) -> None:
        assert self._dir is not None and self.port is not None
        args = [
            "redis-server",
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(self._dir),
            "--daemonize",
            "no",
        ]
        if self.password is not None:
            args += ["--requirepass", self.password]
        log = open(self._dir / "redis.log", "ab")  # noqa: SIM115 - handed to the child process
        try:
            self.process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        finally:
            log.close()
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                break
            if self.ping():
                return
            time.sleep(0.02)
        tail = self._log_tail()
        self.stop(keep_dir=True)
        raise RuntimeError(f"redis-server on port {self.port} did not answer PING: {tail}")

    def _log_tail(self) -> str:
        try:
            assert self._dir is not None
            return (self._dir / "redis.log").read_text(errors="replace")[-500:]
        except (OSError, AssertionError):
            return "(no log)"

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"RedisServer(port={self.port}, pid={self.pid}, running={self.process is not None})"
