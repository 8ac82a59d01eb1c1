"""Micro-benchmark: what a message representation costs across one actor hop.

Ships the same N user messages in batches to an actor that rebuilds each one
into a ``TransportUserMessage`` and returns a count, for each representation:

- ``pydantic``: the model objects themselves (pickled by Ray);
- ``dict``: ``actors.wire.to_wire`` dicts, rebuilt with ``from_wire`` (today's wire);
- ``msgpack_each``: each message pre-encoded to msgpack bytes (timestamp as
  Vumi text), decoded and rebuilt on arrival;
- ``msgpack_batch``: one msgpack blob per batch.

Encoding happens in the sending driver, decoding inside the receiving call, so
the figures are the whole cost per message: ``us_per_msg`` is wall time
(best round), ``cpu_us_per_msg`` the CPU time of sender plus receiver process
(best round; steadier on a shared machine). Prints one JSON object.

    python bench/wire_repr.py [--messages 20000] [--batch 1000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import time
from datetime import datetime
from typing import Any

import msgpack
import ray

from actors.wire import from_wire, to_wire
from ray_dispatch.core.message import TransportUserMessage, format_timestamp, parse_timestamp


def _encode_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return format_timestamp(value)
    raise TypeError(type(value).__name__)


def _revive(payload: dict[str, Any]) -> dict[str, Any]:
    payload["timestamp"] = parse_timestamp(payload["timestamp"])
    return payload


@ray.remote(num_cpus=0)
class Receiver:
    async def cpu(self) -> float:
        return time.process_time()

    async def take(self, kind: str, batch: Any) -> int:
        if kind == "pydantic":
            messages = batch
        elif kind == "dict":
            messages = [from_wire(p) for p in batch]
        elif kind == "msgpack_each":
            messages = [from_wire(_revive(msgpack.unpackb(b))) for b in batch]
        else:
            messages = [from_wire(_revive(p)) for p in msgpack.unpackb(batch)]
        return len(messages)


def _messages(count: int) -> list[TransportUserMessage]:
    return [
        TransportUserMessage(
            content=f"hello {i}",
            from_addr=f"+2783{i % 1000:07d}",
            to_addr="12345",
            transport_name="sms",
            transport_type="sms",
            transport_metadata={"sent_at": time.time()},
        )
        for i in range(count)
    ]


def _encode(kind: str, chunk: list[TransportUserMessage]) -> Any:
    if kind == "pydantic":
        return chunk
    if kind == "dict":
        return [to_wire(m) for m in chunk]
    if kind == "msgpack_each":
        return [msgpack.packb(to_wire(m), default=_encode_default) for m in chunk]
    return msgpack.packb([to_wire(m) for m in chunk], default=_encode_default)


async def _run(
    receiver: Any, kind: str, messages: list[TransportUserMessage], batch: int, in_flight: int
) -> tuple[float, float]:
    chunks = [messages[i : i + batch] for i in range(0, len(messages), batch)]
    gate = asyncio.Semaphore(in_flight)

    async def one(chunk: list[TransportUserMessage]) -> int:
        async with gate:
            return int(await receiver.take.remote(kind, _encode(kind, chunk)))

    cpu_before = time.process_time() + await receiver.cpu.remote()
    started = time.perf_counter()
    counts = await asyncio.gather(*(one(c) for c in chunks))
    elapsed = time.perf_counter() - started
    cpu = time.process_time() + await receiver.cpu.remote() - cpu_before
    assert sum(counts) == len(messages)
    return elapsed, cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--in-flight", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    if not ray.is_initialized():
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    receiver = Receiver.remote()  # type: ignore[attr-defined]
    ray.get(receiver.take.remote("dict", []))
    messages = _messages(args.messages)
    kinds = ["pydantic", "dict", "msgpack_each", "msgpack_batch"]
    best: dict[str, float] = {}
    cpu: dict[str, float] = {}
    for _ in range(args.rounds):
        for kind in kinds:
            elapsed, used = asyncio.run(_run(receiver, kind, messages, args.batch, args.in_flight))
            best[kind] = min(best.get(kind, float("inf")), elapsed)
            cpu[kind] = min(cpu.get(kind, float("inf")), used)
    one = to_wire(messages[0])
    result = {
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "ray": ray.__version__},
        "date": time.strftime("%Y-%m-%d"),
        "messages": args.messages,
        "batch": args.batch,
        "in_flight": args.in_flight,
        "best_of": args.rounds,
        "msgs_per_s": {k: round(args.messages / v) for k, v in best.items()},
        "us_per_msg": {k: round(v / args.messages * 1e6, 2) for k, v in best.items()},
        "cpu_us_per_msg": {k: round(v / args.messages * 1e6, 2) for k, v in cpu.items()},
        "bytes_per_msg": {
            "msgpack": len(msgpack.packb(one, default=_encode_default)),
            "json": len(messages[0].to_json()),
        },
    }
    print(json.dumps(result))
    ray.kill(receiver)


if __name__ == "__main__":
    main()
