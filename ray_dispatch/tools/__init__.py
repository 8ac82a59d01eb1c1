"""Routing experiments: explain a decision, replay traffic, diff two configs, draw the topology.

All of it runs in-process on the core ``Dispatcher`` (no Ray), in a terminal
or a notebook::

    from ray_dispatch.tools import explain, replay, diff, draw

    explain("examples/seed.yaml", make_inbound("hi", transport_name="smpp_transport"))
    replay("examples/multi_country.yaml", "examples/traffic_multi_country.jsonl")
    diff("old.yaml", "new.yaml", "traffic.jsonl")
    draw("examples/seed.yaml")

Each returns an object that prints as text and shows as a table (or a
picture) in Jupyter. Inside a running event loop the plain functions still
work; ``explain_async`` / ``replay_async`` / ``diff_async`` are there for
code that prefers to ``await``.
"""

from ray_dispatch.tools.diff import ConfigDiff, RouteChange, diff, diff_async
from ray_dispatch.tools.draw import Topology, draw
from ray_dispatch.tools.explain import Explanation, Step, explain, explain_async
from ray_dispatch.tools.replay import ReplaySummary, replay, replay_async
from ray_dispatch.tools.traffic import Arrival, BadRecord, TrafficReader

__all__ = [
    "Arrival",
    "BadRecord",
    "ConfigDiff",
    "Explanation",
    "ReplaySummary",
    "RouteChange",
    "Step",
    "Topology",
    "TrafficReader",
    "diff",
    "diff_async",
    "draw",
    "explain",
    "explain_async",
    "replay",
    "replay_async",
]
