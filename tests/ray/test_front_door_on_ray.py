"""The front door against a real Ray: token auth named, and a foreground ``run`` found and stopped by its record."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import ray

from ray_dispatch.run_state import STATE_DIR_ENV, read_record

pytestmark = pytest.mark.ray

CONSOLE_SCRIPT = Path(sys.executable).with_name("ray-dispatch")
REPO_ROOT = Path(__file__).resolve().parents[2]
NAMESPACE = "front_door_tests"


def environment(state: Path, **extra: str) -> dict[str, str]:
    """This process's environment without RAY_ADDRESS / RAY_AUTH_MODE, with ``state`` for run records."""
    environ = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "RAY_AUTH_MODE")}
    return {**environ, STATE_DIR_ENV: str(state), **extra}


def ray_dispatch(state: Path, *args: str, **extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(CONSOLE_SCRIPT), *args],
        cwd=REPO_ROOT,
        env=environment(state, **extra),
        capture_output=True,
        text=True,
        timeout=180,
    )


@pytest.fixture
def token_cluster(ray_session: None) -> str:
    """The session Ray's address, when it uses token auth (Ray's default for the local clusters it starts)."""
    if os.environ.get("RAY_AUTH_MODE", "").lower() != "token":
        pytest.skip("the session's Ray does not use token auth")
    return str(ray.get_runtime_context().gcs_address)


def test_a_missing_auth_token_is_named_not_reported_as_no_cluster(token_cluster: str, tmp_path: Path) -> None:
    done = ray_dispatch(tmp_path, "status", "--address", token_cluster)
    assert done.returncode == 1, (done.stdout, done.stderr)
    [line] = done.stderr.strip().splitlines()
    assert line.startswith(f"error: the Ray cluster at {token_cluster} (--address) requires token auth"), line
    assert "set RAY_AUTH_MODE=token" in line


def wait_for(condition: object, what: str, bound: float = 180.0) -> None:
    deadline = time.monotonic() + bound
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"not within {bound} s: {what}"
        time.sleep(0.5)


def test_foreground_run_is_found_by_its_record_and_exits_when_stopped_from_elsewhere(
    token_cluster: str, tmp_path: Path
) -> None:
    name = "front-door-fg"
    log = tmp_path / "run.out"
    with log.open("w") as out:
        running = subprocess.Popen(
            [str(CONSOLE_SCRIPT), "run", "examples/seed.yaml", "--name", name, "--namespace", NAMESPACE],
            cwd=REPO_ROOT,
            env=environment(tmp_path, RAY_ADDRESS=token_cluster, RAY_AUTH_MODE="token"),
            stdout=out,
            stderr=subprocess.STDOUT,
            text=True,
        )
    try:
        wait_for(lambda: "running; press Ctrl-C" in log.read_text() or running.poll() is not None, "run is up")
        assert running.poll() is None, log.read_text()
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv(STATE_DIR_ENV, str(tmp_path))
            record = read_record(name, NAMESPACE)
        assert record is not None and record.pid == running.pid and record.address == token_cluster
        assert not record.detached and record.token_auth

        # Neither RAY_ADDRESS nor RAY_AUTH_MODE: the record says where, and that the cluster wants the token.
        status = ray_dispatch(tmp_path, "status", "--name", name, "--namespace", NAMESPACE)
        assert status.returncode == 0, status.stderr
        assert f"deployment {name!r} (namespace {NAMESPACE!r})" in status.stdout
        again = ray_dispatch(tmp_path, "run", "examples/seed.yaml", "--name", name, "--namespace", NAMESPACE)
        assert again.returncode == 1 and "already runs on this machine" in again.stderr, again.stderr

        stopped = ray_dispatch(tmp_path, "stop", "--name", name, "--namespace", NAMESPACE)
        assert stopped.returncode == 0, stopped.stderr
        assert running.wait(timeout=120) == 0, log.read_text()
        assert f"deployment {name!r} was stopped from elsewhere; exiting" in log.read_text()
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv(STATE_DIR_ENV, str(tmp_path))
            assert read_record(name, NAMESPACE) is None
    finally:
        if running.poll() is None:
            running.kill()
            running.wait(timeout=30)
