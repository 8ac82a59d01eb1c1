"""HTTP transport: inbound messages and peer events by POST, outbound by webhook.

The transport runs an aiohttp server on the actor's own event loop:

- ``POST {path_prefix}/messages``: a JSON object of message fields (at least
  ``from_addr``, ``to_addr``, ``content``) becomes an inbound user message.
  Answers ``200 {"message_id": ...}`` only once the dispatcher confirmed it;
  ``400`` naming the invalid, unknown or reserved field; ``413`` when the body
  is over ``max_body_bytes``; ``503`` (with ``Retry-After``) when no dispatcher
  confirmed it within ``inbound_timeout`` or none is reachable — the client
  should send it again (it may then arrive twice: at least once).
- ``POST {path_prefix}/events``: the peer reports what became of a message this
  transport sent: ``{"event_type": "ack" | "nack" | "delivery_report",
  "user_message_id" or "sent_message_id", ...}``; becomes an ack, nack or
  delivery report about the right message.
- ``GET /openapi.json``: an OpenAPI 3 description of the above (no auth).

Outbound messages are POSTed as Vumi JSON to ``outbound_url``. A 2xx answer is
an ack (``sent_message_id`` is the answer's ``message_id`` or ``id`` when it
is JSON, else the message's own id); another 4xx is a nack at once; 5xx, 408,
429 and connection errors are retried with backoff, up to ``outbound_attempts``
attempts within ``outbound_timeout`` seconds, then nacked.
"""

from __future__ import annotations

import asyncio
import base64
import hmac
import json
import logging
from collections.abc import Awaitable
from typing import Any, ClassVar, Literal

import aiohttp
from aiohttp import web
from pydantic import Field, model_validator

from actors.endpoint import EndpointConfig, TransportActor
from actors.transports.common import Backoff, BackoffConfig, BoundedMap, ConnectionSupervisor, Secret
from ray_dispatch.core.errors import DeliveryError, InvalidMessage
from ray_dispatch.core.message import Message, TransportEvent, TransportUserMessage

log = logging.getLogger(__name__)

RETRIED_STATUSES = frozenset({408, 425, 429})
RESERVED_FIELDS = frozenset({"transport_name", "message_type", "message_version", "routing_metadata"})
"""Fields the transport or the dispatcher sets; a peer may not give them."""
MESSAGE_FIELDS = frozenset(TransportUserMessage.model_fields) - RESERVED_FIELDS
EVENT_FIELDS = frozenset(TransportEvent.model_fields) - RESERVED_FIELDS


class HttpAuthConfig(EndpointConfig):
    """Credentials: a bearer token, or a user name and password (HTTP basic).

    Attributes:
        type: ``token`` (``Authorization: Bearer <token>``) or ``basic``.
        token: where the token lives (``{env: NAME}`` or ``{file: PATH}``), for ``token``.
        username: the user name, for ``basic``.
        password: where the password lives, for ``basic``.
    """

    type: Literal["token", "basic"]
    token: Secret | None = None
    username: str | None = None
    password: Secret | None = None

    @model_validator(mode="after")
    def _needs_credentials(self) -> HttpAuthConfig:
        if self.type == "token" and self.token is None:
            raise ValueError("auth type 'token' needs 'token'")
        if self.type == "basic" and (self.username is None or self.password is None):
            raise ValueError("auth type 'basic' needs 'username' and 'password'")
        return self

    def header(self, key: str) -> str:
        """Return the ``Authorization`` header value (reads the secret now).

        Raises:
            ConfigError: the secret cannot be read.
        """
        if self.type == "token":
            assert self.token is not None
            return f"Bearer {self.token.reveal(f'{key}.token')}"
        assert self.password is not None
        raw = f"{self.username}:{self.password.reveal(f'{key}.password')}".encode()
        return "Basic " + base64.b64encode(raw).decode("ascii")


class HttpTransportConfig(EndpointConfig):
    """Config of ``HttpTransport``.

    Attributes:
        host: address the server listens on (default ``127.0.0.1``).
        port: port the server listens on; 0 picks a free one (see ``HttpTransport.port``).
        path_prefix: put before ``/messages`` and ``/events`` (e.g. ``/sms``; default none).
        transport_type: the ``transport_type`` of inbound messages (default ``http``).
        inbound_auth: credentials peers must send with their POSTs (default none).
        outbound_url: the webhook outbound messages are POSTed to (none: outbound messages are nacked).
        outbound_auth: credentials sent with webhook POSTs (default none).
        outbound_attempts: how many times one outbound message is tried (default 5).
        outbound_timeout: seconds one outbound message may take, retries included (default 60).
        request_timeout: seconds one webhook POST may take (default 10).
        backoff: delays between webhook attempts, and between attempts to start the server.
        max_body_bytes: largest request body accepted (default 1 MiB); larger ones get a JSON 413.
        inbound_timeout: seconds a POST waits for the dispatcher's confirmation before it is
            answered 503 (default 30).
        remember_sent: how many peer message ids to remember for ``/events`` (default 100000).
    """

    host: str = "127.0.0.1"
    port: int = Field(0, ge=0, le=65535)
    path_prefix: str = Field("", pattern=r"^(/[A-Za-z0-9._~-]+)*$")
    transport_type: str = "http"
    inbound_auth: HttpAuthConfig | None = None
    outbound_url: str | None = Field(None, pattern=r"^https?://")
    outbound_auth: HttpAuthConfig | None = None
    outbound_attempts: int = Field(5, ge=1, le=100)
    outbound_timeout: float = Field(60.0, gt=0)
    request_timeout: float = Field(10.0, gt=0)
    backoff: BackoffConfig = Field(default_factory=BackoffConfig)
    max_body_bytes: int = Field(1 << 20, ge=1024)
    inbound_timeout: float = Field(30.0, gt=0)
    remember_sent: int = Field(100_000, ge=1)


class HttpTransport(TransportActor):
    """Messages in and events in by HTTP POST, messages out by webhook (see the module docstring)."""

    CONFIG_CLASS: ClassVar[type[EndpointConfig]] = HttpTransportConfig
    TRANSPORT_TYPE: ClassVar[str] = "http"

    def __init__(self, endpoint_name: str, config: Any = None, **kw: Any) -> None:
        super().__init__(endpoint_name, config, **kw)
        self._runner: web.AppRunner | None = None
        self._listener: ConnectionSupervisor[web.TCPSite] | None = None
        self._site_closed = asyncio.Event()
        self._session: aiohttp.ClientSession | None = None
        self._sent_ids: BoundedMap[str, str] = BoundedMap(self.config.remember_sent)
        self._inbound_auth: str | None = None
        self._outbound_auth: str | None = None
        self.port: int | None = None

    # -- lifecycle ------------------------------------------------------------------

    async def setup_transport(self) -> None:
        """Read the credentials, start the webhook client and the server.

        Waits up to ``backoff.connect_timeout`` for the server to listen; a busy
        port is retried with backoff in the background while the transport runs.

        Raises:
            ConfigError: a secret cannot be read.
        """
        cfg = self.config
        self._inbound_auth = cfg.inbound_auth.header("inbound_auth") if cfg.inbound_auth else None
        self._outbound_auth = cfg.outbound_auth.header("outbound_auth") if cfg.outbound_auth else None
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=cfg.request_timeout))
        app = web.Application(client_max_size=cfg.max_body_bytes)
        app.router.add_post(f"{cfg.path_prefix}/messages", self._post_message)
        app.router.add_post(f"{cfg.path_prefix}/events", self._post_event)
        app.router.add_get("/openapi.json", self._get_openapi)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        if cfg.outbound_url is not None:
            self.track_connection("webhook", "idle")
        self._listener = ConnectionSupervisor(
            f"http transport {self.endpoint_name!r} server",
            self._listen,
            self._serve,
            self._close_site,
            cfg.backoff,
            state=self.track_connection("server"),
            up_state="listening",
        )
        await self._listener.start_and_wait()

    async def _listen(self) -> web.TCPSite:
        assert self._runner is not None
        site = web.TCPSite(self._runner, self.config.host, self.config.port)
        await site.start()
        self._site_closed = asyncio.Event()
        address = self._runner.addresses[-1]
        self.port = int(address[1])
        log.info("http transport %r listening on %s:%s", self.endpoint_name, address[0], self.port)
        return site

    async def _serve(self, site: web.TCPSite) -> None:
        await self._site_closed.wait()  # the site serves until the supervisor closes it

    async def _close_site(self, site: web.TCPSite) -> None:
        self._site_closed.set()
        await site.stop()

    async def wait_listening(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for the server to listen; return whether it does."""
        return self._listener is not None and await self._listener.wait_connected(timeout)

    async def teardown_transport(self) -> None:
        """Stop the server and close the webhook client."""
        if self._listener is not None:
            await self._listener.stop()
            self._listener = None
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self._session is not None:
            await self._session.close()
            self._session = None

    # -- inbound ----------------------------------------------------------------------

    def _authorized(self, request: web.Request) -> bool:
        if self._inbound_auth is None:
            return True
        given = request.headers.get("Authorization", "")
        return hmac.compare_digest(given.encode(), self._inbound_auth.encode())

    async def _read_object(self, request: web.Request) -> dict[str, Any] | web.Response:
        if not self._authorized(request):
            self.counters["http_unauthorized"] += 1
            return _error(401, "missing or wrong credentials", {"WWW-Authenticate": self._challenge()})
        try:
            body = await request.json()
        except web.HTTPRequestEntityTooLarge:
            self.counters["http_too_large"] += 1
            return _error(413, f"body is larger than max_body_bytes ({self.config.max_body_bytes} bytes)")
        except (ValueError, UnicodeDecodeError) as exc:
            return _error(400, f"body is not valid JSON ({exc})")
        if not isinstance(body, dict):
            return _error(400, f"body must be a JSON object, got {type(body).__name__}")
        return body

    def _challenge(self) -> str:
        auth = self.config.inbound_auth
        return 'Basic realm="ray_dispatch"' if auth and auth.type == "basic" else "Bearer"

    async def _post_message(self, request: web.Request) -> web.Response:
        body = await self._read_object(request)
        if isinstance(body, web.Response):
            return body
        refused = _refuse_fields(body, MESSAGE_FIELDS)
        if refused is not None:
            return refused
        fields = {"transport_type": self.config.transport_type, **body}
        return await self._publish_confirmed(self.publish_message(wait=True, **fields), "message_id")

    async def _post_event(self, request: web.Request) -> web.Response:
        body = await self._read_object(request)
        if isinstance(body, web.Response):
            return body
        refused = _refuse_fields(body, EVENT_FIELDS)
        if refused is not None:
            return refused
        user_message_id = body.pop("user_message_id", None)
        if user_message_id is None and isinstance(body.get("sent_message_id"), str):
            user_message_id = self._sent_ids.get(body["sent_message_id"])
            if user_message_id is None:
                return _error(400, f"field 'sent_message_id': {body['sent_message_id']!r} is not a message sent here")
        if user_message_id is None:
            return _error(400, "field 'user_message_id' or 'sent_message_id' is required")
        if body.get("event_type") == "ack":
            body.setdefault("sent_message_id", user_message_id)
        fields = {**body, "user_message_id": user_message_id}
        return await self._publish_confirmed(self.publish_event(wait=True, **fields), "event_id")

    async def _publish_confirmed(self, publishing: Awaitable[Message], id_field: str) -> web.Response:
        """Answer 200 with the id once the dispatcher confirmed; 400 if invalid; 503 if not confirmed in time."""
        try:
            published = await asyncio.wait_for(publishing, self.config.inbound_timeout)
        except InvalidMessage as exc:
            self.counters["http_invalid"] += 1
            return _error(400, str(exc))
        except (TimeoutError, DeliveryError, RuntimeError) as exc:
            self.counters["http_unconfirmed"] += 1
            why = f"not confirmed within {self.config.inbound_timeout}s" if isinstance(exc, TimeoutError) else str(exc)
            return _error(503, f"the dispatcher did not take it ({why}); send it again", {"Retry-After": "1"})
        return web.json_response({id_field: published[id_field]})

    async def _get_openapi(self, request: web.Request) -> web.Response:
        return web.json_response(openapi_document(self.endpoint_name, self.config))

    # -- outbound ---------------------------------------------------------------------

    async def handle_outbound_message(self, message: TransportUserMessage) -> None:
        """POST ``message`` to the webhook, retrying (bounded); ack on 2xx, else nack."""
        if self.config.outbound_url is None:
            await self.publish_nack(message.message_id, f"http transport {self.endpoint_name!r} has no outbound_url")
            return
        outcome = await self._deliver(message)
        if isinstance(outcome, _Refused):
            self.counters["outbound_nacked"] += 1
            await self.publish_nack(message.message_id, outcome.reason)
            return
        self._sent_ids[outcome] = message.message_id
        self.counters["outbound_acked"] += 1
        await self.publish_ack(message.message_id, sent_message_id=outcome)

    async def _deliver(self, message: TransportUserMessage) -> str | _Refused:
        """Try the webhook; return the peer's id for the message, or why it was refused."""
        assert self._session is not None
        cfg = self.config
        headers = {"Content-Type": "application/json"}
        if self._outbound_auth:
            headers["Authorization"] = self._outbound_auth
        body = message.to_json()
        webhook = self.track_connection("webhook", "idle")
        backoff = Backoff(cfg.backoff)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + cfg.outbound_timeout
        last = "no attempt made"
        for attempt in range(1, cfg.outbound_attempts + 1):
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            try:
                async with self._session.post(
                    cfg.outbound_url,
                    data=body,
                    headers=headers,
                    timeout=aiohttp.ClientTimeout(total=min(remaining, cfg.request_timeout)),
                ) as response:
                    text = await response.text()
                    if 200 <= response.status < 300:
                        webhook.enter("ok")
                        return _peer_message_id(text) or message.message_id
                    last = f"webhook answered {response.status}: {text[:200]}"
                    if 400 <= response.status < 500 and response.status not in RETRIED_STATUSES:
                        webhook.enter(*_webhook_refusal(response.status, last))
                        return _Refused(last)
                    webhook.attempts += 1
                    webhook.enter("failing", last, response.status)
            except (aiohttp.ClientError, TimeoutError) as exc:
                last = f"webhook unreachable: {type(exc).__name__}: {exc}"
                webhook.attempts += 1
                webhook.enter("down", last)
            self.counters["outbound_retries"] += 1
            log.info("http transport %r: attempt %d failed: %s", self.endpoint_name, attempt, last)
            if attempt < cfg.outbound_attempts:
                await asyncio.sleep(max(0.0, min(backoff.next_delay(), deadline - loop.time())))
        return _Refused(f"gave up after {attempt} attempt(s): {last}")


def _webhook_refusal(status: int, reason: str) -> tuple[str, str | None, int | None]:
    """The webhook's state after a 4xx that is not retried: ``refused`` on 401/403 (the credentials), else ``ok``.

    Any other 4xx refuses that one message (a nack): the webhook itself works.
    """
    if status in (401, 403):
        return "refused", reason, status
    return "ok", None, None


class _Refused:
    """Why the webhook did not take a message."""

    def __init__(self, reason: str) -> None:
        self.reason = reason


def _peer_message_id(text: str) -> str | None:
    try:
        data = json.loads(text)
    except ValueError:
        return None
    if isinstance(data, dict):
        for key in ("message_id", "id"):
            if isinstance(data.get(key), (str, int)) and data[key] != "":
                return str(data[key])
    return None


def _refuse_fields(body: dict[str, Any], known: frozenset[str]) -> web.Response | None:
    """A 400 naming the reserved or unknown fields of ``body``, or None when there are none."""
    reserved = sorted(RESERVED_FIELDS.intersection(body))
    if reserved:
        names = ", ".join(repr(name) for name in reserved)
        return _error(400, f"field(s) {names} are set by the transport and may not be given")
    unknown = sorted(set(body) - known)
    if unknown:
        names = ", ".join(repr(name) for name in unknown)
        return _error(400, f"unknown field(s) {names}; known: {', '.join(sorted(known))}")
    return None


def _error(status: int, text: str, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response({"error": text}, status=status, headers=headers)


def openapi_document(endpoint_name: str, config: HttpTransportConfig) -> dict[str, Any]:
    """Return the OpenAPI 3.0 description of an ``HttpTransport``'s endpoints."""
    prefix = config.path_prefix
    error = {"$ref": "#/components/schemas/Error"}
    responses = {
        "400": {"description": "invalid body; the text names the field", "content": _json(error)},
        "401": {"description": "missing or wrong credentials", "content": _json(error)},
        "413": {"description": "body larger than max_body_bytes", "content": _json(error)},
        "503": {
            "description": "no dispatcher confirmed it within inbound_timeout, or none is reachable: send it again",
            "headers": {"Retry-After": {"schema": {"type": "integer"}}},
            "content": _json(error),
        },
    }
    security: list[dict[str, list[str]]] = []
    schemes: dict[str, Any] = {}
    if config.inbound_auth is not None:
        name = "bearerAuth" if config.inbound_auth.type == "token" else "basicAuth"
        schemes[name] = {"type": "http", "scheme": "bearer" if name == "bearerAuth" else "basic"}
        security = [{name: []}]
    return {
        "openapi": "3.0.3",
        "info": {"title": f"ray_dispatch HTTP transport {endpoint_name!r}", "version": "1"},
        "security": security,
        "paths": {
            f"{prefix}/messages": {
                "post": {
                    "summary": "Send a user message into the dispatcher",
                    "requestBody": {"required": True, "content": _json({"$ref": "#/components/schemas/Message"})},
                    "responses": {
                        "200": {
                            "description": "the dispatcher confirmed it",
                            "content": _json(_object({"message_id": {"type": "string"}})),
                        },
                        **responses,
                    },
                }
            },
            f"{prefix}/events": {
                "post": {
                    "summary": "Report an ack, nack or delivery report about a message sent to the webhook",
                    "requestBody": {"required": True, "content": _json({"$ref": "#/components/schemas/Event"})},
                    "responses": {
                        "200": {"description": "routed", "content": _json(_object({"event_id": {"type": "string"}}))},
                        **responses,
                    },
                }
            },
        },
        "components": {"schemas": _schemas(), "securitySchemes": schemes},
    }


def _json(schema: dict[str, Any]) -> dict[str, Any]:
    return {"application/json": {"schema": schema}}


def _object(properties: dict[str, Any], required: list[str] | None = None) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "object", "properties": properties}
    if required:
        schema["required"] = required
    return schema


def _schemas() -> dict[str, Any]:
    text = {"type": "string"}
    nullable = {"type": "string", "nullable": True}
    message = _object(
        {
            "from_addr": nullable,
            "to_addr": nullable,
            "content": nullable,
            "message_id": text,
            "in_reply_to": nullable,
            "session_event": {"type": "string", "enum": ["new", "resume", "close"], "nullable": True},
            "group": nullable,
            "provider": nullable,
            "to_addr_type": nullable,
            "from_addr_type": nullable,
            "timestamp": text,
            "transport_type": text,
            "helper_metadata": {"type": "object"},
            "transport_metadata": {"type": "object"},
        },
        ["from_addr", "to_addr"],
    )
    message["additionalProperties"] = False
    event = _object(
        {
            "event_type": {"type": "string", "enum": ["ack", "nack", "delivery_report"]},
            "user_message_id": {"type": "string", "description": "the message_id of the webhook POST"},
            "sent_message_id": {"type": "string", "description": "the id the webhook answered with"},
            "nack_reason": text,
            "delivery_status": {"type": "string", "enum": ["pending", "failed", "delivered"]},
            "event_id": text,
            "timestamp": text,
            "transport_type": text,
            "helper_metadata": {"type": "object"},
            "transport_metadata": {"type": "object"},
        },
        ["event_type"],
    )
    event["additionalProperties"] = False
    outbound = {"description": "POSTed to outbound_url: a Vumi JSON user message", "allOf": [message]}
    return {"Message": message, "Event": event, "OutboundMessage": outbound, "Error": _object({"error": text})}
