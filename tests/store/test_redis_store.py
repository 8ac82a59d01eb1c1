"""RedisStore beyond the shared contract: sharing, outages, restarts, secrets, config."""

from __future__ import annotations

import asyncio
import os
import signal
import time
import warnings
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
import redis.asyncio as aioredis
from redis_server import RedisServer

from ray_dispatch.core.config import load_config
from ray_dispatch.core.dispatcher import Dispatcher, build_store
from ray_dispatch.core.errors import ConfigError, StoreError, StoreUnavailable
from ray_dispatch.core.stores.redis_routing import RedisStore, mask_url
from ray_dispatch.testing import MemoryOutbox

PASSWORD = "s3cret-Pa55word"
HANG_LIMIT = 30.0
"""Seconds after which a store call counts as hung (what ends it is asserted from its error, not timed)."""


async def eventually(check: Callable[[], Awaitable[Any]], limit: float = 5.0) -> Any:
    """Retry ``check`` until it stops raising StoreUnavailable; fail after ``limit`` seconds."""
    deadline = time.monotonic() + limit
    while True:
        try:
            return await check()
        except StoreUnavailable:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.05)


# -- sharing and namespaces ---------------------------------------------------


async def test_stores_with_the_same_prefix_share_state(redis_server: RedisServer, prefix: str) -> None:
    first, second = RedisStore(redis_server.url, prefix=prefix), RedisStore(redis_server.url, prefix=prefix)
    try:
        await first.set("return_route:m1", "app1")
        assert await second.get("return_route:m1") == "app1"
        assert [await first.incr("rr"), await second.incr("rr"), await first.incr("rr")] == [1, 2, 3]
        assert await second.delete("return_route:m1") is True
        assert await first.get("return_route:m1") is None
    finally:
        await first.close()
        await second.close()


async def test_different_prefixes_do_not_see_each_other(redis_server: RedisServer, prefix: str) -> None:
    mine, theirs = RedisStore(redis_server.url, prefix=prefix), RedisStore(redis_server.url, prefix=prefix + "-b")
    try:
        await mine.set("k", "mine")
        await theirs.set("k", "theirs")
        assert await mine.incr("n") == 1
        assert await theirs.incr("n") == 1
        assert (await mine.get("k"), await theirs.get("k")) == ("mine", "theirs")
        assert await mine.clear() == 2
        assert await mine.get("k") is None
        assert await theirs.get("k") == "theirs"
    finally:
        await mine.close()
        await theirs.close()


async def test_keys_are_stored_under_the_prefix_as_json(redis_server: RedisServer, prefix: str) -> None:
    store = RedisStore(redis_server.url, prefix=prefix)
    raw = aioredis.Redis.from_url(redis_server.url)
    try:
        await store.set("user_grouping:user:+2783", {"group": "a"}, ttl=30)
        assert await raw.get(f"{prefix}:user_grouping:user:+2783") == b'{"group":"a"}'
        assert 0 < await raw.pttl(f"{prefix}:user_grouping:user:+2783") <= 30_000
        await raw.set(f"{prefix}:foreign", b"not json {")
        with pytest.raises(StoreError, match="'foreign' does not hold JSON"):
            await store.get("foreign")
    finally:
        await raw.aclose()
        await store.close()


async def test_non_json_value_is_refused_naming_the_key(redis_server: RedisServer, prefix: str) -> None:
    store = RedisStore(redis_server.url, prefix=prefix)
    try:
        with pytest.raises(TypeError, match="'k' is not JSON-serialisable"):
            await store.set("k", {"when": object()})
        assert await store.get("k") is None
    finally:
        await store.close()


# -- outages ------------------------------------------------------------------


async def test_operations_raise_store_unavailable_promptly_while_redis_is_down(
    own_redis: RedisServer, prefix: str
) -> None:
    store = RedisStore(own_redis.url, prefix=prefix, operation_timeout=60)
    try:
        await store.set("k", "before")
        own_redis.stop(keep_dir=True)
        calls: list[Callable[[], Awaitable[Any]]] = [
            lambda: store.get("k"),
            lambda: store.set("k", "during"),
            lambda: store.incr("n"),
            lambda: store.delete("k"),
        ]
        for call in calls:
            with pytest.raises(StoreUnavailable) as info:
                await asyncio.wait_for(call(), HANG_LIMIT)  # a TimeoutError here means it hung
            assert own_redis.url in str(info.value)
            assert "'k'" in str(info.value) or "'n'" in str(info.value)
            # Prompt: the refused connection ended it after the bounded retries, not the 60 s deadline.
            assert "no answer within" not in str(info.value) and "ConnectionError" in str(info.value)
    finally:
        await store.close()


async def test_store_reconnects_after_redis_restarts(own_redis: RedisServer, prefix: str) -> None:
    store = RedisStore(own_redis.url, prefix=prefix)
    try:
        assert await store.incr("n") == 1
        own_redis.restart()  # same port, empty dataset: persistence is off
        assert await eventually(lambda: store.incr("n")) == 1
        await store.set("k", "after")
        assert await store.get("k") == "after"
    finally:
        await store.close()


async def test_store_recovers_when_redis_comes_back_after_an_outage(own_redis: RedisServer, prefix: str) -> None:
    store = RedisStore(own_redis.url, prefix=prefix)
    try:
        await store.set("k", "before")
        own_redis.kill()
        with pytest.raises(StoreUnavailable):
            await store.get("k")
        own_redis.restart()
        await eventually(lambda: store.set("k", "after"))
        assert await store.get("k") == "after"
    finally:
        await store.close()


async def test_a_hung_server_gives_store_unavailable_within_the_operation_timeout(
    own_redis: RedisServer, prefix: str
) -> None:
    # Only the operation deadline can end the call before HANG_LIMIT: each socket read may take 60 s.
    store = RedisStore(
        own_redis.url, prefix=prefix, operation_timeout=0.5, socket_timeout=60, retry={"max_attempts": 2}
    )
    assert own_redis.pid is not None
    try:
        await store.set("k", "v")
        os.kill(own_redis.pid, signal.SIGSTOP)
        try:
            with pytest.raises(StoreUnavailable, match=r"is unavailable .*no answer within 0\.5 s"):
                await asyncio.wait_for(store.get("k"), HANG_LIMIT)  # a TimeoutError here means it hung
        finally:
            os.kill(own_redis.pid, signal.SIGCONT)
        assert await eventually(lambda: store.get("k")) == "v"
    finally:
        await store.close()


# -- secrets ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "masked"),
    [
        ("redis://:pw@host:6379/0", "redis://:***@host:6379/0"),
        ("redis://user:pw@host:6379/0", "redis://user:***@host:6379/0"),
        ("rediss://user:p%40ss@host/1", "rediss://user:***@host/1"),
        ("redis://host:6379/0?password=pw&db=2", "redis://host:6379/0?password=***&db=2"),
        ("unix:///run/redis.sock?PASSWORD=pw", "unix:///run/redis.sock?PASSWORD=***"),
        ("redis://user@host:6379", "redis://user@host:6379"),
        ("redis://127.0.0.1:6390/0", "redis://127.0.0.1:6390/0"),
    ],
)
def test_mask_url_hides_passwords(url: str, masked: str) -> None:
    assert mask_url(url) == masked


def test_mask_url_of_unparseable_url_shows_nothing_of_it() -> None:
    assert "pw" not in mask_url("redis://:pw@[::1")


async def test_password_in_url_never_appears_in_errors_or_repr(own_redis: RedisServer, prefix: str) -> None:
    url = f"redis://:{PASSWORD}@127.0.0.1:{own_redis.port}/0"
    store = RedisStore(url, prefix=prefix)
    try:
        assert PASSWORD not in repr(store) and "***" in repr(store)
        own_redis.stop(keep_dir=True)
        with pytest.raises(StoreUnavailable) as info:
            await store.get(PASSWORD)  # even a key equal to the password is masked
        assert PASSWORD not in str(info.value)
        assert f"redis://:***@127.0.0.1:{own_redis.port}/0" in str(info.value)
    finally:
        await store.close()


async def test_password_from_environment_variable(monkeypatch: pytest.MonkeyPatch, prefix: str) -> None:
    monkeypatch.setenv("RAY_DISPATCH_TEST_REDIS_PASSWORD", PASSWORD)
    with RedisServer(password=PASSWORD) as server:
        store = RedisStore(server.url, prefix=prefix, password_env="RAY_DISPATCH_TEST_REDIS_PASSWORD")
        try:
            await store.set("k", "authenticated")
            assert await store.get("k") == "authenticated"
            assert PASSWORD not in repr(store)
        finally:
            await store.close()


async def test_wrong_password_is_unavailable_without_showing_either(
    monkeypatch: pytest.MonkeyPatch, prefix: str
) -> None:
    monkeypatch.setenv("RAY_DISPATCH_TEST_REDIS_PASSWORD", "wrong-" + PASSWORD)
    with RedisServer(password=PASSWORD) as server:
        store = RedisStore(
            server.url, prefix=prefix, password_env="RAY_DISPATCH_TEST_REDIS_PASSWORD", retry={"max_attempts": 1}
        )
        try:
            with pytest.raises(StoreUnavailable, match="AuthenticationError") as info:
                await store.get("k")
            assert PASSWORD not in str(info.value)
        finally:
            await store.close()


async def test_password_from_file(tmp_path: Any, prefix: str) -> None:
    secret = tmp_path / "redis-password"
    secret.write_text(PASSWORD + "\n")
    with RedisServer(password=PASSWORD) as server:
        store = RedisStore(server.url, prefix=prefix, password_file=str(secret))
        try:
            assert await store.incr("n") == 1
        finally:
            await store.close()


def test_missing_password_variable_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RAY_DISPATCH_NO_SUCH_VARIABLE", raising=False)
    with pytest.raises(ConfigError, match="password_env: environment variable 'RAY_DISPATCH_NO_SUCH_VARIABLE'"):
        RedisStore("redis://127.0.0.1:1/0", password_env="RAY_DISPATCH_NO_SUCH_VARIABLE")


def test_password_in_url_and_environment_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAY_DISPATCH_TEST_REDIS_PASSWORD", "other")
    with pytest.raises(ConfigError, match="not also give password_env") as info:
        RedisStore(f"redis://:{PASSWORD}@127.0.0.1:1/0", password_env="RAY_DISPATCH_TEST_REDIS_PASSWORD")
    assert PASSWORD not in str(info.value)


# -- config -------------------------------------------------------------------


def dispatcher_config(store: dict[str, Any]) -> dict[str, Any]:
    return {
        "router_class": "routers.simple.SimpleDispatchRouter",
        "transport_names": ["sms"],
        "exposed_names": ["app"],
        "route_mappings": {"sms": "app"},
        "store": store,
    }


async def test_dispatcher_config_store_block_builds_a_redis_store(redis_server: RedisServer, prefix: str) -> None:
    config = dispatcher_config(
        {"class": "ray_dispatch.redis_store.RedisStore", "url": redis_server.url, "prefix": prefix}
    )
    dispatcher = Dispatcher(config, MemoryOutbox())
    assert isinstance(dispatcher.store, RedisStore)
    assert (dispatcher.store.url, dispatcher.store.prefix) == (redis_server.url, prefix)
    await dispatcher.store.set("k", "v")
    assert await dispatcher.store.get("k") == "v"
    await dispatcher.store.close()


@pytest.mark.parametrize(
    ("options", "fragment"),
    [
        ({"retry": {"max_attempts": 0}}, "retry.max_attempts"),
        ({"retry": {"jitter": 2}}, "retry.jitter"),
        ({"operation_timeout": 0}, "operation_timeout"),
        ({"prefix": ""}, "prefix"),
        ({"url": 6379}, "url"),
        ({"url": "http://127.0.0.1/"}, "is not a usable Redis URL"),
    ],
)
def test_bad_store_options_are_config_errors_naming_the_key(options: dict[str, Any], fragment: str) -> None:
    spec = {"class": "ray_dispatch.redis_store.RedisStore", **options}
    with pytest.raises(ConfigError, match=fragment):
        build_store(load_config(dispatcher_config(spec)))


def test_unknown_store_option_is_refused() -> None:
    with pytest.raises(ConfigError, match="retrys"):
        RedisStore("redis://127.0.0.1:1/0", retrys=3)


# -- retries ------------------------------------------------------------------


class _HangUpServer:
    """A loopback TCP server that counts connections and closes each at once (a broken Redis)."""

    def __init__(self) -> None:
        self.connections = 0
        self.server: asyncio.Server | None = None

    async def __aenter__(self) -> str:
        async def hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            self.connections += 1
            writer.close()

        self.server = await asyncio.start_server(hang_up, "127.0.0.1", 0)
        port = self.server.sockets[0].getsockname()[1]
        return f"redis://127.0.0.1:{port}/0"

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()
        await self.server.wait_closed()


@pytest.mark.parametrize(
    ("options", "tries"),
    [
        ({"retry": {"max_attempts": 4, "initial_delay": 0.01, "jitter": 0}}, 4),
        ({"retry": {"max_attempts": 1}}, 1),
        ({"retries": 2, "backoff_base": 0.005}, 3),  # the old keys: 2 retries after the first try
    ],
)
async def test_a_command_is_tried_retry_max_attempts_times(options: dict[str, Any], tries: int, prefix: str) -> None:
    peer = _HangUpServer()
    async with peer as url:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            store = RedisStore(url, prefix=prefix, **options)
        try:
            with pytest.raises(StoreUnavailable):
                await store.get("k")
        finally:
            await store.close()
    assert peer.connections == tries


def test_old_retry_keys_map_into_the_retry_block_with_a_warning() -> None:
    with pytest.warns(FutureWarning, match="'retries' is deprecated; write 'retry: {max_attempts: 5}'"):
        store = RedisStore("redis://127.0.0.1:1/0", retries=4, backoff_base=0.1, backoff_cap=1.0)
    retry = store.connection.options.retry
    assert (retry.max_attempts, retry.initial_delay, retry.max_delay, retry.jitter) == (5, 0.2, 1.0, 1.0)


def test_a_partial_retry_block_keeps_the_stores_other_defaults() -> None:
    retry = RedisStore("redis://127.0.0.1:1/0", retry={"max_attempts": 5}).connection.options.retry
    assert (retry.max_attempts, retry.initial_delay, retry.max_delay, retry.jitter) == (5, 0.1, 0.5, 1.0)


def test_an_old_retry_key_beside_its_new_one_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"'retries' is the old name of 'retry\.max_attempts'"):
        RedisStore("redis://127.0.0.1:1/0", retries=4, retry={"max_attempts": 2})
