"""The benchmark's CPU accounting (``bench/procstat.py``) and scale-out model (``bench/scale_model.py``)."""

from __future__ import annotations

import os

import pytest

from bench import procstat
from bench.procstat import CpuMeter, cpu_seconds
from bench.scale_model import scale_out_model


def test_cpu_seconds_grows_while_this_process_works() -> None:
    before = cpu_seconds(os.getpid())
    start = os.times()
    while os.times().user - start.user < 0.05:  # burn at least 50 ms of user CPU (bounded: CPU time always advances)
        sum(range(1000))
    assert cpu_seconds(os.getpid()) >= before + 0.04


def test_cpu_seconds_of_a_missing_process_raises() -> None:
    with pytest.raises(OSError):
        cpu_seconds(2**22 + 12345)  # above the kernel's pid_max: no such process


def test_the_meter_gives_each_role_its_processes_cpu_per_message(monkeypatch: pytest.MonkeyPatch) -> None:
    readings = {1: [10.0, 10.5], 2: [3.0, 3.25], 3: [1.0, 1.25], 4: [7.0, 7.0]}
    monkeypatch.setattr(procstat, "cpu_seconds", lambda pid: readings[pid].pop(0))
    with CpuMeter({"transport": [1], "dispatcher": [2, 3], "application": [4]}) as meter:
        pass
    assert meter.seconds == {"transport": 0.5, "dispatcher": 0.5, "application": 0.0}
    assert meter.per_message(100_000) == {"transport": 5.0, "dispatcher": 5.0, "application": 0.0, "total": 10.0}
    with pytest.raises(ValueError, match="positive"):
        meter.per_message(0)


def test_the_model_predicts_per_core_and_says_how_many_replicas_each_role_needs() -> None:
    model = scale_out_model(
        {"transport": 4.0, "dispatcher": 5.0, "application": 1.0, "total": 99.0}, 150_000, 2, cores=(2, 8)
    )
    assert model is not None
    assert model["cpu_us_per_msg_total"] == 10.0  # recomputed from the roles, not the given total
    assert model["predicted_msgs_per_s"] == {"2": 200_000, "8": 800_000}
    assert model["one_process_ceiling_msgs_per_s"] == {
        "transport": 250_000,
        "dispatcher": 200_000,
        "application": 1_000_000,
    }
    # 800k msg/s x 5 us = 4 cores' worth of dispatcher: four replicas.
    assert model["replicas_needed"]["8"] == {"transport": 4, "dispatcher": 4, "application": 1}
    assert model["model_check"] == {
        "cores": 2,
        "predicted_msgs_per_s": 200_000,
        "measured_msgs_per_s": 150_000,
        "measured_over_predicted": 0.75,
    }


def test_without_cpu_figures_there_is_no_model() -> None:
    assert scale_out_model(None) is None
    assert scale_out_model({}) is None
    assert scale_out_model({"dispatcher": 0.0}) is None
