"""The console's pages: plain server-rendered HTML (``console.js`` refreshes and acts through the JSON API).

Each function takes what ``ray_dispatch.console.model`` computed and returns
a whole page. Everything shown is escaped here; the only markup taken as is
is the topology SVG, which ``ray_dispatch.tools.draw`` escapes itself.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from html import escape
from typing import Any
from urllib.parse import quote

NONE = "&ndash;"
"""Shown for a missing value."""

NAV = (("/", "Topology"), ("/endpoints", "Endpoints"), ("/failures", "Failures"), ("/config", "Config"))
DIRECTIONS = ("inbound", "event", "outbound")


def layout(title: str, deployment: str, namespace: str, active: str, body: str) -> str:
    """A whole page: heading with the deployment's name, the navigation, then ``body``."""
    links = "".join(
        f'<a href="{href}"{" class=active" if href == active else ""}>{escape(label)}</a>' for href, label in NAV
    )
    return (
        "<!doctype html><html lang=en><head><meta charset=utf-8>"
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{escape(title)} · {escape(deployment)} · ray_dispatch</title>"
        '<link rel="stylesheet" href="/static/console.css"><script src="/static/console.js" defer></script>'
        f'</head><body><header><h1>ray_dispatch <span class="dep">{escape(deployment)}</span>'
        f" <small>namespace {escape(namespace)}</small></h1><nav>{links}</nav></header>"
        f'<main id="main"><h2>{escape(title)}</h2>{body}</main></body></html>'
    )


def unauthorized_page() -> str:
    """The page a browser gets without the right token (self-contained: static files need the token too)."""
    return (
        "<!doctype html><html lang=en><head><meta charset=utf-8><title>401 · ray_dispatch console</title>"
        "<style>body{font-family:sans-serif;max-width:40em;margin:4em auto;color:#222}"
        "code{background:#eee;padding:0 .3em}</style></head><body>"
        '<h1 id="unauthorized">401: this console needs its token</h1>'
        "<p>Open the address <code>ray-dispatch run</code> printed (it ends in <code>?token=…</code>), or print it"
        " again with <code>ray-dispatch console --deployment NAME</code>.</p></body></html>"
    )


def topology_page(svg: str, refresh_seconds: float) -> str:
    """The live topology picture, refreshed by ``console.js`` from ``/api/topology``."""
    return (
        '<p class="hint">Links: messages since start · messages per second now; boxes: replicas running.'
        f" Refreshed every {refresh_seconds:g} s.</p>"
        f'<div id="topology" data-refresh="/api/topology" data-every="{refresh_seconds:g}">{svg}</div>'
    )


def _ms(value: Any) -> str:
    return NONE if value is None else f"{float(value):.2f}"


def _health(text: str) -> str:
    return f'<span class="health {escape(text.replace(" ", "-"))}">{escape(text)}</span>'


def endpoints_page(endpoints: Sequence[Mapping[str, Any]], dispatchers: Sequence[Mapping[str, Any]]) -> str:
    """Each endpoint with its replicas, then the dispatchers with their p50/p99 latencies."""
    rows = []
    for e in endpoints:
        replicas = e["replicas"] or [{"replica": "-", "health": "no replicas", "connections": []}]
        for index, r in enumerate(replicas):
            lead = (
                f'<td rowspan="{len(replicas)}"><b>{escape(e["endpoint"])}</b><br><small>{escape(str(e["role"]))}'
                f"</small></td>"
                f'<td rowspan="{len(replicas)}" class=num>{e["rate_from"]:,.1f}</td>'
                f'<td rowspan="{len(replicas)}" class=num>{e["rate_to"]:,.1f}</td>'
                f'<td rowspan="{len(replicas)}" class=num>{e["pending"]:,}</td>'
                if index == 0
                else ""
            )
            connections = "<br>".join(
                f'<span class="conn {"up" if c.get("up") else "down"}">{escape(c["text"])}</span>'
                for c in r.get("connections") or []
            ) or ("n/a" if r.get("health") != "dead" else escape(str(r.get("error") or "")))
            node = str(r.get("node_id") or "")[:12]
            rows.append(
                f'<tr data-endpoint="{escape(e["endpoint"])}">{lead}<td>{escape(str(r["replica"]))}</td>'
                f"<td>{_health(str(r['health']))}</td><td><code>{escape(node)}</code></td>"
                f"<td>{escape(str(r.get('pid') or ''))}</td><td>{connections}</td></tr>"
            )
    table = (
        '<table class="grid" id="endpoints"><thead><tr><th>endpoint</th><th>from it /s</th><th>to it /s</th>'
        "<th>pending</th><th>replica</th><th>health</th><th>node</th><th>pid</th>"
        "<th>connection (state, since, reason)</th></tr></thead><tbody>" + "".join(rows) + "</tbody></table>"
    )
    drows = []
    for d in dispatchers:
        latency = " · ".join(
            f"{escape(k)}: p50 {_ms(v['p50'])} / p99 {_ms(v['p99'])} ms" for k, v in d["latency"].items() if v["count"]
        )
        alive = "alive" if d["alive"] else "dead"
        drows.append(
            f"<tr><td>{escape(str(d['dispatcher']))}</td><td>{_health(alive)}</td>"
            f"<td><code>{escape(str(d.get('node_id') or '')[:12])}</code></td><td>{escape(str(d.get('router') or ''))}"
            f"</td><td class=num>{escape(str(d.get('failures')))}</td><td class=num>{escape(str(d.get('batches')))}"
            f"</td><td>{latency or escape(str(d.get('error') or '')) or NONE}</td></tr>"
        )
    dispatcher_table = (
        '<h3>Dispatchers</h3><table class="grid" id="dispatchers"><thead><tr><th>#</th><th>health</th><th>node</th>'
        "<th>router</th><th>failure records</th><th>batches</th><th>latency (recent)</th></tr></thead><tbody>"
        + "".join(drows)
        + "</tbody></table>"
    )
    return f'<div data-live="3">{table}{dispatcher_table}</div>'


def _options(values: Sequence[str], chosen: str, blank: str) -> str:
    return f'<option value="">{escape(blank)}</option>' + "".join(
        f"<option{' selected' if v == chosen else ''}>{escape(v)}</option>" for v in values
    )


def failures_page(
    records: Sequence[Mapping[str, Any]], endpoints: Sequence[str], filters: Mapping[str, str], total: int
) -> str:
    """The failure records matching ``filters``, with replay and purge of one, a selection, or all."""
    form = (
        '<form class="filters" method="get" action="/failures">'
        f'<label>direction <select name="direction">{_options(DIRECTIONS, filters.get("direction", ""), "any")}'
        "</select></label>"
        f'<label>endpoint <select name="endpoint">{_options(endpoints, filters.get("endpoint", ""), "any")}'
        "</select></label>"
        f'<label>text <input name="q" value="{escape(filters.get("q", ""))}" placeholder="id, reason, content"></label>'
        '<button type="submit">Filter</button></form>'
    )
    rows = []
    for r in records:
        fid = escape(str(r["failure_id"]))
        content = (r.get("message") or {}).get("content")
        rows.append(
            f'<tr data-failure="{fid}"><td><input type="checkbox" class="pick" value="{fid}"'
            f' aria-label="select {fid}"></td>'
            f'<td><a href="/failures/{quote(str(r["failure_id"]))}"><code>{fid[:12]}</code></a></td>'
            f"<td>{escape(str(r.get('timestamp', ''))[:19])}</td><td>{escape(str(r.get('direction')))}</td>"
            f"<td>{escape(str(r.get('endpoint')))}</td><td>{escape(str(r.get('stage')))}</td>"
            f"<td>{escape(str(r.get('reason')))}</td><td>{escape(str(content) if content is not None else '')}</td>"
            f'<td><button class="replay-one" data-ids="{fid}">Replay</button></td></tr>'
        )
    shown = f"{len(records)} of {total} record(s)" if len(records) != total else f"{total} record(s)"
    actions = (
        '<div class="actions"><button id="replay-selected">Replay selected</button>'
        '<button id="purge-selected" class="danger">Purge selected</button>'
        '<button id="purge-all" class="danger">Purge all</button></div>'
        '<p id="result" role="status" aria-live="polite"></p>'
    )
    table = (
        '<table class="grid" id="failures"><thead><tr><th><input type="checkbox" id="pick-all"'
        ' aria-label="select all"></th><th>id</th><th>time (UTC)</th><th>direction</th><th>endpoint</th>'
        "<th>stage</th><th>reason</th><th>content</th><th></th></tr></thead><tbody>"
        + ("".join(rows) or '<tr><td colspan="9" class="empty">no failure records</td></tr>')
        + "</tbody></table>"
    )
    return f'{form}{actions}<div data-live="5"><p class="count" id="failure-count">{shown}</p>{table}</div>'


def failure_page(record: Mapping[str, Any], endpoints: Sequence[str]) -> str:
    """One failure record in full, with replay (optionally to another endpoint) and purge."""
    fid = escape(str(record["failure_id"]))
    return (
        '<p><a href="/failures">← all failure records</a></p>'
        f'<div class="actions"><label>replay to <select id="replay-endpoint">'
        f"{_options(endpoints, '', 'its own endpoint')}</select></label>"
        f'<button class="replay-one" data-ids="{fid}">Replay</button>'
        f'<button class="purge-one danger" data-ids="{fid}">Purge</button></div>'
        '<p id="result" role="status" aria-live="polite"></p>'
        f'<pre id="record">{escape(json.dumps(record, indent=2, default=str))}</pre>'
    )


def config_page(
    yaml_text: str, source: str | None, generation: int | None, history: list[dict[str, Any]] | None = None
) -> str:
    """The config the deployment runs (YAML, secrets masked), the generations applied, and a dry-run form."""
    where = f"from <code>{escape(source)}</code>; " if source else ""
    gen = f"generation {generation}" if generation is not None else "generation: n/a (not reconfigured live)"
    rows = "".join(
        "<tr>"
        + "".join(
            f"<td>{escape(str(entry.get(key, '')))}</td>" for key in ("generation", "applied_at", "note", "router")
        )
        + "</tr>"
        for entry in history or []
    )
    generations = (
        '<h2>Generations</h2><table class="grid" id="history"><tr><th>generation</th><th>applied</th>'
        f"<th>how</th><th>router</th></tr>{rows}</table>"
        if rows
        else ""
    )
    preview = (
        "<h2>Preview a config</h2>"
        '<p class="hint">Paste a config: its plan and how the recent traffic would route under it'
        " (<code>ray-dispatch apply --dry-run</code>). Nothing changes.</p>"
        '<textarea id="preview-yaml" rows="12" cols="100"></textarea>'
        '<p><button id="preview">Preview</button></p><pre id="preview-result"></pre>'
    )
    return (
        f'<p class="hint">{where}{escape(gen)}; secrets shown as ***.</p><pre id="config">{escape(yaml_text)}</pre>'
        f"{generations}{preview}"
    )
