"""Re-export of the connection-state model, which lives in ``actors.connection`` (one model for every transport)."""

from actors.connection import ConnectionState, PeerRefused

__all__ = ["ConnectionState", "PeerRefused"]
