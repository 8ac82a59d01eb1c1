"""``preflight``: one check of a whole config before anything starts, and the same line from validate/run/deploy.

The CLI and ``deploy()`` cases run in a fresh Python process each (one for
all cases), so "Ray was not started" is a fact of that process, whatever
other tests of this session did with Ray.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
import yaml

from ray_dispatch.core.errors import ConfigError
from ray_dispatch.preflight import preflight

REPO_ROOT = Path(__file__).resolve().parents[1]

GOOD: dict[str, Any] = {
    "router_class": "routers.SimpleDispatchRouter",
    "transport_names": ["sms"],
    "exposed_names": ["app"],
    "route_mappings": {"sms": "app"},
    "endpoints": {
        "sms": {"class": "actors.builtin.MemoryTransport"},
        "app": {"class": "actors.builtin.EchoApplication", "batching": {"max_batch": 100}},
    },
}

BAD: dict[str, tuple[dict[str, Any], list[str]]] = {
    "unknown router class": ({"router_class": "routers.NoSuchRouter"}, ["router_class", "NoSuchRouter"]),
    "bad route_mappings target": ({"route_mappings": {"sms": "nobody"}}, ["route_mappings.sms", "'nobody'"]),
    "unknown batching key": (
        {"endpoints": {**GOOD["endpoints"], "app": {"batching": {"max_queue": 5}}}},
        ["endpoints.app.batching.max_queue: unknown key; did you mean 'max_queued'?"],
    ),
    "endpoint class typo": (
        {"endpoints": {**GOOD["endpoints"], "sms": {"class": "actors.builtin.MemoryTransprot"}}},
        ["endpoints.sms.class", "MemoryTransprot"],
    ),
}


def write(tmp_path: Path, name: str, config: dict[str, Any]) -> str:
    path = tmp_path / f"{name.replace(' ', '_')}.yaml"
    path.write_text(yaml.safe_dump(config))
    return str(path)


def test_a_good_config_passes_and_comes_back_loaded(tmp_path: Path) -> None:
    loaded = preflight(write(tmp_path, "good", GOOD))
    assert loaded.endpoints["app"].batching.max_batch == 100
    assert loaded.role("sms") == "transport" and loaded.role("app") == "application"


@pytest.mark.parametrize("case", list(BAD))
def test_each_bad_config_is_one_config_error_naming_the_file_and_the_key(tmp_path: Path, case: str) -> None:
    change, fragments = BAD[case]
    path = write(tmp_path, case, {**GOOD, **change})
    with pytest.raises(ConfigError) as info:
        preflight(path)
    text = str(info.value)
    assert text.startswith(f"{path}: ") and "\n" not in text
    for fragment in fragments:
        assert fragment in text


@pytest.mark.parametrize(
    ("change", "fragment"),
    [
        ({"route_mapings": {"sms": "app"}}, "route_mapings: unknown key; did you mean 'route_mappings'?"),
        ({"max_hop": 3}, "max_hop: unknown key; did you mean 'max_hops'?"),
        ({"endpoints": {"sms": {"clas": "actors.builtin.MemoryTransport"}}}, "did you mean 'class'?"),
        ({"dispatcher": {"replica": 2}}, "dispatcher.replica: unknown key; did you mean 'replicas'?"),
        ({"store": {"class": "ray_dispatch.redis_store.RedisStore", "prefx": "x"}}, "did you mean 'prefix'?"),
        ({"endpoints": {"sms": {"class": "actors.builtin.MemoryTransport", "config": {"auto_ak": 1}}}}, "auto_ack"),
    ],
)
def test_a_typo_anywhere_is_named_with_the_key_meant(change: dict[str, Any], fragment: str) -> None:
    with pytest.raises(ConfigError) as info:
        preflight({**GOOD, **change})
    assert fragment in str(info.value)


def test_top_level_keys_for_other_components_still_pass() -> None:
    """Vumi configs carry keys for other workers at the top level; only near-misses of known keys are refused."""
    assert preflight({**GOOD, "redis_manager": {"key_prefix": "x"}, "amqp_prefetch_count": 20}).raw["redis_manager"]


def test_a_middleware_block_name_is_a_known_top_level_key() -> None:
    config = {**GOOD, "middleware": [{"logging_mw": "ray_dispatch.middleware.LoggingMiddleware"}], "logging_mw": {}}
    assert preflight(config).middleware[0].name == "logging_mw"


def test_allowed_prefixes_refuse_an_outside_class_before_anything_starts() -> None:
    config = {**GOOD, "endpoints": {"sms": {"class": "tests.helpers_apps.NotAnApplication"}}}
    with pytest.raises(ConfigError) as info:
        preflight(config, allowed_prefixes=["mycompany"])
    assert "endpoints.sms.class: class 'tests.helpers_apps.NotAnApplication' is refused" in str(info.value)


SCRIPT = textwrap.dedent(
    """
    import json, sys
    from click.testing import CliRunner
    import ray, ray_dispatch
    from ray_dispatch.cli import main

    results = {}
    for path in sys.argv[1:]:
        validated = CliRunner().invoke(main, ["validate", path])
        ran = CliRunner().invoke(main, ["run", path, "--name", "never", "--namespace", "preflight_tests"])
        try:
            ray_dispatch.deploy(path, name="never", namespace="preflight_tests")
            deployed = None
        except Exception as exc:
            deployed = [type(exc).__name__, str(exc)]
        results[path] = {
            "validate": [validated.exit_code, validated.stderr],
            "run": [ran.exit_code, ran.stderr],
            "deploy": deployed,
            "ray_started": ray.is_initialized(),
        }
    print(json.dumps(results))
    """
)


def test_validate_run_and_deploy_refuse_a_bad_config_alike_without_starting_ray(tmp_path: Path) -> None:
    paths = {case: write(tmp_path, case, {**GOOD, **change}) for case, (change, _) in BAD.items()}
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, *paths.values()],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    results = json.loads(done.stdout.strip().splitlines()[-1])
    for case, path in paths.items():
        result = results[path]
        code, stderr = result["run"]
        [line] = stderr.strip().splitlines()
        assert code == 2 and line.startswith(f"error: {path}: ") and "Traceback" not in stderr, (case, stderr)
        for fragment in BAD[case][1]:
            assert fragment in line, (case, line)
        assert result["validate"] == [2, stderr], case
        assert result["deploy"] == ["ConfigError", line.removeprefix("error: ")], case
        assert result["ray_started"] is False, case


async def test_preflight_works_inside_a_running_event_loop_as_in_a_notebook() -> None:
    """Jupyter runs an event loop: the router's setup and teardown then run beside it, not in it."""
    assert preflight(GOOD).router_class == "routers.SimpleDispatchRouter"
    with pytest.raises(ConfigError, match="route_mappings"):
        preflight({**GOOD, "route_mappings": {"sms": "nobody"}})
