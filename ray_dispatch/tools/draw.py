"""Draw a config's topology as SVG, like the figure in Vumi's dispatcher docs.

Transports on the left with their endpoint names, the dispatcher in the
middle, applications on the right; each link is labelled with its endpoint
name (and, optionally, a message count). The routes the router's config fixes
(its ``static_routes`` hook: ``route_mappings``, keywords, redirects, ...) are
drawn through the dispatcher, each with a tooltip naming its direction and
config entry; for a router that knows none, only the links are drawn.
Endpoints with more than one replica are drawn as a stack, labelled with the
replica count.

A running deployment draws itself the same way (``Deployment.graph()``, or
``ray-dispatch graph --deployment NAME -o FILE``): counts from the
dispatchers' stats on the links (per direction in the link's tooltip),
failures per endpoint in red, and the replicas that are running (and dead).

Pure Python: the SVG is written as text, so it works after a plain
``pip install``. PNG needs the optional ``resvg-py`` package (a self-contained
wheel, no system library) and a font on the system for the labels.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from html import escape
from pathlib import Path

from ray_dispatch.core.config import load_config, resolve_class
from ray_dispatch.core.router import BaseDispatchRouter, StaticRoute, validate_router_config

from .explain import ConfigSource

FONT = "DejaVu Sans, Verdana, Arial, sans-serif"
TRANSPORT_COLOURS = ("#008000", "#cce6cc")  # stroke, fill: Vumi's darkgreen
APPLICATION_COLOURS = ("#000080", "#ccccE6")  # Vumi's darkblue
DISPATCHER_COLOURS = ("#808080", "#e6e6e6")
ROW, BOX_H, PAD, CHAR = 64, 40, 24, 7.8


@dataclass
class Topology:
    """A drawable picture of a dispatcher config.

    Attributes:
        title: shown at the top (the config file name by default).
        router: the router class name.
        transports: transport endpoint names, top to bottom.
        applications: exposed (application) endpoint names, top to bottom.
        routes: the routes the router's config fixes (``static_routes``), or
            None when it knows none before a message arrives.
        counts: messages per endpoint link, shown on the edges.
        replicas: replicas per endpoint, shown as stacks.
        classes: actor class per endpoint (from the config's ``endpoints:`` block), shown in the boxes.
        flows: per endpoint, messages per direction (``inbound``, ``event``,
            ``outbound``), shown in the edge's tooltip.
        failed: failure records per endpoint, shown on the edge in red.
        dead: replicas per endpoint that do not answer, shown in the box in red.
        dispatchers: dispatcher replicas, shown in the dispatcher's heading when more than one.
        rates: messages per second per endpoint link (both ways), shown next to the count.
    """

    title: str
    router: str
    transports: list[str]
    applications: list[str]
    routes: list[StaticRoute] | None = None
    counts: dict[str, int] = field(default_factory=dict)
    replicas: dict[str, int] = field(default_factory=dict)
    classes: dict[str, str] = field(default_factory=dict)
    flows: dict[str, dict[str, int]] = field(default_factory=dict)
    failed: dict[str, int] = field(default_factory=dict)
    dead: dict[str, int] = field(default_factory=dict)
    dispatchers: int = 1
    rates: dict[str, float] = field(default_factory=dict)

    def to_svg(self) -> str:
        """Return the picture as an SVG document."""
        return _SvgLayout(self).render()

    def _repr_svg_(self) -> str:
        return self.to_svg()

    def to_png(self, zoom: float = 2.0) -> bytes:
        """Return the picture as PNG bytes (needs the optional ``resvg-py`` package).

        Raises:
            RuntimeError: ``resvg-py`` is not installed.
        """
        try:
            import resvg_py  # type: ignore[import-not-found,unused-ignore]
        except ImportError:
            raise RuntimeError(
                "PNG output needs the optional package resvg-py (pip install resvg-py); SVG needs nothing extra"
            ) from None
        data = resvg_py.svg_to_bytes(svg_string=self.to_svg(), background="#ffffff", zoom=zoom)
        return bytes(data)

    def save(self, path: str | Path) -> Path:
        """Write the picture to ``path``: SVG for ``.svg``, PNG for ``.png``.

        Raises:
            ValueError: the file name ends in neither.
            RuntimeError: PNG was asked for without ``resvg-py`` installed.
            OSError: the file cannot be written.
        """
        target = Path(path)
        suffix = target.suffix.lower()
        if suffix == ".svg":
            target.write_text(self.to_svg(), encoding="utf-8")
        elif suffix == ".png":
            target.write_bytes(self.to_png())
        else:
            raise ValueError(f"{target}: cannot tell the format; name the file .svg or .png")
        return target

    def __repr__(self) -> str:
        routes = "per message" if self.routes is None else f"{len(self.routes)} routes"
        return (
            f"<Topology {self.title}: {len(self.transports)} transports, {len(self.applications)} applications,"
            f" {self.router} ({routes})>"
        )


def draw(
    config: ConfigSource,
    *,
    counts: Mapping[str, int] | None = None,
    replicas: Mapping[str, int] | None = None,
    title: str | None = None,
    failed: Mapping[str, int] | None = None,
    dead: Mapping[str, int] | None = None,
    dispatchers: int = 1,
    rates: Mapping[str, float] | None = None,
) -> Topology:
    """Build the topology picture of ``config`` (shown inline in Jupyter; ``.save("x.svg")``).

    Args:
        config: a dict, a YAML path or a ``DispatcherConfig``.
        counts: messages per endpoint, labelled on its link. Keys are endpoint
            names or ``"direction:endpoint"`` (summed per endpoint), so
            ``ReplaySummary.endpoint_counts`` and dispatcher stats both fit.
        replicas: replicas per endpoint (default: ``replicas`` in the config's
            ``endpoints:`` block, else one); 0 shows "no replicas running".
        title: the heading (default: the config file name).
        failed: failure records per endpoint, keyed like ``counts``.
        dead: replicas per endpoint that do not answer.
        dispatchers: how many dispatcher replicas run.
        rates: messages per second per endpoint, keyed like ``counts`` (summed per endpoint).

    Raises:
        ConfigError: the config, or its router's config, is invalid.
    """
    loaded = load_config(config)
    router_cls: type[BaseDispatchRouter] = resolve_class(loaded.router_class, "router_class", BaseDispatchRouter)
    router_config = validate_router_config(
        router_cls.CONFIG_CLASS,
        loaded.raw,
        list(loaded.transport_names),
        list(loaded.exposed_names),
        what=f"{router_cls.__name__} config",
    )
    endpoints = set(loaded.transport_names) | set(loaded.exposed_names)
    specs = loaded.endpoints
    default_replicas = {n: s.replicas for n, s in specs.items() if "replicas" in s.model_fields_set}
    classes = {n: s.class_path.rpartition(".")[2] for n, s in specs.items() if s.class_path}
    return Topology(
        title=title if title is not None else (Path(loaded.source).name if loaded.source else "dispatcher config"),
        router=router_cls.__name__,
        transports=list(loaded.transport_names),
        applications=list(loaded.exposed_names),
        routes=_known(router_cls.static_routes(router_config, loaded.transport_names, loaded.exposed_names), endpoints),
        counts=_per_endpoint(counts or {}, endpoints),
        replicas={**default_replicas, **dict(replicas or {})},
        classes=classes,
        flows=_per_direction(counts or {}, endpoints),
        failed={k: v for k, v in _per_endpoint(failed or {}, endpoints).items() if v},
        dead={k: int(v) for k, v in (dead or {}).items() if k in endpoints and v},
        dispatchers=dispatchers,
        rates=_summed(rates or {}, endpoints),
    )


def _known(routes: list[StaticRoute] | None, endpoints: set[str]) -> list[StaticRoute] | None:
    """The routes between endpoints the picture has (a router may name others)."""
    if routes is None:
        return None
    return [StaticRoute(*route) for route in routes if route[0] in endpoints and route[1] in endpoints]


def _per_endpoint(counts: Mapping[str, float], endpoints: set[str]) -> dict[str, int]:
    return {name: int(n) for name, n in _summed(counts, endpoints).items()}


def _summed(values: Mapping[str, float], endpoints: set[str]) -> dict[str, float]:
    """``values`` keyed by endpoint or ``direction:endpoint``, summed per endpoint."""
    totals: dict[str, float] = {}
    for key, n in values.items():
        name = key if key in endpoints else key.partition(":")[2]
        if name in endpoints:
            totals[name] = totals.get(name, 0.0) + float(n)
    return totals


def _per_direction(counts: Mapping[str, int], endpoints: set[str]) -> dict[str, dict[str, int]]:
    flows: dict[str, dict[str, int]] = {}
    for key, n in counts.items():
        direction, _, name = key.partition(":")
        if name in endpoints and direction:
            per = flows.setdefault(name, {})
            per[direction] = per.get(direction, 0) + int(n)
    return flows


def _text_width(text: str, size: float = 13) -> float:
    return len(text) * CHAR * size / 13


class _SvgLayout:
    """Positions and SVG text for one ``Topology`` (three columns, one row per endpoint)."""

    def __init__(self, topo: Topology) -> None:
        self.topo = topo
        self.rows = max(len(topo.transports), len(topo.applications), 1)
        self.top = PAD + 28 + 44  # title, then the dispatcher's heading
        left_names = [self._box_label(n) for n in topo.transports] or [""]
        right_names = [self._box_label(n) for n in topo.applications] or [""]
        self.box_w_left = max(120.0, max(_text_width(n) for n in left_names) + 28)
        self.box_w_right = max(120.0, max(_text_width(n) for n in right_names) + 28)
        self.gap_left = max(110.0, max((self._edge_width(n) for n in topo.transports), default=0) + 36)
        self.gap_right = max(110.0, max((self._edge_width(n) for n in topo.applications), default=0) + 36)
        heading = self._heading()
        self.disp_w = max(220.0, _text_width(heading) + 32)
        self.x_left = PAD
        self.x_disp = self.x_left + self.box_w_left + self.gap_left
        self.x_right = self.x_disp + self.disp_w + self.gap_right
        self.width = self.x_right + self.box_w_right + PAD + 8
        self.height = self.top + self.rows * ROW + PAD

    def _heading(self) -> str:
        many = f" \u00d7{self.topo.dispatchers}" if self.topo.dispatchers > 1 else ""
        return f"Dispatcher{many}: {self.topo.router}"

    def _box_label(self, name: str) -> str:
        n = self.topo.replicas.get(name, 1)
        return f"{name} \u00d7{n}" if n > 1 else name

    def _count_label(self, name: str) -> str:
        """``N msgs``, and `` · R/s`` when a rate is known for the link."""
        rate = self.topo.rates.get(name)
        return f"{self.topo.counts.get(name, 0):,} msgs" + (f" \u00b7 {rate:,.1f}/s" if rate is not None else "")

    def _edge_width(self, name: str) -> float:
        count = self.topo.counts.get(name)
        failed = self.topo.failed.get(name)
        labels = [
            name,
            *([self._count_label(name)] if count is not None else []),
            *([f"{failed:,} failed"] if failed else []),
        ]
        return _text_width(max(labels, key=len), 12)

    def row_y(self, index: int, count: int) -> float:
        """The vertical centre of row ``index`` of a column with ``count`` boxes (columns are centred)."""
        offset = (self.rows - count) * ROW / 2
        return self.top + offset + index * ROW + ROW / 2

    def render(self) -> str:
        topo = self.topo
        parts = [
            f'<svg xmlns="http://www.w3.org/2000/svg" width="{self.width:.0f}" height="{self.height:.0f}"'
            f' viewBox="0 0 {self.width:.0f} {self.height:.0f}" font-family="{FONT}" font-size="13">',
            f"<title>{escape(topo.title)}: {escape(topo.router)}</title>",
            _markers(),
            '<rect width="100%" height="100%" fill="#ffffff"/>',
            f'<text x="{PAD}" y="{PAD + 14}" font-size="15" font-weight="bold">{escape(topo.title)}</text>',
        ]
        parts.append(self._dispatcher())
        ports: dict[str, tuple[float, float]] = {}
        for i, name in enumerate(topo.transports):
            y = self.row_y(i, len(topo.transports))
            parts.append(self._node("transport", name, self.x_left, y, self.box_w_left, TRANSPORT_COLOURS))
            parts.append(self._edge("transport", name, self.x_left + self.box_w_left, self.x_disp, y))
            ports[name] = (self.x_disp, y)
        for i, name in enumerate(topo.applications):
            y = self.row_y(i, len(topo.applications))
            parts.append(self._node("application", name, self.x_right, y, self.box_w_right, APPLICATION_COLOURS))
            parts.append(self._edge("application", name, self.x_disp + self.disp_w, self.x_right, y))
            ports[name] = (self.x_disp + self.disp_w, y)
        parts.append(self._routes(ports))
        parts.append("</svg>")
        return "\n".join(p for p in parts if p)

    def _dispatcher(self) -> str:
        stroke, fill = DISPATCHER_COLOURS
        y0 = self.top - 40
        height = self.rows * ROW + 40
        heading = self._heading()
        note = "" if self.topo.routes is not None else "routes decided per message"
        cx = self.x_disp + self.disp_w / 2
        return (
            f'<g class="node dispatcher"><title>{escape(heading)}</title>'
            f'<rect x="{self.x_disp:.1f}" y="{y0:.1f}" width="{self.disp_w:.1f}" height="{height:.1f}"'
            f' rx="14" fill="{fill}" stroke="{stroke}" stroke-width="1.5"/>'
            f'<text x="{cx:.1f}" y="{y0 + 24:.1f}" text-anchor="middle" font-weight="bold">{escape(heading)}</text>'
            + (
                f'<text x="{cx:.1f}" y="{y0 + height / 2 + 20:.1f}" text-anchor="middle" font-size="11"'
                f' font-style="italic" fill="#555555">{escape(note)}</text>'
                if note
                else ""
            )
            + "</g>"
        )

    def _node(self, kind: str, name: str, x: float, y: float, width: float, colours: tuple[str, str]) -> str:
        stroke, fill = colours
        replicas = self.topo.replicas.get(name, 1)
        top = y - BOX_H / 2
        shadows = "".join(
            f'<rect x="{x + 4 * k:.1f}" y="{top + 4 * k:.1f}" width="{width:.1f}" height="{BOX_H}" rx="12"'
            f' fill="{fill}" stroke="{stroke}" stroke-opacity="0.6"/>'
            for k in range(min(replicas, 3) - 1, 0, -1)
        )
        label = self._box_label(name)
        cls = self.topo.classes.get(name)
        dead = self.topo.dead.get(name, 0)
        warning = "no replicas running" if replicas == 0 else (f"{dead} dead" if dead else "")
        sub_text = " · ".join(t for t in (cls, warning) if t)
        text_y = y + (0 if sub_text else 4.5)
        sub = (
            f'<text x="{x + width / 2:.1f}" y="{y + 14:.1f}" text-anchor="middle" font-size="10"'
            f' fill="{"#a00000" if warning else "#333333"}">{escape(sub_text)}</text>'
            if sub_text
            else ""
        )
        tip = f"{kind} endpoint {name}" + (f" ({replicas} replicas)" if replicas > 1 else "")
        tip += f", {warning}" if warning else ""
        return (
            f'<g class="node {kind}" data-endpoint="{escape(name)}"><title>{escape(tip)}</title>{shadows}'
            f'<rect x="{x:.1f}" y="{top:.1f}" width="{width:.1f}" height="{BOX_H}" rx="12"'
            f' fill="{fill}" stroke="{stroke}" stroke-width="1.5"/>'
            f'<text x="{x + width / 2:.1f}" y="{text_y:.1f}" text-anchor="middle">{escape(label)}</text>{sub}</g>'
        )

    def _edge(self, kind: str, name: str, x1: float, x2: float, y: float) -> str:
        stroke = TRANSPORT_COLOURS[0] if kind == "transport" else APPLICATION_COLOURS[0]
        mid = (x1 + x2) / 2
        count = self.topo.counts.get(name)
        count_text = (
            f'<text class="count" x="{mid:.1f}" y="{y + 16:.1f}" text-anchor="middle" font-size="11"'
            f' fill="#333333">{self._count_label(name)}</text>'
            if count is not None
            else ""
        )
        failed = self.topo.failed.get(name)
        if failed:
            count_text += (
                f'<text class="failed" x="{mid:.1f}" y="{y + (29 if count is not None else 16):.1f}"'
                f' text-anchor="middle" font-size="11" fill="#a00000">{failed:,} failed</text>'
            )
        flows = self.topo.flows.get(name)
        tip = f"endpoint {name}" + (": " + ", ".join(f"{d} {n:,}" for d, n in sorted(flows.items())) if flows else "")
        return (
            f'<g class="edge {kind}" data-endpoint="{escape(name)}"><title>{escape(tip)}</title>'
            f'<line x1="{x1 + 2:.1f}" y1="{y:.1f}" x2="{x2 - 2:.1f}" y2="{y:.1f}" stroke="{stroke}"'
            f' stroke-width="2" marker-start="url(#arrow-{kind})" marker-end="url(#arrow-{kind})"/>'
            f'<text x="{mid:.1f}" y="{y - 7:.1f}" text-anchor="middle" font-size="12"'
            f' fill="{stroke}">{escape(name)}</text>{count_text}</g>'
        )

    def _routes(self, ports: dict[str, tuple[float, float]]) -> str:
        if self.topo.routes is None:
            return ""
        out = []
        routed = {name for route in self.topo.routes for name in route[:2]}
        inset = self.disp_w * 0.45
        why: dict[tuple[str, str], list[str]] = defaultdict(list)
        for route in self.topo.routes:
            text = f"{route.direction}: {route.label}"
            if text not in why[route.source, route.destination]:
                why[route.source, route.destination].append(text)
        for (source, target), reasons in why.items():
            (x1, y1), (x2, y2) = ports[source], ports[target]
            bend1 = x1 + inset if x1 == self.x_disp else x1 - inset
            bend2 = x2 + inset if x2 == self.x_disp else x2 - inset
            out.append(
                f'<g class="route" data-from="{escape(source)}" data-to="{escape(target)}">'
                f"<title>route: {escape(source)} → {escape(target)} ({escape('; '.join(reasons))})</title>"
                f'<path d="M {x1:.1f} {y1:.1f} C {bend1:.1f} {y1:.1f}, {bend2:.1f} {y2:.1f}, {x2 - 3:.1f} {y2:.1f}"'
                f' fill="none" stroke="#444444" stroke-width="1.5" marker-end="url(#arrow-route)"/></g>'
            )
        for name, (x, y) in ports.items():
            if name not in routed:
                anchor, dx = ("start", 8) if x == self.x_disp else ("end", -8)
                out.append(
                    f'<text class="unrouted" x="{x + dx:.1f}" y="{y + 4:.1f}" text-anchor="{anchor}"'
                    f' font-size="11" font-style="italic" fill="#a00000">no route</text>'
                )
        return "\n".join(out)


def _markers() -> str:
    colours = {
        "transport": TRANSPORT_COLOURS[0],
        "application": APPLICATION_COLOURS[0],
        "route": "#444444",
    }
    return (
        "<defs>"
        + "".join(
            f'<marker id="arrow-{name}" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7"'
            f' orient="auto-start-reverse"><path d="M 0 0 L 10 5 L 0 10 z" fill="{colour}"/></marker>'
            for name, colour in colours.items()
        )
        + "</defs>"
    )
