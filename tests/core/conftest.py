"""Shared fixtures for the core tests (helpers live in ``helpers.py``)."""

from __future__ import annotations

from typing import Any

import pytest

from .helpers import FakeClock, simple_config


@pytest.fixture
def clock() -> FakeClock:
    """A fresh fake clock."""
    return FakeClock()


@pytest.fixture
def config() -> dict[str, Any]:
    """A fresh ``simple_config()``: sms -> app1, xmpp -> app1 + app2, ussd has no mapping."""
    return simple_config()
