"""Builtin routers: Vumi's, with the same config keys and behaviour.

Vumi class paths (``vumi.dispatchers.SimpleDispatchRouter``,
``vumi.dispatchers.base.<Name>``, ``vumi.dispatchers.load_balancer.LoadBalancingRouter``)
resolve to the classes exported here.
"""

from routers.content_keyword import ContentKeywordRouter
from routers.from_addr import FromAddrMultiplexRouter
from routers.load_balancer import LoadBalancingRouter
from routers.redirect import RedirectOutboundRouter, RedirectRouter
from routers.simple import SimpleDispatchRouter
from routers.to_addr import ToAddrRouter
from routers.transport_to_transport import TransportToTransportRouter
from routers.user_grouping import UserGroupingRouter

__all__ = [
    "ContentKeywordRouter",
    "FromAddrMultiplexRouter",
    "LoadBalancingRouter",
    "RedirectOutboundRouter",
    "RedirectRouter",
    "SimpleDispatchRouter",
    "ToAddrRouter",
    "TransportToTransportRouter",
    "UserGroupingRouter",
]
