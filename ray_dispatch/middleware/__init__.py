"""Built-in middleware, one per module, and the middleware contract they implement.

``vumi.middleware.<Name>`` and ``vumi.middleware.<module>.<Name>`` (Vumi's
paths: ``vumi.middleware.tagger.TaggingMiddleware``, ...) in a config resolve here. The contract
(``BaseMiddleware``, ``MiddlewareConfig``, ``MiddlewareStack``) lives in
``ray_dispatch.core.middleware`` and is re-exported so that
``from ray_dispatch.middleware import BaseMiddleware`` keeps working.
"""

from ray_dispatch.core.middleware import BaseMiddleware, MiddlewareConfig, MiddlewareStack
from ray_dispatch.middleware.address_translator import AddressTranslationMiddleware
from ray_dispatch.middleware.logging import LoggingMiddleware
from ray_dispatch.middleware.message_storing import MessageStoreReader, StoredMessage, StoringMiddleware
from ray_dispatch.middleware.provider_setter import (
    AddressPrefixProviderSettingMiddleware,
    StaticProviderSettingMiddleware,
)
from ray_dispatch.middleware.session_length import SessionLengthMiddleware
from ray_dispatch.middleware.tagger import TaggingMiddleware

__all__ = [
    "AddressPrefixProviderSettingMiddleware",
    "AddressTranslationMiddleware",
    "BaseMiddleware",
    "LoggingMiddleware",
    "MessageStoreReader",
    "MiddlewareConfig",
    "MiddlewareStack",
    "SessionLengthMiddleware",
    "StaticProviderSettingMiddleware",
    "StoredMessage",
    "StoringMiddleware",
    "TaggingMiddleware",
]
