"""Built-in middleware, one per module, and the middleware contract they implement.

``vumi.middleware.<Name>`` in a config resolves here. The contract
(``BaseMiddleware``, ``MiddlewareConfig``, ``MiddlewareStack``) lives in
``ray_dispatch.core.middleware`` and is re-exported so that
``from ray_dispatch.middleware import BaseMiddleware`` keeps working.
"""

from ray_dispatch.core.middleware import BaseMiddleware, MiddlewareConfig, MiddlewareStack
from ray_dispatch.middleware.logging import LoggingMiddleware

__all__ = ["BaseMiddleware", "LoggingMiddleware", "MiddlewareConfig", "MiddlewareStack"]
