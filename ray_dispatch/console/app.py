"""The console's aiohttp application: pages, JSON API, ``/metrics``, and the token check in front of them.

Every request needs the console's token — ``?token=``, ``Authorization:
Bearer``, or the cookie the console sets when a page is opened with
``?token=`` (the Jupyter convention: the printed link logs the browser in,
then the address bar is cleaned) — else it is answered 401: a small HTML page
for a browser, ``{"error": ...}`` for anything else. The one exception is
``/metrics`` when the console listens on a loopback address (Prometheus
scrapes without credentials; on another address it needs the token too).

The deployment's methods block on Ray, so each runs in a worker thread and
the event loop keeps answering. Actions are POSTs of JSON (a cross-site form
cannot send one, and the cookie is ``SameSite=Lax``).
"""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import json
from collections.abc import Awaitable, Callable
from html import escape
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from aiohttp import web

from ray_dispatch.console import model, pages
from ray_dispatch.console.openapi import openapi_document
from ray_dispatch.console.prometheus import metrics_response
from ray_dispatch.core.config import read_yaml_text
from ray_dispatch.core.errors import DispatchError, one_line

if TYPE_CHECKING:
    from ray_dispatch.api import Deployment

STATIC = Path(__file__).with_name("static")
TOPOLOGY_REFRESH = 2.0
"""Seconds between two refreshes of the topology picture."""

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def is_loopback(host: str) -> bool:
    """Whether ``host`` (an address or ``localhost``) only accepts connections from this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class Console:
    """The request handlers of one console, over one deployment (see the module docstring).

    Args:
        deployment: the deployment shown (its methods are called in worker threads).
        token: the secret every request must carry.
        metrics_open: whether ``/metrics`` answers without the token (a loopback bind).
        cookie: the name of the cookie holding the token (per port: two consoles on one host differ).
    """

    def __init__(self, deployment: Deployment, token: str, *, metrics_open: bool, cookie: str) -> None:
        self.deployment = deployment
        self.token = token
        self.metrics_open = metrics_open
        self.cookie = cookie

    def application(self) -> web.Application:
        """The aiohttp application: token check, pages, JSON API, ``/metrics`` and static files."""
        app = web.Application(middlewares=[self._check_token], client_max_size=1 << 20)
        get = app.router.add_get
        get("/", self.topology_page)
        get("/endpoints", self.endpoints_page)
        get("/failures", self.failures_page)
        get("/failures/{failure_id}", self.failure_page)
        get("/config", self.config_page)
        get("/api/status", self.api_status)
        get("/api/topology", self.api_topology)
        get("/api/endpoints", self.api_endpoints)
        get("/api/failures", self.api_failures)
        app.router.add_post("/api/failures/replay", self.api_replay)
        app.router.add_post("/api/failures/purge", self.api_purge)
        get("/api/failures/{failure_id}", self.api_failure)
        get("/api/config", self.api_config)
        get("/api/history", self.api_history)
        app.router.add_post("/api/config/preview", self.api_preview)
        get("/api/openapi.json", self.api_openapi)
        get("/metrics", self.metrics)
        app.router.add_static("/static", STATIC)
        return app

    # -- the token -----------------------------------------------------------------------

    def _given_token(self, request: web.Request) -> tuple[str | None, bool]:
        """The token the request carries, and whether it came in the query string."""
        if "token" in request.query:
            return request.query["token"], True
        header = request.headers.get("Authorization", "")
        if header.startswith("Bearer "):
            return header[len("Bearer ") :].strip(), False
        return request.cookies.get(self.cookie), False

    @web.middleware
    async def _check_token(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path == "/metrics" and self.metrics_open:
            return await handler(request)
        given, in_query = self._given_token(request)
        if given is None or not hmac.compare_digest(given.encode(), self.token.encode()):
            return _unauthorized(request)
        is_page = request.method == "GET" and not request.path.startswith(("/api/", "/static/", "/metrics"))
        if in_query and is_page:  # log the browser in, and take the token out of the address bar
            rest = {k: v for k, v in request.query.items() if k != "token"}
            location = request.path + (f"?{urlencode(rest)}" if rest else "")
            response = web.Response(status=303, headers={"Location": location})
            response.set_cookie(self.cookie, self.token, httponly=True, samesite="Lax", path="/")
            return response
        return await handler(request)

    # -- pages ---------------------------------------------------------------------------

    def _page(self, title: str, active: str, body: str) -> web.Response:
        html = pages.layout(title, self.deployment.name, self.deployment.namespace, active, body)
        return web.Response(text=html, content_type="text/html")

    async def topology_page(self, request: web.Request) -> web.Response:
        topology = await self._topology()
        return self._page("Topology", "/", pages.topology_page(topology["svg"], TOPOLOGY_REFRESH))

    async def endpoints_page(self, request: web.Request) -> web.Response:
        status = await self._status()
        body = pages.endpoints_page(model.endpoint_rows(status), model.dispatcher_rows(status))
        return self._page("Endpoints", "/endpoints", body)

    async def failures_page(self, request: web.Request) -> web.Response:
        filters = {k: request.query.get(k, "") for k in ("direction", "endpoint", "q")}
        records, total = await self._failures(filters)
        body = pages.failures_page(records, self.deployment.config.endpoint_names, filters, total)
        return self._page("Failures", "/failures", body)

    async def failure_page(self, request: web.Request) -> web.Response:
        failure_id = request.match_info["failure_id"]
        try:
            record = await asyncio.to_thread(self.deployment.failure, failure_id)
        except KeyError:
            body = f"<p>no failure record with id <code>{escape(failure_id)}</code> (replayed or purged?)</p>"
            return self._page("Failure record", "/failures", body)
        body = pages.failure_page(record, self.deployment.config.endpoint_names)
        return self._page(f"Failure {failure_id[:12]}", "/failures", body)

    async def config_page(self, request: web.Request) -> web.Response:
        config = await self._config()
        history = await asyncio.to_thread(self.deployment.history)
        body = pages.config_page(config["yaml"], config["source"], config["generation"], history)
        return self._page("Config", "/config", body)

    # -- JSON API ------------------------------------------------------------------------

    async def _status(self) -> dict[str, Any]:
        return await asyncio.to_thread(self.deployment.status)

    async def _topology(self) -> dict[str, Any]:
        status = await self._status()
        topology = await asyncio.to_thread(self.deployment.graph, status=status)
        return {
            "svg": topology.to_svg(),
            "endpoints": [*topology.transports, *topology.applications],
            "counts": topology.counts,
            "rates": topology.rates,
            "replicas": topology.replicas,
            "failed": topology.failed,
        }

    async def _failures(self, filters: dict[str, str]) -> tuple[list[dict[str, Any]], int]:
        direction = filters.get("direction") or None
        endpoint = filters.get("endpoint") or None
        if direction is not None and direction not in pages.DIRECTIONS:
            raise web.HTTPBadRequest(
                text=_error_text(f"direction: expected one of {list(pages.DIRECTIONS)}"),
                content_type="application/json",
            )
        records = await asyncio.to_thread(self.deployment.failures, direction, endpoint)
        shown = [r for r in records if model.failure_matches(r, filters.get("q", ""))]
        return shown, len(records)

    async def _config(self) -> dict[str, Any]:
        status = await self._status()  # also the dispatchers' generation (and the config in force, once applied live)
        raw = self.deployment.config.raw
        return {
            "yaml": model.config_yaml(raw),
            "config": model.masked(raw),
            "source": self.deployment.config.source,
            "generation": model.generation_of(status),
        }

    async def api_status(self, request: web.Request) -> web.Response:
        return _json(await self._status())

    async def api_topology(self, request: web.Request) -> web.Response:
        return _json(await self._topology())

    async def api_endpoints(self, request: web.Request) -> web.Response:
        status = await self._status()
        return _json({"endpoints": model.endpoint_rows(status), "dispatchers": model.dispatcher_rows(status)})

    async def api_failures(self, request: web.Request) -> web.Response:
        records, total = await self._failures({k: request.query.get(k, "") for k in ("direction", "endpoint", "q")})
        return _json({"failures": records, "count": len(records), "total": total})

    async def api_failure(self, request: web.Request) -> web.Response:
        try:
            return _json(await asyncio.to_thread(self.deployment.failure, request.match_info["failure_id"]))
        except KeyError as exc:
            return _json({"error": str(exc.args[0]) if exc.args else "not found"}, status=404)

    async def api_replay(self, request: web.Request) -> web.Response:
        body = await _json_body(request)
        ids = _failure_ids(body)
        endpoint = body.get("endpoint")
        if endpoint is not None and endpoint not in self.deployment.config.endpoint_names:
            return _json({"error": f"endpoint: unknown endpoint {endpoint!r}"}, status=400)
        results = [await self._replay_one(fid, endpoint) for fid in ids]
        delivered = sum(1 for r in results if r["error"] is None and not r["failures"])
        return _json({"results": results, "delivered": delivered})

    async def _replay_one(self, failure_id: str, endpoint: str | None) -> dict[str, Any]:
        try:
            outcome = await asyncio.to_thread(self.deployment.replay_failure, failure_id, endpoint)
        except KeyError as exc:
            return {"failure_id": failure_id, "destinations": [], "failures": [], "error": str(exc.args[0])}
        except Exception as exc:  # one record's trouble is reported with it; the others are still replayed
            return {"failure_id": failure_id, "destinations": [], "failures": [], "error": one_line(exc)}
        return {"failure_id": failure_id, **outcome, "error": None}

    async def api_purge(self, request: web.Request) -> web.Response:
        body = await _json_body(request)
        ids = None if body.get("all") is True else _failure_ids(body)
        return _json({"purged": await asyncio.to_thread(self.deployment.purge_failures, ids)})

    async def api_config(self, request: web.Request) -> web.Response:
        return _json(await self._config())

    async def api_history(self, request: web.Request) -> web.Response:
        return _json({"generations": await asyncio.to_thread(self.deployment.history)})

    async def api_preview(self, request: web.Request) -> web.Response:
        """A dry run of a pasted config: nothing changes; a bad config is a 400 with its one line."""
        body = await _json_body(request)
        text, examples = body.get("yaml"), body.get("examples", 5)
        if not isinstance(text, str) or not text.strip():
            return _json({"error": "yaml: expected the config as YAML text"}, status=400)
        if not isinstance(examples, int) or isinstance(examples, bool) or examples < 0:
            return _json({"error": f"examples: expected a whole number >= 0, got {examples!r}"}, status=400)
        try:
            config = read_yaml_text(text)
            result = await asyncio.to_thread(self.deployment.apply, config, True)
        except DispatchError as exc:  # the preflight's (or YAML's) one line
            return _json({"error": str(exc)}, status=400)
        except Exception as exc:  # anything else, still one line, with its type
            return _json({"error": one_line(exc)}, status=400)
        routing = result.plan.routing
        return _json(
            {
                "text": result.to_text(examples),
                "changed": getattr(routing, "changed", None),
                "compared": getattr(routing, "messages", None),
            }
        )

    async def api_openapi(self, request: web.Request) -> web.Response:
        return _json(openapi_document(self.deployment.name))

    async def metrics(self, request: web.Request) -> web.Response:
        return await metrics_response(self._status)


def _error_text(text: str) -> str:
    return json.dumps({"error": text})


def _json(data: Any, status: int = 200) -> web.Response:
    return web.Response(text=json.dumps(data, default=str), status=status, content_type="application/json")


def _unauthorized(request: web.Request) -> web.Response:
    if "text/html" in request.headers.get("Accept", ""):
        return web.Response(text=pages.unauthorized_page(), status=401, content_type="text/html")
    reason = "missing or wrong token: pass ?token=, or Authorization: Bearer <token> (see `ray-dispatch console`)"
    return _json({"error": reason}, status=401)


async def _json_body(request: web.Request) -> dict[str, Any]:
    """The request's JSON object body; a 400 naming the problem otherwise."""
    try:
        body = await request.json()
    except (ValueError, UnicodeDecodeError) as exc:
        raise web.HTTPBadRequest(
            text=_error_text(f"body is not valid JSON ({exc})"), content_type="application/json"
        ) from None
    if not isinstance(body, dict):
        raise web.HTTPBadRequest(
            text=_error_text(f"body must be a JSON object, got {type(body).__name__}"), content_type="application/json"
        )
    return body


def _failure_ids(body: dict[str, Any]) -> list[str]:
    """``failure_ids`` of a request body: a non-empty list of strings, else a 400 naming it."""
    ids = body.get("failure_ids")
    if not isinstance(ids, list) or not ids or not all(isinstance(i, str) for i in ids):
        raise web.HTTPBadRequest(
            text=_error_text("failure_ids: expected a non-empty list of failure ids (or all: true to purge every one)"),
            content_type="application/json",
        )
    return ids


__all__ = ["Console", "is_loopback"]
