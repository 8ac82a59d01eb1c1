"""Hostile-input and routing-loop tests of the dispatcher core (no Ray)."""
