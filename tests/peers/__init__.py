"""Real peers for transport tests: servers and helpers started on loopback."""
