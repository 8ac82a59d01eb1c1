"""Vumi's storage keys (``redis_manager``, ``riak_manager``) in a middleware config: accepted, but the store decides."""

from __future__ import annotations

import logging

from ray_dispatch.core.middleware import BaseMiddleware

logger = logging.getLogger(__name__)

VUMI_STORAGE_KEYS = ("redis_manager", "riak_manager", "redis", "riak")


def warn_ignored_storage_keys(middleware: BaseMiddleware) -> None:
    """Log once per key that Vumi's storage settings are ignored: the dispatcher's ``store:`` block decides."""
    extra = middleware.config.__pydantic_extra__ or {}
    for key in VUMI_STORAGE_KEYS:
        if key in extra:
            logger.warning(
                "middleware %r: config key %r is ignored; the dispatcher's 'store:' block chooses the routing store",
                middleware.name,
                key,
            )
