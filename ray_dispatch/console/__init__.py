"""A web console served by the deployment itself: topology, endpoints, failures, config, and a JSON API.

``ray-dispatch run`` starts it and prints one line, ``console:
http://127.0.0.1:PORT/?token=...``; ``ray-dispatch console --deployment NAME``
prints it again. From Python::

    from ray_dispatch.console import start_console, console_url
    url = start_console(deployment)      # once per deployment; later calls return the same URL

It runs in a named Ray actor next to the deployment's (``actor``: why there),
listens on ``127.0.0.1`` by default, and refuses every request without its
token (``app``). ``/api/openapi.json`` describes the JSON API the pages use.
"""

from ray_dispatch.console.actor import ConsoleActor, console_url, start_console

__all__ = ["ConsoleActor", "console_url", "start_console"]
