"""One retry policy: how long to wait between tries, and when to give up.

Every place that tries again uses it, with the same config keys:

- ``initial_delay``: seconds before the first retry;
- ``factor``: each further retry waits this many times longer;
- ``max_delay``: no wait is longer than this;
- ``jitter``: 0 (exact waits) to 1 (each wait drawn uniformly between 0 and
  its full length), so replicas that lost the same peer do not retry in step;
- ``max_attempts`` (``RetryPolicy`` only): tries in all, the first included,
  before giving up.

Where they appear (defaults differ per place; the README's "Retries" section
lists them): ``batching: {retry: {...}}`` of an endpoint or the dispatcher,
``store: {retry: {...}}`` / ``failure_store:`` for the Redis stores, and a
transport's ``backoff: {...}`` (which reconnects for as long as it runs, so
has no ``max_attempts``). Randomness is injectable for tests.
"""

from __future__ import annotations

import random
import warnings
from collections.abc import Callable, Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["Backoff", "BackoffPolicy", "OldKeys", "RetryPolicy", "fill_retry_block"]

Random = Callable[[], float]
"""Returns a float in [0, 1), like ``random.random``."""


class BackoffPolicy(BaseModel):
    """Growing, capped, optionally jittered waits between tries (for as long as the caller goes on).

    Attributes:
        initial_delay: seconds before the first retry (default 0.5).
        max_delay: no wait is longer than this many seconds (default 30).
        factor: each further retry waits this many times longer (default 2).
        jitter: share of each wait drawn at random, 0 (none, the default) to 1 (full jitter).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    initial_delay: float = Field(0.5, gt=0)
    max_delay: float = Field(30.0, gt=0)
    factor: float = Field(2.0, ge=1)
    jitter: float = Field(0.0, ge=0, le=1)

    def delay(self, retry: int, rand: Random = random.random) -> float:
        """Return the seconds to wait before retry number ``retry`` (1 is the first retry).

        ``min(max_delay, initial_delay * factor ** (retry - 1))``, less a random
        share of up to ``jitter`` of it.
        """
        exponent = max(0, retry - 1)
        try:
            full = min(self.max_delay, self.initial_delay * self.factor**exponent)
        except OverflowError:
            full = self.max_delay
        return full * (1.0 - self.jitter * rand())

    def start(self, rand: Random = random.random) -> Backoff:
        """Return a fresh ``Backoff`` that walks this policy's waits."""
        return Backoff(self, rand)


class RetryPolicy(BackoffPolicy):
    """A ``BackoffPolicy`` that gives up after ``max_attempts`` tries.

    Attributes:
        max_attempts: tries in all, the first included (default 3).
    """

    max_attempts: int = Field(3, ge=1)

    def gives_up_after(self, attempts: int) -> bool:
        """Whether no further try follows ``attempts`` tries."""
        return attempts >= self.max_attempts


class Backoff:
    """Walks a ``BackoffPolicy``'s waits: each ``next_delay`` is one retry further; ``reset`` starts over.

    Args:
        policy: the waits.
        rand: source of jitter (``random.random`` unless a test fixes it).
    """

    def __init__(self, policy: BackoffPolicy, rand: Random = random.random) -> None:
        self.policy = policy
        self._rand = rand
        self.retries = 0

    def next_delay(self) -> float:
        """Return the wait before the next retry, and count that retry."""
        self.retries += 1
        return self.policy.delay(self.retries, self._rand)

    def reset(self) -> None:
        """Start again from ``initial_delay`` (after a success)."""
        self.retries = 0


OldKeys = Mapping[str, str | tuple[str, Callable[[float], float]]]
"""Old flat key -> its ``RetryPolicy`` field, or (field, conversion of a numeric value)."""


def fill_retry_block(data: Any, defaults: BackoffPolicy, where: str, old_keys: OldKeys | None = None) -> Any:
    """Complete the ``retry:`` block of a config mapping with its place's defaults, taking old flat keys.

    Meant for a pydantic ``model_validator(mode="before")`` of an options model
    whose ``retry`` field defaults to ``defaults``: a partial block (say
    ``retry: {max_attempts: 3}``) keeps that place's other defaults rather
    than ``RetryPolicy``'s. Each deprecated flat key in ``old_keys`` found
    beside the block is moved into it with one ``FutureWarning`` naming the new key.

    Raises:
        ValueError: an old key and its ``retry.<field>`` are both given.
    """
    if not isinstance(data, Mapping):
        return data
    data = dict(data)
    given = data.get("retry", {})
    if not isinstance(given, Mapping):
        return data  # not a block: let validation name it
    block = dict(given)
    for old, target in (old_keys or {}).items():
        if old not in data:
            continue
        new, convert = (target, None) if isinstance(target, str) else target
        value = data.pop(old)
        if new in block:
            raise ValueError(f"{old!r} is the old name of 'retry.{new}'; give only 'retry.{new}'")
        numeric = isinstance(value, int | float) and not isinstance(value, bool)
        block[new] = convert(value) if convert is not None and numeric else value
        warnings.warn(
            f"{where}: {old!r} is deprecated; write 'retry: {{{new}: {block[new]!r}}}' instead",
            FutureWarning,
            stacklevel=2,
        )
    data["retry"] = {**defaults.model_dump(), **block}
    return data
