"""Tests of the routing and failure stores (memory and Redis)."""
