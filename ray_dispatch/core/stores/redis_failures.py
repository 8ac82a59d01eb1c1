"""Durable, shared failure store on Redis: dead letters that survive restarts.

Records are kept as JSON (``FailureRecord.to_dict``) in a hash
``<prefix>:failures:records``, ordered oldest first by a sorted set
``<prefix>:failures:order`` whose scores come from a counter, so several
dispatchers sharing a prefix append to one ordered list. Adding, ordering and
trimming to ``max_records`` happen in one Lua script (atomic).

While Redis is unreachable or refuses writes, ``add`` does not raise: the record is kept in this
process (at most ``max_pending``; beyond that the oldest pending ones are
evicted and counted in ``pending_dropped``) and written, in order, by the next
call that reaches Redis. Such records are lost only if this process dies
before Redis comes back.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from collections import OrderedDict
from collections.abc import Iterable
from typing import Any

from redis.asyncio import Redis

from ray_dispatch.core.errors import StoreError
from ray_dispatch.core.stores.failures import Direction, FailureRecord, FailureStore
from ray_dispatch.core.stores.redis_routing import DEFAULT_URL, RedisConnection

__all__ = ["RedisFailureStore"]

logger = logging.getLogger(__name__)

# KEYS: records hash, order zset, sequence counter, dropped counter.
# ARGV: failure id, record JSON, max_records. Returns how many old records were trimmed.
_ADD_SCRIPT = """
local seq = redis.call('INCR', KEYS[3])
if redis.call('HSET', KEYS[1], ARGV[1], ARGV[2]) == 1 then
  redis.call('ZADD', KEYS[2], seq, ARGV[1])
end
local over = redis.call('ZCARD', KEYS[2]) - tonumber(ARGV[3])
if over > 0 then
  local old = redis.call('ZRANGE', KEYS[2], 0, over - 1)
  redis.call('ZREMRANGEBYRANK', KEYS[2], 0, over - 1)
  for i = 1, #old do redis.call('HDEL', KEYS[1], old[i]) end
  redis.call('INCRBY', KEYS[4], over)
  return over
end
return 0
"""

_FETCH_BATCH = 500


class RedisFailureStore(FailureStore):
    """``FailureStore`` on Redis, shared by every dispatcher with the same URL and prefix.

    Args:
        url: Redis URL; a password in it is masked everywhere.
        prefix: key namespace, one per deployment (the same as the routing store's is fine).
        max_records: records kept; the oldest are trimmed past it (counted by ``dropped()``).
        max_pending: records kept in this process while Redis is unreachable.
        retry_interval: after ``add`` found Redis unreachable, further ``add`` calls
            keep records pending without trying Redis for this many seconds.
        **options: ``ray_dispatch.core.stores.redis_routing.RedisOptions`` (``password_env``, timeouts, ...).

    Raises:
        ConfigError: on construction, an invalid option (named).
    """

    def __init__(
        self,
        url: str = DEFAULT_URL,
        prefix: str = "ray_dispatch",
        *,
        max_records: int = 100_000,
        max_pending: int = 10_000,
        retry_interval: float = 1.0,
        **options: Any,
    ) -> None:
        self.connection = RedisConnection(url, "failure store", prefix=prefix, **options)
        self.max_records = max_records
        self.max_pending = max_pending
        self.pending_dropped = 0
        self.retry_interval = retry_interval
        self.last_error: str | None = None
        """Why the last ``add`` could not write to Redis (password masked); None once it could."""
        self._retry_after = 0.0
        self._pending: OrderedDict[str, FailureRecord] = OrderedDict()
        conn = self.connection
        self._keys = [conn.key("failures", n) for n in ("records", "order", "seq", "dropped")]

    @property
    def url(self) -> str:
        """The server URL, password masked."""
        return self.connection.url

    @property
    def pending(self) -> int:
        """Records waiting in this process for Redis to come back."""
        return len(self._pending)

    def state(self) -> dict[str, Any]:
        """The circuit breaker's view of Redis (``RedisConnection.state``), plus ``pending`` records kept here."""
        return {**self.connection.state(), "pending": len(self._pending)}

    # -- writing ---------------------------------------------------------------

    async def add(self, record: FailureRecord) -> FailureRecord:
        """Keep ``record`` in Redis, or in this process until Redis takes writes again; return it.

        Never raises for Redis' sake: while Redis is unreachable or refuses
        the write (e.g. out of memory), the record waits in this process,
        ``last_error`` says why, and one warning is logged per outage.
        """
        self._pending[record.failure_id] = record
        self._pending.move_to_end(record.failure_id)
        while len(self._pending) > self.max_pending:
            self._pending.popitem(last=False)
            self.pending_dropped += 1
        if time.monotonic() < self._retry_after:
            return record  # Redis failed a moment ago: do not make every failure wait for it
        try:
            await self.flush()
        except StoreError as exc:
            self._retry_after = time.monotonic() + self.retry_interval
            if self.last_error is None:
                logger.warning("%s; keeping failure records in this process until it is back", exc)
            self.last_error = str(exc)
        else:
            self.last_error = None
        return record

    async def flush(self) -> int:
        """Write records kept while Redis was unreachable, oldest first; return how many.

        Raises:
            StoreUnavailable: Redis is still unreachable (the rest stay pending).
        """
        written = 0
        while self._pending:
            failure_id, record = next(iter(self._pending.items()))
            await self._write(record)
            self._pending.pop(failure_id, None)
            written += 1
        return written

    async def _write(self, record: FailureRecord) -> None:
        encoded = json.dumps(record.to_dict(), separators=(",", ":"))
        args: list[str | int] = [*self._keys, record.failure_id, encoded, self.max_records]
        await self.connection.run(
            "EVAL add-failure", record.failure_id, lambda r: r.eval(_ADD_SCRIPT, len(self._keys), *args)
        )

    # -- reading ---------------------------------------------------------------

    async def list(
        self, direction: Direction | None = None, endpoint: str | None = None, *, limit: int | None = None
    ) -> list[FailureRecord]:
        """Return records oldest first, filtered by direction and arrival endpoint, at most ``limit``.

        Raises:
            StoreUnavailable: Redis cannot be reached.
        """
        await self.flush()
        records_key, order_key = self._keys[0], self._keys[1]

        async def fetch(r: Redis) -> list[FailureRecord]:
            found: list[FailureRecord] = []
            ids: list[Any] = await r.zrange(order_key, 0, -1)
            for start in range(0, len(ids), _FETCH_BATCH):
                chunk = ids[start : start + _FETCH_BATCH]
                for raw in await r.hmget(records_key, chunk):
                    if raw is None:
                        continue  # removed between ZRANGE and HMGET
                    record = self._decode(raw)
                    if record.matches(direction, endpoint):
                        found.append(record)
                        if limit is not None and len(found) >= limit:
                            return found
            return found

        return await self.connection.run("ZRANGE+HMGET", records_key, fetch)

    async def get(self, failure_id: str) -> FailureRecord:
        """Return one record.

        Raises:
            KeyError: no record has that id.
            StoreUnavailable: Redis cannot be reached (and the record is not pending here).
        """
        if failure_id in self._pending:
            return self._pending[failure_id]
        raw = await self.connection.run("HGET", failure_id, lambda r: r.hget(self._keys[0], failure_id))
        if raw is None:
            raise KeyError(f"no failure record with id {failure_id!r}")
        return self._decode(raw)

    async def count(self) -> int:
        """Return how many records are kept (in Redis plus pending here).

        Raises:
            StoreUnavailable: Redis cannot be reached.
        """
        stored = await self.connection.run("HLEN", self._keys[0], lambda r: r.hlen(self._keys[0]))
        return int(stored) + len(self._pending)

    async def dropped(self) -> int:
        """Return how many records ``max_records`` trimmed, over the store's life.

        Raises:
            StoreUnavailable: Redis cannot be reached.
        """
        raw = await self.connection.run("GET", self._keys[3], lambda r: r.get(self._keys[3]))
        return int(raw or 0)

    # -- removing --------------------------------------------------------------

    async def remove(self, failure_ids: Iterable[str]) -> int:
        """Remove the given records; return how many existed.

        Raises:
            StoreUnavailable: Redis cannot be reached.
        """
        ids = list(dict.fromkeys(failure_ids))
        local = sum(self._pending.pop(fid, None) is not None for fid in ids)
        if not ids:
            return 0
        records_key, order_key = self._keys[0], self._keys[1]

        async def delete(r: Redis) -> int:
            async with r.pipeline(transaction=True) as pipe:
                pipe.hdel(records_key, *ids)
                pipe.zrem(order_key, *ids)
                removed, _ = await pipe.execute()
            return int(removed)

        return local + await self.connection.run("HDEL+ZREM", records_key, delete)

    async def purge(self) -> int:
        """Remove every record (in Redis and pending here); return how many there were.

        Raises:
            StoreUnavailable: Redis cannot be reached.
        """
        local = len(self._pending)
        self._pending.clear()
        records_key, order_key = self._keys[0], self._keys[1]

        async def delete_all(r: Redis) -> int:
            async with r.pipeline(transaction=True) as pipe:
                pipe.hlen(records_key)
                pipe.delete(records_key, order_key)
                count, _ = await pipe.execute()
            return int(count)

        return local + await self.connection.run("HLEN+DEL", records_key, delete_all)

    async def close(self) -> None:
        """Try to write pending records, then close the connection pool."""
        with contextlib.suppress(StoreError):  # still pending: lost with this process, as documented
            await self.flush()
        await self.connection.close()

    def _decode(self, raw: bytes | str) -> FailureRecord:
        try:
            return FailureRecord.from_dict(json.loads(raw))
        except ValueError as exc:
            raise StoreError(f"failure store at {self.url}: a stored record is unreadable ({exc})") from None

    def __repr__(self) -> str:
        return f"RedisFailureStore(url={self.url!r}, prefix={self.connection.options.prefix!r})"
