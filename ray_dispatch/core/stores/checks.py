"""The store contracts as one call each, for your own store classes (``from ray_dispatch.testing import ...``).

A store given as ``store: {class: ...}`` or ``failure_store: {class: ...}``
must behave as the built-in ones do. Check yours in a test::

    from ray_dispatch.testing import check_routing_store

    async def test_my_store_keeps_the_contract():
        await check_routing_store(lambda: MyStore(url="...", prefix=fresh_prefix()))

``make_store`` is called once per rule and must return (or return an
awaitable of) a fresh, empty store; each is closed after its rule. Every rule
runs, and one ``AssertionError`` names each rule that broke and how.

TTLs are checked without racing the clock: a store whose clock can be driven
(``MemoryStore(clock=...)``) passes ``advance`` and the checks move its time;
otherwise they wait, polling, at most ``wait_limit`` seconds per expiry.
"""

from __future__ import annotations

import asyncio
import inspect
import json
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from ray_dispatch.core.harness import make_ack, make_inbound
from ray_dispatch.core.message import TransportEvent, TransportUserMessage
from ray_dispatch.core.stores.failures import FailureRecord, FailureStore
from ray_dispatch.core.stores.routing import RoutingStore

__all__ = ["check_failure_store", "check_routing_store"]

Advance = Callable[[float], object]
"""Moves a store's clock forward by that many seconds (may be async)."""

JSON_VALUES: list[Any] = [
    "sms-app",
    "",
    "ünïcødé ✓",
    0,
    -17,
    2**62,
    3.25,
    True,
    False,
    None,
    [1, "two", [3.0], {"four": None}],
    {"nested": {"list": [1, 2], "flag": False}, "empty": {}},
]
UNUSUAL_KEYS = ["a:b:c", "with space", "glob*?[x]", "ключ", "return_route:" + "f" * 32]


def _expect(condition: bool, message: str) -> None:
    if not condition:
        raise AssertionError(message)


def _equal(actual: Any, expected: Any, what: str) -> None:
    _expect(actual == expected, f"{what}: expected {expected!r}, got {actual!r}")


async def _raises(error: type[Exception], fragment: str, call: Awaitable[Any], what: str) -> None:
    try:
        result = await call
    except error as exc:
        _expect(fragment in str(exc), f"{what}: {error.__name__} should name {fragment}, got {exc}")
        return
    raise AssertionError(f"{what}: expected {error.__name__}, got {result!r}")


class _Time:
    """Waits for expiry: by moving the store's clock (``advance``) or by polling real time."""

    def __init__(self, ttl: float, advance: Advance | None, wait_limit: float) -> None:
        self.ttl = ttl
        self._advance = advance
        self._step = ttl / 4
        self._polls = max(1, int(wait_limit / self._step))

    async def pass_step(self) -> None:
        if self._advance is None:
            await asyncio.sleep(self._step)
            return
        moved = self._advance(self._step)
        if inspect.isawaitable(moved):
            await moved

    async def until_absent(self, store: RoutingStore, key: str) -> None:
        for _ in range(self._polls):
            if await store.get(key, "<absent>") == "<absent>":
                return
            await self.pass_step()
        raise AssertionError(f"{key!r} is still there long after its ttl of {self.ttl} s")


# -- the routing store -----------------------------------------------------------


async def _absent_key_gives_default(store: RoutingStore, time: _Time) -> None:
    _equal(await store.get("nothing"), None, "get of an absent key")
    _equal(await store.get("nothing", "fallback"), "fallback", "get of an absent key with a default")


async def _values_round_trip(store: RoutingStore, time: _Time) -> None:
    for index, value in enumerate(JSON_VALUES):
        await store.set(f"k{index}", value)
        read = await store.get(f"k{index}", "<absent>")
        _expect(read == value and type(read) is type(value), f"set then get of {value!r} gave {read!r}")


async def _set_overwrites(store: RoutingStore, time: _Time) -> None:
    await store.set("k", "first")
    await store.set("k", {"second": 2})
    _equal(await store.get("k"), {"second": 2}, "get after a second set")


async def _values_are_copies(store: RoutingStore, time: _Time) -> None:
    value = {"groups": ["a"]}
    await store.set("k", value)
    value["groups"].append("changed after set")
    read = await store.get("k")
    read["groups"].append("changed after get")
    _equal(await store.get("k"), {"groups": ["a"]}, "stored value after the caller changed its objects")


async def _delete_reports_whether_key_existed(store: RoutingStore, time: _Time) -> None:
    await store.set("k", 1)
    _equal(await store.delete("k"), True, "delete of a present key")
    _equal(await store.get("k", "gone"), "gone", "get after delete")
    _equal(await store.delete("k"), False, "delete of an absent key")


async def _many_at_once_agree_with_one_at_a_time(store: RoutingStore, time: _Time) -> None:
    values = {f"many{index}": value for index, value in enumerate(JSON_VALUES)}
    await store.set_many(values)
    for key, value in values.items():
        _equal(await store.get(key, "<absent>"), value, f"get of {key!r} after set_many")
    await store.set("one", "by set")
    keys = ["one", "absent", *values]
    _equal(await store.get_many(keys), ["by set", None, *values.values()], "get_many of set and absent keys")
    _equal(await store.get_many([]), [], "get_many of no keys")


async def _set_many_ttl_expires_the_values(store: RoutingStore, time: _Time) -> None:
    await store.set_many({"short1": 1, "short2": 2}, ttl=time.ttl)
    await store.set("long", "stays")
    _equal(await store.get_many(["short1", "short2"]), [1, 2], "get_many right after set_many with a ttl")
    await time.until_absent(store, "short1")
    await time.until_absent(store, "short2")
    _equal(await store.get("long"), "stays", "a key set without ttl, after set_many's ttl passed")


async def _unusual_keys_are_keys_like_any_other(store: RoutingStore, time: _Time) -> None:
    for key in UNUSUAL_KEYS:
        await store.set(key, key)
        await store.set(key + "-other", "other")
        _equal(await store.get(key), key, f"get of key {key!r}")
        _equal(await store.delete(key), True, f"delete of key {key!r}")
        _equal(await store.get(key + "-other"), "other", f"neighbour of key {key!r} after its delete")


async def _ttl_expires_the_value(store: RoutingStore, time: _Time) -> None:
    await store.set("short", "v", ttl=time.ttl)
    await store.set("long", "v", ttl=3600)
    _equal(await store.get("short"), "v", f"get right after a set with ttl={time.ttl}")
    await time.until_absent(store, "short")
    _equal(await store.get("long"), "v", "a key with a longer ttl after a shorter one expired")


async def _set_without_ttl_removes_an_earlier_ttl(store: RoutingStore, time: _Time) -> None:
    await store.set("k", "expiring", ttl=time.ttl)
    await store.set("k", "kept")
    await store.set("sentinel", 1, ttl=time.ttl)  # set later, so it expires after k's old ttl
    await time.until_absent(store, "sentinel")
    _equal(await store.get("k", "<absent>"), "kept", "a key set again without ttl, after its first ttl")


async def _non_positive_ttl_removes_the_value(store: RoutingStore, time: _Time) -> None:
    for ttl in (0, -1.5):
        await store.set("k", "old")
        await store.set("k", "new", ttl=ttl)
        _equal(await store.get("k", "gone"), "gone", f"get after a set with ttl={ttl}")


async def _incr_counts_from_zero(store: RoutingStore, time: _Time) -> None:
    _equal(
        [await store.incr("n"), await store.incr("n", 10), await store.incr("n", -12)], [1, 11, -1], "incr of a new key"
    )
    _equal(await store.get("n"), -1, "get of a counter")
    await store.set("m", 41)
    _equal(await store.incr("m"), 42, "incr of a set integer")


async def _incr_keeps_the_ttl(store: RoutingStore, time: _Time) -> None:
    await store.set("n", 5, ttl=time.ttl)
    _equal(await store.incr("n"), 6, "incr of a key with a ttl")
    await time.until_absent(store, "n")
    _equal(await store.incr("n"), 1, "incr after the counter expired")
    await store.set("sentinel", 1, ttl=time.ttl)
    await time.until_absent(store, "sentinel")
    _equal(await store.get("n", "<absent>"), 1, "a counter started again without ttl, after a ttl passed")


async def _incr_refuses_what_is_not_an_integer(store: RoutingStore, time: _Time) -> None:
    for value in ["5", 2.5, True, [1], {"n": 1}, None]:
        await store.set("k", value)
        await _raises(TypeError, "'k'", store.incr("k"), f"incr of a key holding {value!r}")
        _equal(await store.get("k"), value, f"value {value!r} after a refused incr")
    for amount in ["1", 1.5, True]:
        await _raises(TypeError, "amount", store.incr("a", amount), f"incr by {amount!r}")  # type: ignore[arg-type]
        _equal(await store.get("a"), None, f"key after a refused incr by {amount!r}")


async def _incr_is_atomic(store: RoutingStore, time: _Time) -> None:
    tasks, per_task = 50, 20

    async def bump() -> list[int]:
        return [await store.incr("counter") for _ in range(per_task)]

    results = await asyncio.gather(*(bump() for _ in range(tasks)))
    seen = sorted(n for batch in results for n in batch)
    _expect(seen == list(range(1, tasks * per_task + 1)), "concurrent incr handed out a value twice or skipped one")
    _equal(await store.get("counter"), tasks * per_task, "counter after concurrent incr")


ROUTING_RULES = [
    _absent_key_gives_default,
    _values_round_trip,
    _set_overwrites,
    _values_are_copies,
    _delete_reports_whether_key_existed,
    _unusual_keys_are_keys_like_any_other,
    _many_at_once_agree_with_one_at_a_time,
    _set_many_ttl_expires_the_values,
    _ttl_expires_the_value,
    _set_without_ttl_removes_an_earlier_ttl,
    _non_positive_ttl_removes_the_value,
    _incr_counts_from_zero,
    _incr_keeps_the_ttl,
    _incr_refuses_what_is_not_an_integer,
    _incr_is_atomic,
]


async def check_routing_store(
    make_store: Callable[[], Any], *, ttl: float = 1.0, advance: Advance | None = None, wait_limit: float = 30.0
) -> None:
    """Check that stores from ``make_store`` keep the ``RoutingStore`` contract.

    Args:
        make_store: returns (or returns an awaitable of) a fresh, empty store; called once per rule.
        ttl: the TTL, in seconds, the expiry rules set (long enough that a value
            is still there when read right after it was set).
        advance: moves the stores' clock forward by that many seconds (sync or
            async); without it the expiry rules wait in real time.
        wait_limit: the longest wait, in seconds, for one value to expire.

    Raises:
        AssertionError: names every rule the store broke, and how.
    """
    await _run("routing store", ROUTING_RULES, make_store, _Time(ttl, advance, wait_limit))


# -- the failure store -----------------------------------------------------------


def _record(direction: str = "inbound", endpoint: str | None = "sms", **fields: Any) -> FailureRecord:
    message = fields.pop("message", None) or make_inbound("hi", transport_name=endpoint or "sms")
    return FailureRecord(reason="no route", direction=direction, endpoint=endpoint, message=message, **fields)  # type: ignore[arg-type]


def _ids(records: list[FailureRecord]) -> list[str]:
    return [r.failure_id for r in records]


async def _add_get_and_count(store: FailureStore, max_records: int | None) -> None:
    added = await store.add(_record(error_type="NoRoute", stage="route"))
    got = await store.get(added.failure_id)
    _equal(got.to_dict(), added.to_dict(), "get of an added record")
    _expect(isinstance(got.message, TransportUserMessage), f"record's message came back as {type(got.message)}")
    _equal(await store.count(), 1, "count after one add")


async def _get_of_unknown_id_raises_key_error(store: FailureStore, max_records: int | None) -> None:
    await _raises(KeyError, "'nope'", store.get("nope"), "get of an unknown failure id")


async def _list_is_oldest_first_and_filters(store: FailureStore, max_records: int | None) -> None:
    a = await store.add(_record("inbound", "sms"))
    b = await store.add(_record("outbound", "app1"))
    c = await store.add(_record("inbound", "ussd"))
    d = await store.add(_record("event", "sms", message=make_ack("m1")))
    _equal(_ids(await store.list()), _ids([a, b, c, d]), "list (oldest first)")
    _equal(_ids(await store.list(direction="inbound")), _ids([a, c]), "list(direction='inbound')")
    _equal(_ids(await store.list(endpoint="sms")), _ids([a, d]), "list(endpoint='sms')")
    _equal(_ids(await store.list(direction="inbound", endpoint="sms")), _ids([a]), "list of direction and endpoint")
    _equal(_ids(await store.list(limit=2)), _ids([a, b]), "list(limit=2)")
    _equal(await store.list(direction="outbound", endpoint="sms"), [], "list matching nothing")
    events = await store.list(direction="event")
    _expect(bool(events) and isinstance(events[0].message, TransportEvent), "an event's record lost its event")


async def _adding_the_same_id_replaces_in_place(store: FailureStore, max_records: int | None) -> None:
    first = await store.add(_record())
    second = await store.add(_record())
    first.attempts = 3
    await store.add(first)
    listed = [(r.failure_id, r.attempts) for r in await store.list()]
    _equal(listed, [(first.failure_id, 3), (second.failure_id, 1)], "list after adding a known id again")


async def _remove_and_purge(store: FailureStore, max_records: int | None) -> None:
    kept = [await store.add(_record()) for _ in range(4)]
    removed = await store.remove([kept[0].failure_id, kept[2].failure_id, "unknown"])
    _equal(removed, 2, "remove of two known ids and one unknown")
    _equal(_ids(await store.list()), _ids([kept[1], kept[3]]), "list after remove")
    _equal(await store.remove([]), 0, "remove of no ids")
    _equal(await store.purge(), 2, "purge")
    _equal((await store.list(), await store.count()), ([], 0), "list and count after purge")


async def _bound_drops_the_oldest(store: FailureStore, max_records: int | None) -> None:
    if max_records is None:
        return
    added = [await store.add(_record()) for _ in range(max_records + 2)]
    _equal(_ids(await store.list()), _ids(added[2:]), f"list after {max_records + 2} adds to a store of {max_records}")


async def _raw_payloads_stay_inspectable(store: FailureStore, max_records: int | None) -> None:
    payloads: list[Any] = [b"\xff\xfe not utf-8", {1: "int key", (2, 3): "tuple key", "ok": float("nan")}, 12345]
    for payload in payloads:
        added = await store.add(_record(message=payload, stage="validate"))
        got = (await store.get(added.failure_id)).to_dict()
        _equal(got["message_kind"], "raw", f"message_kind of a record of raw payload {payload!r}")
        _equal(got["message"], added.to_dict()["message"], f"raw payload {payload!r} read back")
        json.dumps(got)


FAILURE_RULES = [
    _add_get_and_count,
    _get_of_unknown_id_raises_key_error,
    _list_is_oldest_first_and_filters,
    _adding_the_same_id_replaces_in_place,
    _remove_and_purge,
    _bound_drops_the_oldest,
    _raw_payloads_stay_inspectable,
]


async def check_failure_store(make_store: Callable[[], Any], *, max_records: int | None = None) -> None:
    """Check that stores from ``make_store`` keep the ``FailureStore`` contract.

    Args:
        make_store: returns (or returns an awaitable of) a fresh, empty store; called once per rule.
        max_records: the stores' bound, if they have one small enough to fill
            (the bound rule adds ``max_records + 2`` records); None skips that rule.

    Raises:
        AssertionError: names every rule the store broke, and how.
    """
    await _run("failure store", FAILURE_RULES, make_store, max_records)


# -- running the rules -----------------------------------------------------------


async def _run(what: str, rules: Sequence[Callable[[Any, Any], Awaitable[None]]], make_store: Any, extra: Any) -> None:
    broken = []
    for rule in rules:
        name = rule.__name__.strip("_").replace("_", " ")
        store = make_store()
        if inspect.isawaitable(store):
            store = await store
        try:
            await rule(store, extra)
        except Exception as exc:
            reason = str(exc) if isinstance(exc, AssertionError) else f"raised {type(exc).__name__}: {exc}"
            broken.append(f"{name}: {reason}")
        finally:
            await store.close()
    if broken:
        raise AssertionError(f"{len(broken)} of {len(rules)} {what} rules broken: " + "; ".join(broken))
