"""A test router that makes a routing loop: every inbound message goes out through the other transport.

With a transport that hands its outbound messages back in as inbound (see
``test_routing_loop.py``), a message bounces ``t1 -> t2 -> t1 -> ...`` until
the dispatcher's hop limit stops it.
"""

from __future__ import annotations

from ray_dispatch.core.message import TransportUserMessage
from ray_dispatch.core.router import BaseDispatchRouter


class BounceRouter(BaseDispatchRouter):
    """Sends each inbound message out through the transport it did not arrive on (two transports)."""

    def dispatch_inbound_message(self, msg: TransportUserMessage) -> None:
        """Publish ``msg`` outbound to the other transport."""
        arrived = self.dispatcher.current_endpoint()
        (other,) = [name for name in self.dispatcher.transport_names if name != arrived]
        self.dispatcher.publish_outbound_message(other, msg)
