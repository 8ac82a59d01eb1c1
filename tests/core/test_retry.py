"""RetryPolicy: the one schedule of waits and tries every retrying place uses."""

from __future__ import annotations

import warnings

import pytest
from pydantic import ValidationError

from ray_dispatch.core.retry import Backoff, BackoffPolicy, RetryPolicy, fill_retry_block


def test_waits_grow_by_factor_from_initial_delay_up_to_max_delay() -> None:
    policy = BackoffPolicy(initial_delay=0.5, factor=3, max_delay=10)
    assert [policy.delay(n) for n in range(1, 6)] == [0.5, 1.5, 4.5, 10, 10]


def test_jitter_takes_up_to_its_share_of_each_wait_at_random() -> None:
    policy = BackoffPolicy(initial_delay=1.0, factor=2, max_delay=8, jitter=0.5)
    assert policy.delay(3, rand=lambda: 0.0) == 4.0
    assert policy.delay(3, rand=lambda: 0.5) == 3.0
    assert BackoffPolicy(initial_delay=1.0, jitter=1).delay(1, rand=lambda: 0.75) == 0.25


def test_a_huge_retry_number_waits_max_delay() -> None:
    assert BackoffPolicy(initial_delay=1, factor=10, max_delay=60).delay(10_000) == 60


def test_backoff_walks_the_waits_and_reset_starts_over() -> None:
    backoff = Backoff(BackoffPolicy(initial_delay=0.1, max_delay=0.3, jitter=1), rand=lambda: 0.5)
    assert [backoff.next_delay() for _ in range(3)] == [0.05, 0.1, 0.15]
    assert backoff.retries == 3
    backoff.reset()
    assert backoff.next_delay() == 0.05


def test_max_attempts_counts_the_first_try() -> None:
    policy = RetryPolicy(max_attempts=3)
    assert [policy.gives_up_after(n) for n in (1, 2, 3)] == [False, False, True]


@pytest.mark.parametrize(
    ("field", "value"),
    [("initial_delay", 0), ("max_delay", -1), ("factor", 0.5), ("jitter", 1.5), ("max_attempts", 0), ("tries", 3)],
)
def test_bad_values_and_unknown_keys_are_refused_naming_the_key(field: str, value: float) -> None:
    with pytest.raises(ValidationError, match=field):
        RetryPolicy.model_validate({field: value})


def test_fill_retry_block_moves_old_keys_converting_numbers_and_warns_once_each() -> None:
    defaults = RetryPolicy(initial_delay=0.2, max_attempts=5)
    old = {"retries": ("max_attempts", lambda n: n + 1), "wait": "initial_delay"}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        data = fill_retry_block({"retries": 1, "other": "x"}, defaults, "thing", old)
    assert data == {"other": "x", "retry": {**defaults.model_dump(), "max_attempts": 2}}
    assert [str(w.message) for w in caught] == [
        "thing: 'retries' is deprecated; write 'retry: {max_attempts: 2}' instead"
    ]
    assert all(w.category is FutureWarning for w in caught)


def test_fill_retry_block_leaves_a_non_mapping_for_validation_to_name() -> None:
    assert fill_retry_block({"retry": 3}, RetryPolicy(), "thing") == {"retry": 3}
    assert fill_retry_block(None, RetryPolicy(), "thing") is None
