"""CircuitBreaker on a fake clock: closed -> open after N failures -> one half-open probe -> closed."""

from __future__ import annotations

import pytest

from ray_dispatch.core.errors import ConfigError
from ray_dispatch.core.stores.breaker import BreakerPolicy, CircuitBreaker, CircuitOpen
from ray_dispatch.core.stores.redis_routing import RedisStore
from tests.core.helpers import FakeClock

WALL = 1_800_000_000.0  # 2027-01-15T08:00:00Z


def breaker(clock: FakeClock, threshold: int = 3, reset: float = 2.0) -> CircuitBreaker:
    return CircuitBreaker(
        BreakerPolicy(failure_threshold=threshold, reset_timeout=reset), clock=clock, wall_clock=lambda: WALL
    )


def fail(b: CircuitBreaker, times: int) -> None:
    for _ in range(times):
        b.before_call()
        b.failed("ConnectionError: refused")


def test_it_opens_after_failure_threshold_failures_in_a_row_and_then_refuses_at_once() -> None:
    clock = FakeClock()
    b = breaker(clock)
    fail(b, 2)
    assert b.state == "closed"
    b.before_call()  # still lets calls through
    b.failed("ConnectionError: refused")
    assert b.state == "open"
    with pytest.raises(CircuitOpen) as info:
        b.before_call()
    assert str(info.value) == (
        "circuit open since 2027-01-15T08:00:00Z, next probe in 2.0s"
        " (3 failures in a row; last: ConnectionError: refused)"
    )


def test_a_success_resets_the_count_of_failures_in_a_row() -> None:
    b = breaker(FakeClock())
    fail(b, 2)
    b.before_call()
    b.succeeded()
    fail(b, 2)
    assert b.state == "closed" and b.failures_in_a_row == 2


def test_after_the_cool_down_one_probe_goes_through_and_its_success_closes_it() -> None:
    clock = FakeClock()
    b = breaker(clock)
    fail(b, 3)
    clock.advance(1.5)
    with pytest.raises(CircuitOpen, match=r"next probe in 0\.5s"):
        b.before_call()
    clock.advance(0.5)
    b.before_call()  # the probe
    assert b.state == "half-open"
    with pytest.raises(CircuitOpen, match=r"circuit half-open since .*, probe under way"):
        b.before_call()  # only one probe at a time
    b.succeeded()
    assert (b.state, b.failures_in_a_row, b.last_error) == ("closed", 0, None)
    b.before_call()
    assert b.snapshot()["since"] is None


def test_a_failed_probe_opens_it_for_another_cool_down() -> None:
    clock = FakeClock()
    b = breaker(clock)
    fail(b, 3)
    clock.advance(2.0)
    b.before_call()
    b.failed("TimeoutError: no answer within 5.0 s")
    assert b.state == "open" and b.next_probe_in() == 2.0
    with pytest.raises(CircuitOpen, match=r"4 failures in a row; last: TimeoutError"):
        b.before_call()
    clock.advance(2.0)
    b.before_call()
    assert b.state == "half-open"


def test_an_abandoned_probe_lets_the_next_call_probe() -> None:
    clock = FakeClock()
    b = breaker(clock)
    fail(b, 3)
    clock.advance(2.0)
    b.before_call()
    b.abandoned()  # e.g. the probing task was cancelled
    b.before_call()
    assert b.state == "half-open"


def test_snapshot_says_since_when_and_when_the_next_probe_is() -> None:
    clock = FakeClock()
    b = breaker(clock, threshold=1, reset=5.0)
    assert b.snapshot() == {
        "state": "closed",
        "since": None,
        "next_probe_in": None,
        "failures_in_a_row": 0,
        "last_error": None,
    }
    fail(b, 1)
    clock.advance(1.0)
    assert b.snapshot() == {
        "state": "open",
        "since": "2027-01-15T08:00:00Z",
        "next_probe_in": 4.0,
        "failures_in_a_row": 1,
        "last_error": "ConnectionError: refused",
    }


@pytest.mark.parametrize(
    ("block", "fragment"),
    [
        ({"failure_threshold": 0}, "failure_threshold"),
        ({"reset_timeout": 0}, "reset_timeout"),
        ({"reset_after": 1}, "reset_after"),
    ],
)
def test_bad_breaker_options_are_refused_naming_the_key(block: dict[str, float], fragment: str) -> None:
    with pytest.raises(ConfigError, match=rf"breaker\.{fragment}"):
        RedisStore("redis://127.0.0.1:1/0", breaker=block)
