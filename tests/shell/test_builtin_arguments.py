"""The built-in endpoints' methods refuse bad arguments with ``InvalidMessage`` naming the argument."""

from __future__ import annotations

from typing import Any

import pytest

from actors.builtin import MemoryTransport
from ray_dispatch.core.errors import InvalidMessage


@pytest.mark.parametrize("bad", [None, "hello", {"content": "a dict, not a list of them"}, 42])
async def test_inject_many_refuses_what_is_not_a_list(bad: Any) -> None:
    transport = MemoryTransport("sms", {})
    with pytest.raises(InvalidMessage, match=r"^messages: expected a list of dicts"):
        await transport.inject_many(bad)


async def test_inject_many_names_the_index_of_a_bad_entry() -> None:
    transport = MemoryTransport("sms", {})
    with pytest.raises(InvalidMessage, match=r"^messages\[1\]: expected a dict"):
        await transport.inject_many([{"content": "ok", "from_addr": "+1", "to_addr": "2"}, ["not", "a", "dict"]])
