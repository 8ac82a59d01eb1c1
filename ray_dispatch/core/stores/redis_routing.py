"""Durable, shared routing store on Redis (redis-py asyncio).

Dispatchers configured with the same ``url`` and ``prefix`` share return
routes, user groups and whatever routers keep, and find them again after a
restart. In a dispatcher config::

    store:
      class: ray_dispatch.redis_store.RedisStore
      url: redis://127.0.0.1:6390/0
      prefix: mydeploy
      password_env: REDIS_PASSWORD   # optional: the password comes from the environment

Connection problems raise ``StoreUnavailable`` after a bounded number of
reconnect attempts (with jittered exponential backoff) and an overall
per-operation deadline, so a dead server never hangs the dispatcher; once the
server is back the next operation reconnects. A circuit breaker (option
``breaker``) makes operations fail at once while the server is known to be
down, probing it again after a cool-down. A password, from the URL, an
environment variable or a file, never appears in errors or ``repr``: the URL
is shown with ``***`` in its place.
"""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, TypeVar
from urllib.parse import unquote, urlsplit, urlunsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.connection import parse_url
from redis.asyncio.retry import Retry
from redis.backoff import AbstractBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from ray_dispatch.core.errors import ConfigError, StoreError, StoreUnavailable, format_validation_error
from ray_dispatch.core.retry import OldKeys, RetryPolicy, fill_retry_block
from ray_dispatch.core.secrets import Secret, read_secret
from ray_dispatch.core.stores.breaker import BreakerPolicy, CircuitBreaker, CircuitOpen
from ray_dispatch.core.stores.routing import JSONValue, RoutingStore

__all__ = ["RedisConnection", "RedisOptions", "RedisStore", "mask_url"]

DEFAULT_URL = "redis://127.0.0.1:6379/0"
MASK = "***"
T = TypeVar("T")

REDIS_RETRY = RetryPolicy(initial_delay=0.1, max_delay=0.5, jitter=1.0, max_attempts=3)
"""A Redis store's retries of one command unless ``retry:`` says otherwise."""

OLD_RETRY_KEYS: OldKeys = {
    "retries": ("max_attempts", lambda n: n + 1),
    "backoff_base": ("initial_delay", lambda s: 2 * s),  # redis-py's first wait was up to 2 * base
    "backoff_cap": "max_delay",
}
"""The store keys from before ``retry:`` and how each maps into it."""


def mask_url(url: str) -> str:
    """Return ``url`` with its password (``user:pw@`` or ``?password=``) replaced by ``***``."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return f"<unparseable Redis URL, {len(url)} characters>"
    netloc = parts.netloc
    userinfo, at, hostport = netloc.rpartition("@")
    if at and ":" in userinfo:
        netloc = f"{userinfo.split(':', 1)[0]}:{MASK}@{hostport}"
    query = "&".join(
        f"{item.partition('=')[0]}={MASK}" if unquote(item.partition("=")[0]).lower() == "password" else item
        for item in parts.query.split("&")
    )
    if "://" not in url:
        return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))
    return (
        f"{parts.scheme}://{netloc}{parts.path}"
        + (f"?{query}" if query else "")
        + (f"#{parts.fragment}" if parts.fragment else "")
    )


class RedisOptions(BaseModel):
    """Connection options of the Redis stores (everything but the URL), validated.

    Attributes:
        prefix: namespace of every key (one per deployment): ``<prefix>:<key>``.
        password_env: name of an environment variable holding the password.
        password_file: path of a file holding the password (surrounding whitespace ignored).
        connect_timeout: seconds to wait for a TCP connect.
        socket_timeout: seconds to wait for a reply.
        retry: tries of one command after a connection error or timeout, and the
            waits between them (``RetryPolicy``; default 3 tries, full jitter on
            0.1 s doubling up to 0.5 s). The old keys ``retries`` (retries after
            the first try), ``backoff_base`` (half the first wait) and
            ``backoff_cap`` still work, with a warning.
        operation_timeout: overall deadline of one operation, retries included.
        breaker: the circuit breaker (``BreakerPolicy``): after ``failure_threshold``
            operations in a row could not reach the server (default 3), every
            operation fails at once with ``StoreUnavailable`` for
            ``reset_timeout`` seconds (default 2); then one operation probes,
            and its success closes the breaker.
        max_connections: size of the connection pool.
        pool_timeout: seconds to wait for a free pooled connection.
    """

    model_config = ConfigDict(extra="forbid")

    prefix: str = Field("ray_dispatch", min_length=1)
    password_env: str | None = Field(None, min_length=1)
    password_file: str | None = Field(None, min_length=1)
    connect_timeout: float = Field(1.0, gt=0)
    socket_timeout: float = Field(2.0, gt=0)
    retry: RetryPolicy = REDIS_RETRY
    operation_timeout: float = Field(5.0, gt=0)
    breaker: BreakerPolicy = BreakerPolicy()
    max_connections: int = Field(32, ge=1)
    pool_timeout: float = Field(2.0, gt=0)

    @model_validator(mode="before")
    @classmethod
    def _complete_retry_block(cls, data: Any) -> Any:
        return fill_retry_block(data, REDIS_RETRY, "store", OLD_RETRY_KEYS)


class _PolicyBackoff(AbstractBackoff):
    """redis-py's backoff interface over a ``RetryPolicy`` (redis-py counts the failures)."""

    def __init__(self, policy: RetryPolicy) -> None:
        self.policy = policy

    def compute(self, failures: int) -> float:
        return self.policy.delay(failures)


def _read_password(options: RedisOptions, what: str) -> str | None:
    """Return the password named by ``password_env`` / ``password_file`` (``read_secret``), if either is set."""
    if options.password_env and options.password_file:
        raise ConfigError(f"{what}: give password_env or password_file, not both")
    if options.password_env:
        return read_secret(Secret(env=options.password_env), f"{what}.password_env")
    if options.password_file:
        return read_secret(Secret(file=options.password_file), f"{what}.password_file")
    return None


class RedisConnection:
    """A lazily created redis-py asyncio client with bounded retries and safe errors.

    Shared machinery of ``RedisStore`` and ``RedisFailureStore``: it builds
    the connection pool on first use (in the running event loop), maps
    redis-py errors to ``StoreUnavailable`` / ``StoreError`` naming the masked
    URL, and scrubs the password from every message it produces.

    Args:
        url: ``redis://[[user]:password@]host:port/db``, ``rediss://`` or ``unix://``.
        what: how errors name this store (e.g. ``"routing store"``).
        options: ``RedisOptions`` fields as keywords.

    Raises:
        ConfigError: an option is invalid or unknown, the URL is malformed, or
            the password is given twice or its variable/file is missing.
    """

    def __init__(self, url: str, what: str, **options: Any) -> None:
        self.what = what
        try:
            self.options = RedisOptions.model_validate(options)
        except ValidationError as exc:
            raise ConfigError(format_validation_error(exc, f"{what} options", RedisOptions)) from None
        if not isinstance(url, str):
            raise ConfigError(f"{what}.url: expected a redis:// URL string, got {type(url).__name__}")
        self.url = mask_url(url)
        try:
            url_password = parse_url(url).get("password")
        except (ValueError, TypeError) as exc:
            raise ConfigError(f"{what}.url: {self.url!r} is not a usable Redis URL ({exc})") from None
        password = _read_password(self.options, what)
        if password is not None and url_password:
            raise ConfigError(f"{what}: {self.url} carries a password; do not also give password_env/password_file")
        self._secrets = [s for s in (url_password, password) if s]
        self.url = self.scrub(self.url)
        self._raw_url = url
        self._password = password
        self._client: Redis | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.breaker = CircuitBreaker(self.options.breaker)
        """Whether the server is reachable, as the last operations found it (``state()``)."""

    def scrub(self, text: str) -> str:
        """Return ``text`` with every known password replaced by ``***``."""
        for secret in self._secrets:
            text = text.replace(secret, MASK)
        return text

    def key(self, *parts: str) -> str:
        """Return the namespaced Redis key ``<prefix>:<part>:<part>...``."""
        return ":".join((self.options.prefix, *parts))

    def client(self) -> Redis:
        """Return the client for the running event loop, creating its pool on first use."""
        loop = asyncio.get_running_loop()
        if self._client is None or self._loop is not loop:
            opts = self.options
            extra = {} if self._password is None else {"password": self._password}
            pool = BlockingConnectionPool.from_url(
                self._raw_url,
                max_connections=opts.max_connections,
                timeout=opts.pool_timeout,
                socket_connect_timeout=opts.connect_timeout,
                socket_timeout=opts.socket_timeout,
                retry=Retry(_PolicyBackoff(opts.retry), opts.retry.max_attempts - 1),
                **extra,
            )
            self._client, self._loop = Redis.from_pool(pool), loop
        return self._client

    async def run(self, command: str, key: str | None, call: Callable[[Redis], Awaitable[T]]) -> T:
        """Run ``call(client)`` within the operation deadline, mapping redis-py errors.

        ``command`` and ``key`` only name the operation in error messages.

        Raises:
            StoreUnavailable: the server could not be reached or did not answer in time,
                or, at once, the circuit breaker is open (``breaker`` option).
            StoreError: the server refused the command.
        """
        try:
            self.breaker.before_call()
        except CircuitOpen as exc:
            raise StoreUnavailable(
                self.scrub(f"{self.what} at {self.url} is unavailable ({_operation(command, key)}): {exc}")
            ) from None
        try:
            result = await _within(call(self.client()), self.options.operation_timeout)
        except (TimeoutError, RedisConnectionError, RedisTimeoutError, OSError) as exc:
            cause = self.scrub(
                f"{type(exc).__name__}: {str(exc) or f'no answer within {self.options.operation_timeout} s'}"
            )
            self.breaker.failed(cause)
            raise StoreUnavailable(
                f"{self.what} at {self.url} is unavailable ({self.scrub(_operation(command, key))}): {cause}"
            ) from None
        except RedisError as exc:
            self.breaker.succeeded()  # the server answered
            text = f"{self.what} at {self.url} refused {_operation(command, key)}: {type(exc).__name__}: {exc}"
            raise StoreError(self.scrub(text)) from None
        except BaseException:
            self.breaker.abandoned()
            raise
        self.breaker.succeeded()
        return result

    def state(self) -> dict[str, Any]:
        """The server as the last operations found it: ``{"state": "ok" | "open" | "half-open", ...}``.

        ``ok`` (breaker closed) adds ``failures_in_a_row``; ``open`` and
        ``half-open`` add ``since``, ``next_probe_in`` and ``last_error``; every
        state adds ``url`` (password masked) and ``detail``, one line for people.
        """
        snapshot = self.breaker.snapshot()
        name = "ok" if snapshot["state"] == "closed" else snapshot["state"]
        return {**snapshot, "state": name, "url": self.url, "detail": self.breaker.describe()}

    async def ping(self) -> None:
        """Check the server answers.

        Raises:
            StoreUnavailable: it does not.
        """
        await self.run("PING", None, lambda r: r.ping())

    async def close(self) -> None:
        """Close the connection pool (a later operation opens a new one)."""
        client, self._client, self._loop = self._client, None, None
        if client is not None:
            await client.aclose()

    def __repr__(self) -> str:
        return f"RedisConnection(url={self.url!r}, prefix={self.options.prefix!r})"


async def _within(operation: Awaitable[T], seconds: float) -> T:
    """Await ``operation`` with a deadline (``asyncio.timeout``: no extra task)."""
    async with asyncio.timeout(seconds):
        return await operation


def show_key(key: str) -> str:
    """Return ``repr(key)`` for an error message, cut after 200 characters."""
    return repr(key) if len(key) <= 200 else f"{key[:200]!r}... ({len(key)} characters)"


def _operation(command: str, key: str | None) -> str:
    """Describe a command for an error message."""
    return command if key is None else f"{command} {show_key(key)}"


def _glob_escape(text: str) -> str:
    """Escape Redis glob metacharacters so ``text`` matches itself in SCAN MATCH."""
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)


class RedisStore(RoutingStore):
    """``RoutingStore`` on Redis: JSON values, TTL via ``SET PX``, atomic ``INCRBY``.

    Keys live under ``<prefix>:``, so deployments sharing a server do not see
    each other, and every dispatcher with the same URL and prefix shares state.
    Semantics match ``MemoryStore``: ``incr`` of an absent key starts at 0 and
    keeps an existing key's TTL; a TTL of 0 or less removes the value at once;
    TTLs have millisecond resolution (rounded up). Counters are Redis' signed
    64-bit integers.

    Args:
        url: Redis URL (default ``redis://127.0.0.1:6379/0``); a password in it is masked everywhere.
        prefix: key namespace, one per deployment (default ``ray_dispatch``).
        **options: the other ``RedisOptions`` (``password_env``, ``password_file``,
            timeouts, ``retry``, ``operation_timeout``, pool size).

    Raises:
        ConfigError: on construction, an invalid option (named).
    """

    def __init__(self, url: str = DEFAULT_URL, prefix: str = "ray_dispatch", **options: Any) -> None:
        self.connection = RedisConnection(url, "routing store", prefix=prefix, **options)

    @property
    def url(self) -> str:
        """The server URL, password masked."""
        return self.connection.url

    def _text(self, text: str) -> str:
        return self.connection.scrub(text)

    @property
    def prefix(self) -> str:
        """The key namespace."""
        return self.connection.options.prefix

    async def get(self, key: str, default: JSONValue = None) -> JSONValue:
        """Return the value under ``key``, or ``default`` if absent or expired.

        Raises:
            StoreUnavailable: the server cannot be reached.
            StoreError: the stored value is not JSON (written by something else).
        """
        raw = await self.connection.run("GET", key, lambda r: r.get(self.connection.key(key)))
        if raw is None:
            return default
        try:
            return json.loads(raw)
        except ValueError:
            raise StoreError(
                self._text(f"routing store at {self.url}: key {show_key(key)} does not hold JSON")
            ) from None

    async def get_many(self, keys: Sequence[str]) -> list[JSONValue]:
        """Return the value under each of ``keys`` (None where absent), in order: one ``MGET``.

        Raises:
            StoreUnavailable: the server cannot be reached.
            StoreError: a stored value is not JSON (written by something else).
        """
        if not keys:
            return []
        names = [self.connection.key(key) for key in keys]
        raws = await self.connection.run("MGET", keys[0], lambda r: r.mget(names))
        found: list[JSONValue] = []
        for key, raw in zip(keys, raws, strict=True):
            try:
                found.append(None if raw is None else json.loads(raw))
            except ValueError:
                raise StoreError(
                    self._text(f"routing store at {self.url}: key {show_key(key)} does not hold JSON")
                ) from None
        return found

    async def set_many(self, values: Mapping[str, JSONValue], ttl: float | None = None) -> None:
        """Store every ``key: value`` (as JSON), each expiring after ``ttl`` seconds if given: one pipeline.

        Raises:
            TypeError: a value is not JSON-serialisable (nothing is written).
            StoreUnavailable: the server cannot be reached.
        """
        if not values:
            return
        if ttl is not None and ttl <= 0:
            for key in values:
                await self.set(key, values[key], ttl)
            return
        encoded = {}
        for key, value in values.items():
            try:
                encoded[self.connection.key(key)] = json.dumps(value, separators=(",", ":"))
            except (TypeError, ValueError) as exc:
                raise TypeError(
                    self._text(f"routing store value for key {show_key(key)} is not JSON-serialisable ({exc})")
                ) from None
        px = None if ttl is None else max(1, math.ceil(ttl * 1000))

        async def write(r: Redis) -> None:
            pipe = r.pipeline(transaction=False)
            for name, text in encoded.items():
                pipe.set(name, text, px=px)
            await pipe.execute()

        await self.connection.run("SET", next(iter(values)), write)

    async def set(self, key: str, value: JSONValue, ttl: float | None = None) -> None:
        """Store ``value`` (as JSON) under ``key``, expiring after ``ttl`` seconds if given.

        Raises:
            TypeError: ``value`` is not JSON-serialisable.
            StoreUnavailable: the server cannot be reached.
        """
        try:
            encoded = json.dumps(value, separators=(",", ":"))
        except (TypeError, ValueError) as exc:
            raise TypeError(
                self._text(f"routing store value for key {show_key(key)} is not JSON-serialisable ({exc})")
            ) from None
        name = self.connection.key(key)
        if ttl is not None and ttl <= 0:
            await self.connection.run("DEL", key, lambda r: r.delete(name))
            return
        px = None if ttl is None else max(1, math.ceil(ttl * 1000))
        await self.connection.run("SET", key, lambda r: r.set(name, encoded, px=px))

    async def delete(self, key: str) -> bool:
        """Remove ``key``; return whether it existed.

        Raises:
            StoreUnavailable: the server cannot be reached.
        """
        removed = await self.connection.run("DEL", key, lambda r: r.delete(self.connection.key(key)))
        return bool(removed)

    async def incr(self, key: str, amount: int = 1) -> int:
        """Atomically add ``amount`` to the integer under ``key`` (absent counts as 0; TTL kept).

        Raises:
            TypeError: the stored value, or ``amount``, is not an integer (or the sum leaves 64 bits).
            StoreUnavailable: the server cannot be reached.
        """
        if not isinstance(amount, int) or isinstance(amount, bool):
            raise TypeError(
                self._text(f"routing store incr of {show_key(key)}: amount must be an integer (got {amount!r})")
            )
        name = self.connection.key(key)

        async def incrby(r: Redis) -> int:
            try:
                return int(await r.incrby(name, amount))
            except ResponseError as exc:
                raise TypeError(
                    self._text(f"routing store key {show_key(key)} does not hold a 64-bit integer ({exc})")
                ) from None

        return await self.connection.run("INCRBY", key, incrby)

    async def ping(self) -> None:
        """Check the server answers.

        Raises:
            StoreUnavailable: it does not.
        """
        await self.connection.ping()

    def state(self) -> dict[str, Any]:
        """The circuit breaker's view of the server (``RedisConnection.state``): ``ok``, ``open`` or ``half-open``."""
        return self.connection.state()

    async def clear(self) -> int:
        """Delete every key under this store's prefix; return how many (for tests and resets).

        Raises:
            StoreUnavailable: the server cannot be reached.
        """
        pattern = _glob_escape(self.connection.key("")) + "*"

        async def delete_all(r: Redis) -> int:
            removed = 0
            async for batch in _batches(r.scan_iter(match=pattern, count=500), 500):
                removed += int(await r.delete(*batch))
            return removed

        return await self.connection.run("SCAN+DEL", self.connection.key("*"), delete_all)

    async def close(self) -> None:
        """Close the connection pool."""
        await self.connection.close()

    def __repr__(self) -> str:
        return f"RedisStore(url={self.url!r}, prefix={self.prefix!r})"


async def _batches(items: Any, size: int) -> Any:
    """Group an async iterator's items into lists of at most ``size``."""
    batch: list[Any] = []
    async for item in items:
        batch.append(item)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch
