"""A router for the live-reconfiguration tests, importable by Ray workers (``tests.helpers_reconf``)."""

from __future__ import annotations

import ray

from actors.builtin import EchoApplication
from routers.content_keyword import ContentKeywordRouter

REFUSAL = "the keyword service is unreachable from this dispatcher"


class RefusedOnSecondDispatcher(ContentKeywordRouter):
    """A ``ContentKeywordRouter`` whose ``setup_routing`` fails in dispatcher actor 1 (and only there).

    Anywhere else (the driver's preflight, dispatcher 0) it sets up as usual.
    """

    def setup_routing(self) -> None:
        """Refuse in dispatcher 1; otherwise set up as ``ContentKeywordRouter`` does.

        Raises:
            ConnectionError: in dispatcher 1.
        """
        name = ray.get_runtime_context().get_actor_name() if ray.is_initialized() else None
        if name is not None and name.endswith(":dispatcher:1"):
            raise ConnectionError(REFUSAL)
        super().setup_routing()


class CannotStart(EchoApplication):
    """An application whose ``start`` always fails (its resources are unavailable)."""

    async def start(self) -> None:
        """Fail.

        Raises:
            RuntimeError: always.
        """
        raise RuntimeError("its database is unavailable")
