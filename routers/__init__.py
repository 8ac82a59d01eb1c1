"""Builtin routers: Vumi's, with the same config keys and behaviour.

Vumi class paths (``vumi.dispatchers.SimpleDispatchRouter``,
``vumi.dispatchers.base.<Name>``, ``vumi.dispatchers.load_balancer.LoadBalancingRouter``)
resolve to the classes exported here.
"""

from routers.simple import SimpleDispatchRouter

__all__ = ["SimpleDispatchRouter"]
