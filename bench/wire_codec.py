"""Micro-benchmark: what the actor wire costs per message in one process (encode + decode + check).

Successor of ``wire_repr.py``'s question without Ray's own cost: for batches of
user messages, the time to turn messages into what a Ray call carries and back
into checked messages, per message, best of ``--rounds``:

- ``old_pickled_dicts_trusted``: the old wire: ``to_wire`` payload dicts in a
  list pickled as Ray does, unpickled and rebuilt with ``from_wire`` (no check,
  what endpoints did);
- ``old_pickled_dicts_validated``: the same, each payload validated by the
  models (``message_from_dict``), what a receiver must do for input it cannot vouch for;
- ``msgspec_blob``: today's wire: ``encode_item`` per message when queued,
  ``encode_batch`` when shipped, ``decode_batch`` on arrival (typed decode and
  the rules: the hostile-input check), also pickled as Ray does.

The process tunes its garbage collector as the data-path actors do. Each
figure is CPU time of this process (``time.process_time``: steadier than wall
time on a shared machine), split into ``encode_us`` (sender) and ``decode_us``
(receiver); the variants run interleaved, best round kept. The old dispatcher
also ran ``checked_from_wire`` (gone), which cost between the two old figures.
Prints one JSON object.

    python bench/wire_codec.py [--messages 20000] [--batch 1000] [--rounds 5]
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import platform
import time
from collections.abc import Callable

from actors.gc_tuning import tune_gc_for_throughput
from actors.wire import decode_batch, encode_batch, encode_item, from_wire, to_wire
from ray_dispatch.core.harness import make_inbound
from ray_dispatch.core.message import TransportUserMessage, message_from_dict


def _messages(count: int) -> list[TransportUserMessage]:
    """SMS-like inbound messages with a little metadata, as a transport publishes them."""
    return [
        make_inbound(
            f"hello {i}",
            from_addr=f"+2783{i % 1000:07d}",
            transport_metadata={"sent_at": time.time()},
            helper_metadata={"session": {"step": i % 7}},
        )
        for i in range(count)
    ]


def _old_encode(chunk: list[TransportUserMessage]) -> bytes:
    return pickle.dumps([("inbound", to_wire(m)) for m in chunk], protocol=5)


def _old_decode_trusted(blob: bytes) -> int:
    return len([from_wire(payload) for _, payload in pickle.loads(blob)])


def _old_decode_validated(blob: bytes) -> int:
    return len([message_from_dict(payload) for _, payload in pickle.loads(blob)])


def _new_encode(chunk: list[TransportUserMessage]) -> bytes:
    return pickle.dumps(encode_batch([encode_item("inbound", m) for m in chunk]), protocol=5)


def _new_decode(blob: bytes) -> int:
    received, refused = decode_batch(pickle.loads(blob))
    assert not refused
    return len(received)


VARIANTS: dict[str, tuple[Callable[[list[TransportUserMessage]], bytes], Callable[[bytes], int]]] = {
    "old_pickled_dicts_trusted": (_old_encode, _old_decode_trusted),
    "old_pickled_dicts_validated": (_old_encode, _old_decode_validated),
    "msgspec_blob": (_new_encode, _new_decode),
}


def _measure(variant: str, chunks: list[list[TransportUserMessage]]) -> tuple[float, float, int]:
    """CPU seconds spent encoding and decoding all ``chunks``, and the bytes shipped."""
    encode, decode = VARIANTS[variant]
    started = time.process_time()
    blobs = [encode(chunk) for chunk in chunks]
    encoded = time.process_time()
    count = sum(decode(blob) for blob in blobs)
    decoded = time.process_time()
    assert count == sum(len(c) for c in chunks)
    return encoded - started, decoded - encoded, sum(len(b) for b in blobs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    messages = _messages(args.messages)
    tune_gc_for_throughput()  # as the actors on the data path do
    chunks = [messages[i : i + args.batch] for i in range(0, len(messages), args.batch)]
    best: dict[str, tuple[float, float, int]] = {}
    for _ in range(args.rounds):
        for variant in VARIANTS:  # interleaved: a burst of load hits every variant alike
            encode_s, decode_s, size = _measure(variant, chunks)
            before = best.get(variant, (float("inf"), float("inf"), size))
            best[variant] = (min(before[0], encode_s), min(before[1], decode_s), size)
    per = 1e6 / args.messages
    results = {
        variant: {
            "encode_us": round(encode_s * per, 2),
            "decode_us": round(decode_s * per, 2),
            "total_us": round((encode_s + decode_s) * per, 2),
            "bytes_per_msg": round(size / args.messages, 1),
        }
        for variant, (encode_s, decode_s, size) in best.items()
    }
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    print(
        json.dumps(
            {
                "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "loadavg": load},
                "date": time.strftime("%Y-%m-%d"),
                "messages": args.messages,
                "batch": args.batch,
                "best_of": args.rounds,
                "us_per_msg": results,
            }
        )
    )


if __name__ == "__main__":
    main()
