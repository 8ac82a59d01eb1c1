"""Transports to real peers: HTTP, telnet, SMPP 3.4 and XMPP.

Each module holds one ``TransportActor`` subclass and its documented config
model. All of them reconnect (or rebind) with bounded backoff while running,
wait (bounded) for the peer to come back before refusing an outbound message,
and map the peer's acknowledgements, rejections and receipts to ``ack``,
``nack`` and ``delivery_report`` events.
"""
