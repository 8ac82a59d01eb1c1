"""The console's JSON API, pages and token check, over HTTP (aiohttp's client) against a real deployment."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Iterator
from typing import Any

import aiohttp
import pytest
import ray
import yaml

import ray_dispatch
from ray_dispatch.api import Deployment
from ray_dispatch.console import console_url, start_console
from ray_dispatch.console.app import Console
from tests.console.deployment import (
    CONFIG,
    ENDPOINTS,
    SECRET,
    contents_at,
    fail_on_purpose,
    spawn_late_app,
    token_and_port,
)
from tests.waiting import wait_for

pytestmark = pytest.mark.ray

NAME, NAMESPACE = "console-api", "console_tests"


@pytest.fixture(scope="module")
def dep(ray_session: None) -> Iterator[Deployment]:
    deployment = ray_dispatch.deploy(CONFIG, name=NAME, namespace=NAMESPACE, health_interval=0.5)
    yield deployment
    deployment.shutdown()


@pytest.fixture(scope="module")
def url(dep: Deployment) -> str:
    return start_console(dep)


@pytest.fixture
async def client(url: str) -> AsyncIterator[aiohttp.ClientSession]:
    token, port = token_and_port(url)
    async with aiohttp.ClientSession(
        f"http://127.0.0.1:{port}", headers={"Authorization": f"Bearer {token}"}
    ) as session:
        yield session


@pytest.fixture
async def anonymous(url: str) -> AsyncIterator[aiohttp.ClientSession]:
    _, port = token_and_port(url)
    async with aiohttp.ClientSession(f"http://127.0.0.1:{port}") as session:
        yield session


async def get_json(session: aiohttp.ClientSession, path: str, status: int = 200) -> Any:
    async with session.get(path) as answer:
        assert answer.status == status, (path, answer.status, await answer.text())
        return await answer.json()


async def post_json(session: aiohttp.ClientSession, path: str, body: Any, status: int = 200) -> Any:
    async with session.post(path, json=body) as answer:
        assert answer.status == status, (path, answer.status, await answer.text())
        return await answer.json()


PROTECTED = ["/", "/endpoints", "/failures", "/config", "/api/status", "/api/topology", "/api/endpoints"]
PROTECTED += ["/api/failures", "/api/failures/x", "/api/config", "/api/openapi.json", "/static/console.js"]


async def test_without_the_token_every_page_and_api_call_is_refused(anonymous: aiohttp.ClientSession) -> None:
    for path in PROTECTED:
        async with anonymous.get(path, headers={"Accept": "application/json"}) as answer:
            assert answer.status == 401, path
            assert "token" in (await answer.json())["error"]
        async with anonymous.get(path, headers={"Accept": "text/html"}) as answer:
            assert answer.status == 401, path
            assert 'id="unauthorized"' in await answer.text()
    for path in ["/api/failures/replay", "/api/failures/purge"]:
        async with anonymous.post(path, json={"all": True}) as answer:
            assert answer.status == 401, path


async def test_a_wrong_token_is_refused_in_every_place_a_token_goes(url: str, anonymous: aiohttp.ClientSession) -> None:
    token, port = token_and_port(url)
    wrong = token[:-1] + ("A" if token[-1] != "A" else "B")
    async with anonymous.get(f"/api/status?token={wrong}") as answer:
        assert answer.status == 401
    async with anonymous.get("/api/status", headers={"Authorization": f"Bearer {wrong}"}) as answer:
        assert answer.status == 401
    async with anonymous.get("/api/status", cookies={f"ray_dispatch_console_{port}": wrong}) as answer:
        assert answer.status == 401


async def test_metrics_answer_without_the_token_on_a_loopback_bind(anonymous: aiohttp.ClientSession) -> None:
    async with anonymous.get("/metrics") as answer:
        assert answer.status == 200
        assert answer.headers["Content-Type"].startswith("text/plain")
        assert re.search(r'^ray_dispatch_\w+\{[^}]*deployment="console-api"', await answer.text(), re.M)


async def test_the_printed_link_logs_the_browser_in_and_cleans_the_address_bar(url: str) -> None:
    _, port = token_and_port(url)
    # Keeps cookies, like a browser (aiohttp's default jar ignores those of an IP address).
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as browser:
        async with browser.get(url, allow_redirects=False) as answer:
            assert answer.status == 303 and answer.headers["Location"] == "/"
        async with browser.get(f"http://127.0.0.1:{port}/endpoints") as answer:
            assert answer.status == 200
            assert '<table class="grid" id="endpoints">' in await answer.text()
        async with browser.get(f"http://127.0.0.1:{port}/api/status") as answer:
            assert answer.status == 200
            assert (await answer.json())["name"] == NAME


async def test_topology_shows_every_endpoint_with_counts_rates_and_replicas(
    dep: Deployment, client: aiohttp.ClientSession
) -> None:
    transport = dep.endpoint("sms_in")
    for i in range(5):
        ray.get(transport.inject.remote(f"traffic {i}"))
    for _ in range(100):  # rates appear once the dispatcher has sampled its counters (about a second)
        found = await get_json(client, "/api/topology")
        if set(found["rates"]) >= {"sms_in", "app"}:
            break
        await asyncio.sleep(0.2)
    assert found["endpoints"] == ENDPOINTS
    assert found["replicas"]["app"] == 2 and found["replicas"]["late_app"] == 0
    assert found["counts"]["sms_in"] >= 5 and found["counts"]["app"] >= 5
    assert set(found["rates"]) >= {"sms_in", "app"}
    for name in ENDPOINTS:
        assert re.search(rf'<g class="node \w+" data-endpoint="{name}"', found["svg"]), name
    async with client.get("/") as page:
        html = await page.text()
    assert 'id="topology" data-refresh="/api/topology"' in html and 'data-endpoint="late_app"' in html
    assert "msgs \u00b7 " in html  # a link labelled with its count and its rate


async def test_endpoints_show_replicas_node_health_and_connections(
    dep: Deployment, client: aiohttp.ClientSession
) -> None:
    found = await get_json(client, "/api/endpoints")
    rows = {row["endpoint"]: row for row in found["endpoints"]}
    assert list(rows) == ENDPOINTS
    assert [r["replica"] for r in rows["app"]["replicas"]] == ["0", "1"]
    assert {r["health"] for r in rows["app"]["replicas"]} == {"alive"}
    node = ray.get_runtime_context().get_node_id()
    assert {r["node_id"] for row in rows.values() for r in row["replicas"]} == {node}
    assert rows["late_app"]["replicas"] == [] or dep.replica_ids("late_app")
    assert rows["sms_in"]["role"] == "transport" and rows["app"]["role"] == "application"
    [dispatcher] = found["dispatchers"]
    assert dispatcher["alive"] and dispatcher["router"] == "SimpleDispatchRouter"
    assert set(dispatcher["latency"]) >= {"batch"}


async def test_failures_list_filter_show_replay_and_purge(dep: Deployment, client: aiohttp.ClientSession) -> None:
    ids = [fail_on_purpose(dep, f"on purpose {i}") for i in range(3)]
    listed = await get_json(client, "/api/failures?direction=inbound")
    assert set(ids) <= {r["failure_id"] for r in listed["failures"]}
    only = await get_json(client, "/api/failures?q=on%20purpose%201")
    assert [r["failure_id"] for r in only["failures"]] == [ids[1]]
    assert (await get_json(client, "/api/failures?direction=outbound"))["failures"] == []
    assert "direction" in (await get_json(client, "/api/failures?direction=sideways", status=400))["error"]
    shown = await get_json(client, f"/api/failures/{ids[0]}")
    assert shown["message"]["content"] == "on purpose 0" and "no replicas" in shown["reason"]
    assert "no failure record" in (await get_json(client, "/api/failures/nope", status=404))["error"]

    late_app = spawn_late_app(dep)
    replayed = await post_json(client, "/api/failures/replay", {"failure_ids": [ids[0], "nope"]})
    assert replayed["delivered"] == 1
    assert replayed["results"][0] == {
        "failure_id": ids[0],
        "destinations": ["inbound:late_app"],
        "failures": [],
        "error": None,
    }
    assert "nope" in replayed["results"][1]["error"]
    assert wait_for(lambda: "on purpose 0" in contents_at(late_app), 30)
    assert ids[0] not in {r["failure_id"] for r in (await get_json(client, "/api/failures"))["failures"]}

    assert (await post_json(client, "/api/failures/purge", {"failure_ids": [ids[1]]}))["purged"] == 1
    assert [r["failure_id"] for r in (await get_json(client, "/api/failures"))["failures"]] == [ids[2]]
    assert (await post_json(client, "/api/failures/purge", {"all": True}))["purged"] == 1
    assert (await get_json(client, "/api/failures"))["count"] == 0


@pytest.mark.parametrize(
    ("path", "body", "fragment"),
    [
        ("/api/failures/replay", {"failure_ids": "abc"}, "failure_ids"),
        ("/api/failures/replay", {"failure_ids": []}, "failure_ids"),
        ("/api/failures/replay", {"failure_ids": ["a"], "endpoint": "nowhere"}, "nowhere"),
        ("/api/failures/purge", {}, "failure_ids"),
        ("/api/failures/purge", ["a"], "JSON object"),
    ],
)
async def test_a_bad_action_body_is_a_400_naming_the_problem(
    client: aiohttp.ClientSession, path: str, body: Any, fragment: str
) -> None:
    assert fragment in (await post_json(client, path, body, status=400))["error"]


async def test_config_is_shown_with_secrets_masked(client: aiohttp.ClientSession) -> None:
    found = await get_json(client, "/api/config")
    assert found["config"]["legacy_api_token"] == "***"
    assert "legacy_api_token: '***'" in found["yaml"] and "route_mappings:" in found["yaml"]
    async with client.get("/config") as page:
        html = await page.text()
    assert "legacy_api_token" in html and SECRET not in html
    assert SECRET not in await (await client.get("/api/status")).text()


async def test_config_history_and_a_dry_run_preview_that_changes_nothing(
    dep: Deployment, client: aiohttp.ClientSession
) -> None:
    ray.get(dep.endpoint("sms_in").inject.remote("routed before the preview"))
    moved = yaml.safe_dump({**CONFIG, "route_mappings": {"sms_in": "late_app", "late_in": "late_app"}})
    found = await post_json(client, "/api/config/preview", {"yaml": moved})
    assert found["changed"] >= 1 and found["compared"] >= found["changed"]
    assert "dry run: nothing changed" in found["text"]
    assert [g["generation"] for g in (await get_json(client, "/api/history"))["generations"]] == [1]
    assert dep.refresh_config().raw["route_mappings"]["sms_in"] == "app", "a preview applies nothing"
    bad = await post_json(client, "/api/config/preview", {"yaml": "router_class: [unclosed"}, status=400)
    assert bad["error"].startswith("pasted config: not valid YAML: line 1")
    refused = await post_json(client, "/api/config/preview", {"yaml": "router_class: nowhere.Router"}, status=400)
    assert "transport_names" in refused["error"] or "router_class" in refused["error"]
    async with client.get("/config") as page:
        html = await page.text()
    assert '<table class="grid" id="history">' in html and '<button id="preview">' in html


async def test_openapi_documents_every_api_route_the_console_serves(
    dep: Deployment, client: aiohttp.ClientSession
) -> None:
    document = await get_json(client, "/api/openapi.json")
    served = {
        re.sub(r"\{[^}]+\}", "{failure_id}", resource.canonical)
        for resource in Console(dep, "t", metrics_open=True, cookie="c").application().router.resources()
        if resource.canonical.startswith(("/api/", "/metrics"))
    }
    assert served == set(document["paths"])
    assert document["openapi"].startswith("3.")


def test_start_console_twice_returns_the_running_one_and_console_url_finds_it(dep: Deployment, url: str) -> None:
    assert start_console(dep) == url
    assert console_url(ray_dispatch.attach(NAME, NAMESPACE)) == url


async def test_the_page_of_one_failure_shows_it_with_its_actions(
    dep: Deployment, client: aiohttp.ClientSession
) -> None:
    sent = dep.send("app", "<b>shown escaped</b>", transport_name="nowhere")  # an outbound message with no route
    failure_id = sent["failures"][0]["failure_id"]
    async with client.get(f"/failures/{failure_id}") as page:
        html = await page.text()
    assert page.status == 200
    assert f'<button class="replay-one" data-ids="{failure_id}">Replay</button>' in html
    assert '<select id="replay-endpoint">' in html and "&lt;b&gt;shown escaped&lt;/b&gt;" in html
    assert "<b>shown escaped</b>" not in html
    async with client.get("/failures/no-such-id") as page:
        assert page.status == 200 and "no failure record with id <code>no-such-id</code>" in await page.text()
    await post_json(client, "/api/failures/purge", {"failure_ids": [failure_id]})
