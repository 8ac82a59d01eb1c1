"""Connect the ``ray-dispatch`` command to a named Ray cluster promptly, or fail with one line.

``ray.init(address=...)`` retries for minutes when nothing answers, or when the
cluster wants an auth token this shell does not send, printing a warning a
second to stderr. Here a TCP connect to the address comes first (nothing
listening fails at once), Ray's warnings are captured instead of shown, and
the attempt is given up after ``CONNECT_TIMEOUT`` seconds, or as soon as the
captured warnings say the token is missing or wrong.
"""

from __future__ import annotations

import os
import socket
import sys
import tempfile
import threading

import click

from ray_dispatch.core.errors import ConfigError, DispatchError

CONNECT_TIMEOUT = 15.0
"""Seconds ``connect`` gives Ray to join a cluster that accepted the TCP connection."""

TCP_TIMEOUT = 5.0
"""Seconds the TCP pre-check waits for the address to accept a connection."""

RAY_CLIENT_PORT = 10001
_TOKEN_REFUSED = ("InvalidAuthToken", "Unauthenticated")


def check_reachable(address: str, source: str) -> None:
    """Fail with one line unless something accepts a TCP connection at ``address`` (``host:port``, ``ray://``).

    Raises:
        ConfigError: the address is not ``HOST:PORT``.
        DispatchError: nothing answers there (the OS's reason, and what to check).
    """
    host, port = _host_port(address, source)
    try:
        with socket.create_connection((host, port), timeout=TCP_TIMEOUT):
            pass
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        if isinstance(exc, TimeoutError | socket.timeout):
            reason = f"no answer within {TCP_TIMEOUT:.0f} s"
        raise DispatchError(
            f"cannot reach the Ray cluster at {address} ({source}): {reason}; check the address"
            f" (`ray status` on the head node prints it), that Ray runs there and that port {port} is open from here"
        ) from None


def _host_port(address: str, source: str) -> tuple[str, int]:
    plain = address.removeprefix("ray://")
    host, _, port = plain.rpartition(":")
    if not port and address.startswith("ray://"):
        host, port = plain, str(RAY_CLIENT_PORT)
    if not host or not port.isdigit():
        raise ConfigError(f"{source} {address!r}: expected HOST:PORT of the Ray head (e.g. 10.0.0.5:6379), or 'auto'")
    return host.strip("[]"), int(port)


def connect(address: str, namespace: str, source: str, *, timeout: float = CONNECT_TIMEOUT) -> None:
    """Join the Ray cluster at ``address`` (``auto`` too) within ``timeout``, or exit with one line.

    Does nothing when this process is already connected. A failure that
    Ray reports (``ConnectionError``) is raised as ``DispatchError``; a
    connection Ray keeps retrying is abandoned by ending the process
    (``ray.init`` cannot be interrupted), after printing the one line.
    """
    if "ray" in sys.modules and sys.modules["ray"].is_initialized():
        return
    if address != "auto":
        check_reachable(address, source)
    from ray_dispatch.api import ensure_ray

    sys.stderr.flush()
    saved = os.dup(2)
    finished = threading.Event()
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)

        def give_up_when_hopeless() -> None:
            waited = 0.0
            while not finished.wait(0.5):
                waited += 0.5
                verdict = _verdict(_read(captured.fileno()), address, source, timed_out=waited >= timeout)
                if verdict and not finished.is_set():
                    os.dup2(saved, 2)
                    click.echo(f"error: {verdict}", err=True)
                    sys.stderr.flush()
                    os._exit(1)

        threading.Thread(target=give_up_when_hopeless, name="ray-connect-watchdog", daemon=True).start()
        try:
            ensure_ray(address, namespace, quiet=True)
        except ConnectionError as exc:
            finished.set()
            verdict = _verdict(_read(captured.fileno()), address, source, timed_out=True)
            raise DispatchError(
                verdict or f"cannot connect to the Ray cluster at {address} ({source}): {exc}"
            ) from None
        finally:
            finished.set()
            os.dup2(saved, 2)
            os.close(saved)


def _read(fd: int) -> str:
    return os.pread(fd, 1 << 20, 0).decode("utf-8", "replace")


def _verdict(warnings: str, address: str, source: str, *, timed_out: bool) -> str | None:
    """The one line to give up with, from Ray's captured warnings; None to keep waiting."""
    if any(marker in warnings for marker in _TOKEN_REFUSED):
        if os.environ.get("RAY_AUTH_MODE", "").lower() == "token":
            return (
                f"the Ray cluster at {address} ({source}) refused this shell's auth token; use the cluster's token"
                " (~/.ray/auth_token, RAY_AUTH_TOKEN or RAY_AUTH_TOKEN_PATH)"
            )
        return (
            f"the Ray cluster at {address} ({source}) requires token auth and this shell sends no token:"
            " set RAY_AUTH_MODE=token (the token is read from ~/.ray/auth_token, or RAY_AUTH_TOKEN)"
        )
    if not timed_out:
        return None
    last = [line for line in warnings.splitlines() if line.strip()]
    why = f" (Ray said: {last[-1].split('] ', 1)[-1].strip()})" if last else ""
    if address == "auto":
        return f"no Ray cluster found on this machine (RAY_ADDRESS=auto){why}; start one with `ray start --head`"
    return (
        f"cannot connect to the Ray cluster at {address} ({source}): it accepted a connection but Ray did not join"
        f" it{why}; check that the address is the Ray head's GCS port (`ray status` on the head node prints it)"
    )
