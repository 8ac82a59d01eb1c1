"""Routing stores (key/value with TTL) and failure stores, each contract beside its implementations."""
