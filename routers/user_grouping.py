"""UserGroupingRouter: each user is assigned a group round-robin and sticks to it (A/B tests)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from pydantic import Field

from ray_dispatch.core.errors import NoRoute
from ray_dispatch.core.message import TransportUserMessage
from ray_dispatch.core.router import ExposedName, StaticRoute, TransportName
from routers.common import ExposedNameList, StoreBackedRouter, StoreNamespaceConfig, each_transport_to
from routers.simple import SimpleDispatchRouter, mapping_routes


class UserGroupingRouter(StoreBackedRouter, SimpleDispatchRouter):
    """Routes each user to the application of their group (Vumi's ``UserGroupingRouter``).

    A ``from_addr`` seen for the first time is assigned the next group in
    round-robin order over the sorted group names; later messages from it go
    to the same group. Assignments live in the routing store (keys
    ``[dispatcher_name:]user_grouping:user:<from_addr>`` and the counter
    ``...:round-robin``), so they survive restarts with a durable store and
    are shared by dispatchers sharing it. Within one dispatcher, concurrent
    first messages from one user get one group; dispatchers sharing a store
    could still both assign a brand-new user (the store has no set-if-absent).

    Config keys:
        group_mappings: group name -> exposed name (at least one group).
        dispatcher_name: optional prefix of the routing-store keys.
        redis_manager / redis_config: Vumi's; ignored with a logged warning
            (the dispatcher's ``store:`` block chooses the routing store).
        route_mappings: optional, as for ``SimpleDispatchRouter``: where
            events from a transport go when the dispatcher's return-route
            memory does not know the sender.
        transport_mappings: optional; outbound ``transport_name`` ->
            transport name, as for ``SimpleDispatchRouter``.

    A message without ``from_addr`` cannot be grouped and is a failure. A
    remembered group that is no longer in ``group_mappings`` is replaced by
    the next one. Outbound messages leave as with ``SimpleDispatchRouter``.
    """

    STORE_AREA = "user_grouping"

    class CONFIG_CLASS(StoreNamespaceConfig, SimpleDispatchRouter.CONFIG_CLASS):  # noqa: N801 - the contract's name
        """Config of ``UserGroupingRouter``."""

        group_mappings: dict[str, ExposedName] = Field(min_length=1)
        route_mappings: dict[TransportName, ExposedNameList] = Field(default_factory=dict)

    @classmethod
    def static_routes(
        cls, config: Any, transport_names: Sequence[str], exposed_names: Sequence[str]
    ) -> list[StaticRoute] | None:
        """From every transport to each group's application; events also by ``route_mappings``."""
        routes = [
            route
            for group, app in config.group_mappings.items()
            for route in each_transport_to(app, transport_names, f"group {group!r}")
        ]
        return routes + mapping_routes(config.route_mappings, "event", "route_mappings")

    def setup_routing(self) -> None:
        """Prepare the lock that serialises group assignment for new users."""
        super().setup_routing()
        self._assign_lock = asyncio.Lock()

    # Async (it awaits the store) where SimpleDispatchRouter's is sync; the contract allows both.
    async def dispatch_inbound_message(self, msg: TransportUserMessage) -> None:  # type: ignore[override]
        """Send ``msg`` to the application of its sender's group (assigning one if new)."""
        user = msg.user()
        if not user:
            raise NoRoute(f"UserGroupingRouter groups users by from_addr, and this message has none ({user!r})")
        groups: dict[str, str] = self.config.group_mappings
        user_key = self.store_key("user", user)
        group = await self.dispatcher.store.get(user_key)
        if group in groups:
            self.explain("from_addr %r is in group %r (remembered)", user, group)
        else:
            group = await self._assign_group(user, user_key)
        app = groups[group]
        self.explain("group_mappings[%r] -> %r", group, app)
        self.dispatcher.publish_inbound_message(app, msg)

    async def _assign_group(self, user: str, user_key: str) -> str:
        # One assignment at a time, re-reading under the lock, so two concurrent
        # first messages from one user cannot land in two groups.
        async with self._assign_lock:
            group = await self.dispatcher.store.get(user_key)
            if group in self.config.group_mappings:
                return str(group)
            if group is not None:
                self.explain("from_addr %r was in group %r, which group_mappings no longer has", user, group)
            group = await self._next_group(user)
            await self.dispatcher.store.set(user_key, group)
            return group

    async def _next_group(self, user: str) -> str:
        names = sorted(self.config.group_mappings)
        turn = await self.dispatcher.store.incr(self.store_key("round-robin")) - 1
        group = names[turn % len(names)]
        self.explain("from_addr %r is new: round-robin turn %d over %s assigns group %r", user, turn, names, group)
        return group
