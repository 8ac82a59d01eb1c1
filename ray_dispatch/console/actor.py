"""The console's home: one named Ray actor per deployment, serving the aiohttp app on its event loop.

Why an actor and not the ``ray-dispatch run`` process: a deployment started
with ``run --detach``, or with ``Deployment.start()`` from a notebook, has no
process of ours that stays up; an actor lives as long as the deployment does
(detached with it), any driver finds it by name (``<deployment>::console``,
``actors.naming``) to print its address, and ``Deployment.shutdown`` ends it
with the rest. It is placed on the node of the driver that starts it (when
that node has room), so ``127.0.0.1`` is the machine the command ran on.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from typing import Any

import ray
from aiohttp import web

from actors.naming import console_actor_name
from ray_dispatch.api import Deployment, _get
from ray_dispatch.console.app import Console, is_loopback
from ray_dispatch.core.errors import ConfigError, DispatchError

log = logging.getLogger(__name__)

START_TIMEOUT = 60.0
"""Seconds ``start_console`` waits for the console to listen."""

_OWNED: dict[tuple[str, str], Any] = {}
"""Handles of the consoles this process started: a non-detached actor lives while a handle to it does."""


class ConsoleActor:
    """Serves one deployment's console (``ray_dispatch.console.app``) on ``host``:``port``.

    Args:
        deployment: the deployment's name.
        namespace: its Ray namespace.
        token: the secret every request must carry.
        host: the address to listen on.
        port: the port to listen on (0: a free one).
    """

    def __init__(self, deployment: str, namespace: str, token: str, host: str, port: int) -> None:
        self.deployment_name = deployment
        self.namespace = namespace
        self.token = token
        self.host = host
        self.port = port
        self._runner: web.AppRunner | None = None

    async def start(self) -> str:
        """Attach to the deployment, listen, and return the console's URL (with the token).

        Raises:
            ConfigError: the address cannot be listened on (in use, not this machine's), naming it.
        """
        if self._runner is not None:
            return await self.url()
        deployment = await asyncio.to_thread(Deployment.attach, self.deployment_name, self.namespace, address=None)
        console = Console(
            deployment, self.token, metrics_open=is_loopback(self.host), cookie=f"ray_dispatch_console_{self.port}"
        )
        runner = web.AppRunner(console.application(), access_log=None)
        await runner.setup()
        try:
            await web.TCPSite(runner, self.host, self.port).start()
        except OSError as exc:
            await runner.cleanup()
            raise ConfigError(
                f"console: cannot listen on {self.host}:{self.port} ({exc.strerror or exc});"
                " choose another --console-host/--console-port (or console: host/port in the config)"
            ) from None
        self._runner = runner
        self.port = int(runner.addresses[-1][1])
        console.cookie = f"ray_dispatch_console_{self.port}"
        log.info("console of deployment %r listening on %s:%s", self.deployment_name, self.host, self.port)
        return await self.url()

    async def url(self) -> str:
        """The console's address with its token (``http://HOST:PORT/?token=...``)."""
        host = self.host
        if host in ("0.0.0.0", "::", ""):
            host = ray.util.get_node_ip_address()
        shown = f"[{host}]" if ":" in host else host
        return f"http://{shown}:{self.port}/?token={self.token}"

    async def stop(self) -> None:
        """Stop listening."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None


def start_console(
    deployment: Deployment,
    *,
    host: str | None = None,
    port: int | None = None,
    token: str | None = None,
    timeout: float = START_TIMEOUT,
) -> str:
    """Start the web console of ``deployment`` (once; later calls return the running one's URL) and return its URL.

    ``host`` and ``port`` default to the config's ``console:`` block
    (``127.0.0.1``, a free port); ``token`` to a new random one. The console
    lives as long as the deployment: detached with a detached one, and
    stopped by ``Deployment.shutdown``.

    Raises:
        ConfigError: the address cannot be listened on.
    """
    found = _running(deployment.name, deployment.namespace)
    if found is not None:
        return str(_get(found.url.remote(), timeout=timeout))
    spec = deployment.config.console
    options: dict[str, Any] = {
        "name": console_actor_name(deployment.name),
        "namespace": deployment.namespace,
        "num_cpus": 0,
        "max_restarts": 0,
        "scheduling_strategy": ray.util.scheduling_strategies.NodeAffinitySchedulingStrategy(
            ray.get_runtime_context().get_node_id(), soft=True
        ),
    }
    if deployment.detached:
        options["lifetime"] = "detached"
    remote: Any = ray.remote(ConsoleActor)
    handle = remote.options(**options).remote(
        deployment.name,
        deployment.namespace,
        token or secrets.token_urlsafe(24),
        spec.host if host is None else host,
        spec.port if port is None else port,
    )
    try:
        url = str(_get(handle.start.remote(), timeout=timeout))
    except BaseException:
        ray.kill(handle)
        raise
    _OWNED[(deployment.namespace, deployment.name)] = handle
    return url


def console_url(deployment: Deployment, timeout: float = 30.0) -> str:
    """The URL (with its token) of the console of a running deployment.

    Raises:
        DispatchError: no console runs for it (started with ``--no-console``, or console ``enabled: false``).
    """
    found = _running(deployment.name, deployment.namespace)
    if found is None:
        raise DispatchError(
            f"deployment {deployment.name!r} (namespace {deployment.namespace!r}) runs no console"
            " (started with --no-console, or `console: {enabled: false}`)"
        )
    return str(_get(found.url.remote(), timeout=timeout))


def _running(name: str, namespace: str) -> Any:
    try:
        return ray.get_actor(console_actor_name(name), namespace=namespace)
    except ValueError:
        return None
