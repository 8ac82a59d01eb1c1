"""cluster.yaml, checked offline: Ray's own cluster-config validation and our security properties.

``prepare_config`` fills in the provider's defaults as ``ray up`` does and
``validate_config`` checks the result against the autoscaler's JSON schema
and its cross-field rules; neither needs cloud credentials or the network.
"""

from __future__ import annotations

import copy
import re
import shlex
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner
from ray.autoscaler._private.util import prepare_config, validate_config

from ray_dispatch import cli

REPO_ROOT = Path(__file__).resolve().parents[1]
CLUSTER_YAML = REPO_ROOT / "cluster.yaml"


@pytest.fixture
def raw() -> dict[str, Any]:
    return yaml.safe_load(CLUSTER_YAML.read_text())  # type: ignore[no-any-return]


def ray_start_commands(commands: list[str]) -> list[str]:
    return [c for c in commands if re.search(r"\bray start\b", c)]


def sets_token_auth(command: str) -> bool:
    """The command exports RAY_AUTH_MODE=token before running anything else."""
    first = command.split(";")[0].strip()
    return first.startswith("export ") and "RAY_AUTH_MODE=token" in shlex.split(first)


def test_ray_accepts_it_as_ray_up_would_prepare_it(raw: dict[str, Any]) -> None:
    prepared = prepare_config(copy.deepcopy(raw))
    validate_config(prepared)
    assert prepared["provider"]["type"] == "aws"
    assert prepared["head_node_type"] in prepared["available_node_types"]
    workers = prepared["available_node_types"]["worker"]
    assert workers["min_workers"] >= 2 and workers["resources"] == {"edge": 4}


def test_ray_validation_is_not_a_formality(raw: dict[str, Any]) -> None:
    too_few = copy.deepcopy(raw)
    too_few["max_workers"] = 1
    with pytest.raises(ValueError, match="max_workers"):
        validate_config(prepare_config(too_few))
    wrong_type = copy.deepcopy(raw)
    wrong_type["head_start_ray_commands"] = "ray start --head"
    with pytest.raises(Exception, match="is not of type 'array'"):
        validate_config(prepare_config(wrong_type))


def test_the_on_prem_variant_from_the_notes_is_valid_too(raw: dict[str, Any]) -> None:
    on_prem = copy.deepcopy(raw)
    on_prem["provider"] = {"type": "local", "head_ip": "10.0.0.10", "worker_ips": ["10.0.0.11", "10.0.0.12"]}
    on_prem["auth"] = {"ssh_user": "ray", "ssh_private_key": "~/.ssh/id_ed25519"}
    del on_prem["available_node_types"], on_prem["head_node_type"]
    prepared = prepare_config(on_prem)
    validate_config(prepared)
    assert prepared["head_start_ray_commands"] == raw["head_start_ray_commands"]
    text = CLUSTER_YAML.read_text()
    for note in ("type: local", "head_ip:", "worker_ips:", "available_node_types` and `head_node_type"):
        assert note in text, f"the on-prem notes should mention {note!r}"


def test_every_ray_start_turns_token_auth_on(raw: dict[str, Any]) -> None:
    head = ray_start_commands(raw["head_start_ray_commands"])
    workers = ray_start_commands(raw["worker_start_ray_commands"])
    assert len(head) == 1 and "--head" in head[0]
    assert len(workers) == 1 and "--address=$RAY_HEAD_IP:6379" in workers[0]
    assert all(sets_token_auth(c) for c in head + workers)


def test_shells_on_the_nodes_get_token_auth_and_the_token_is_mounted(raw: dict[str, Any]) -> None:
    assert raw["file_mounts"]["~/.ray/auth_token"] == "~/.ray/auth_token"
    bashrc = [c for c in raw["setup_commands"] if "~/.bashrc" in c and "RAY_AUTH_MODE" in c]
    assert len(bashrc) == 1 and "export RAY_AUTH_MODE=token" in bashrc[0]
    assert "get-auth-token --generate" in CLUSTER_YAML.read_text()


def test_the_dashboard_stays_off_public_interfaces(raw: dict[str, Any]) -> None:
    [head] = ray_start_commands(raw["head_start_ray_commands"])
    assert "--dashboard-host=127.0.0.1" in head or "--include-dashboard=false" in head
    everything = yaml.safe_dump(raw)
    assert "0.0.0.0" not in everything


def test_every_node_installs_the_project(raw: dict[str, Any]) -> None:
    installs = [c for c in raw["setup_commands"] if "pip install" in c and "ray-dispatch" in c]
    assert len(installs) == 1
    assert re.search(r'"ray-dispatch @ git\+https://\S+"', installs[0])
    prepared = prepare_config(copy.deepcopy(raw))
    assert installs[0] in prepared["head_setup_commands"] and installs[0] in prepared["worker_setup_commands"]


def test_every_node_gets_python_3_11_and_installs_into_it_first_on_path(raw: dict[str, Any]) -> None:
    """The project needs Python 3.11 (pyproject), which Ray's default AWS image does not have."""
    requires = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["requires-python"]
    setup = raw["setup_commands"]
    [venv] = [i for i, c in enumerate(setup) if "uv venv" in c]
    assert requires == ">=3.11" and "--python 3.11" in setup[venv] and "~/rd-venv" in setup[venv]
    [on_path] = [i for i, c in enumerate(setup) if "PATH" in c and "~/.bashrc" in c]
    assert 'export PATH="$HOME/rd-venv/bin:$PATH"' in setup[on_path]
    [install] = [i for i, c in enumerate(setup) if "pip install" in c]
    assert venv < install and setup[install].startswith("~/rd-venv/bin/python -m pip install")
    assert all(c.startswith("~/rd-venv/bin/python -m pip") for c in raw["head_setup_commands"])
    header = CLUSTER_YAML.read_text().split("cluster_name:")[0]
    assert "Python 3.11+" in header and "3.10" not in header


def test_the_head_starts_the_deployment_the_way_the_cli_expects(raw: dict[str, Any]) -> None:
    last = raw["head_start_ray_commands"][-1]
    assert sets_token_auth(last) and "RAY_ADDRESS=auto" in last.split(";")[0]
    run_line = last.split("&&")[-1].split()
    assert run_line[:2] == ["ray-dispatch", "run"]
    context = cli.run.make_context("run", run_line[2:])  # parses the options exactly as the CLI would
    assert context.params["detach"] is True and context.params["name"] == "default"
    remote_config = Path(context.params["config"])
    [local_dir] = [loc for remote, loc in raw["file_mounts"].items() if remote == str(remote_config.parent)]
    local_config = REPO_ROOT / local_dir / remote_config.name
    assert local_config.is_file()
    result = CliRunner().invoke(cli.main, ["validate", str(local_config)])
    assert result.exit_code == 0, result.stderr


def test_the_head_sets_faster_node_health_checks_that_ray_start_accepts(raw: dict[str, Any]) -> None:
    """Ray's defaults declare a lost raylet's node dead after ~15 s, the shipped settings after ~5 s."""
    from ray._raylet import Config
    from ray.scripts.scripts import start

    [head] = ray_start_commands(raw["head_start_ray_commands"])
    words = shlex.split(head.split(";")[-1])
    assert words[:2] == ["ray", "start"]
    settings = start.make_context("start", words[2:]).params["system_config"]  # parsed as `ray start` would
    health = {"health_check_period_ms", "health_check_timeout_ms", "health_check_failure_threshold"}
    assert set(settings) == {*health, "max_direct_call_object_size"}
    assert all(hasattr(Config, key) for key in health), "a key Ray 2.60 does not know"
    period, timeout = settings["health_check_period_ms"], settings["health_check_timeout_ms"]
    threshold = settings["health_check_failure_threshold"]
    defaults = Config.health_check_period_ms(), Config.health_check_failure_threshold()
    assert period * threshold <= 5_000 < defaults[0] * defaults[1]
    assert timeout >= Config.health_check_timeout_ms()  # a busy raylet that answers late must not be killed
    for note in ("health_check_period_ms", "call_deadline"):
        assert note in CLUSTER_YAML.read_text().split("cluster_name:")[0], f"the header should explain {note}"


def test_the_head_lets_batch_blobs_travel_inline_as_the_local_ray_does(raw: dict[str, Any]) -> None:
    """The head's Ray setting is the one ray_dispatch applies to a local Ray, and the batching default fits under it."""
    from ray.scripts.scripts import start

    from ray_dispatch.core.batching import RAY_SYSTEM_CONFIG, BatchingOptions

    [head] = ray_start_commands(raw["head_start_ray_commands"])
    settings = start.make_context("start", shlex.split(head.split(";")[-1])[2:]).params["system_config"]
    assert settings["max_direct_call_object_size"] == RAY_SYSTEM_CONFIG["max_direct_call_object_size"]
    assert BatchingOptions().max_batch_bytes < settings["max_direct_call_object_size"]
    assert "max_direct_call_object_size" in CLUSTER_YAML.read_text().split("cluster_name:")[0], "explain it"
