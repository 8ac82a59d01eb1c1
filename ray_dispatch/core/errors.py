"""Exceptions raised by ray_dispatch.

Names say whose fault it is: ``ConfigError`` and ``InvalidMessage`` are the
caller's input; ``NoRoute`` is a routing decision that found no destination;
``DeliveryError`` is the world (an endpoint that died or refused).
"""

from __future__ import annotations

import difflib
import re
import types
import typing
from collections import abc
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError


class DispatchError(Exception):
    """Base class of every error ray_dispatch raises on purpose."""


class ConfigError(DispatchError, ValueError):
    """A dispatcher, router, middleware or endpoint config is invalid.

    The message names the key (``route_mappings.sms``), the offending value
    and, when loaded from a file, the file.
    """


class InvalidMessage(DispatchError, ValueError):
    """A message or event payload does not satisfy the Vumi message contract.

    The message names the field and what was wrong with it.
    """


class NoRoute(DispatchError):
    """A router found no destination for a message.

    Routers raise it (or let the dispatcher see no publish at all); the
    dispatcher turns it into a failure record with this text as the reason.
    """


class UnknownEndpoint(DispatchError, LookupError):
    """A message was addressed to an endpoint name the dispatcher does not have."""


class MiddlewareError(DispatchError):
    """A middleware hook broke its contract (for example returned None)."""


class RoutingLoop(DispatchError):
    """A message exceeded the dispatcher's hop limit (a routing cycle)."""


class DeliveryError(DispatchError):
    """An endpoint could not take a message (died, refused, timed out)."""


class DropMessage(DispatchError):
    """Raised by a middleware hook to drop the current message on purpose.

    The drop is counted under its reason in the dispatcher's stats and shown in
    traces; it is not a failure record.
    """


class StoreError(DispatchError):
    """A routing or failure store could not do what was asked (the store's side).

    The message names the store (its URL with any password masked) and the key.
    """


class StoreUnavailable(StoreError, ConnectionError):
    """A store's server could not be reached or did not answer in time.

    Raised promptly after a bounded number of reconnect attempts, never by
    hanging; the operation may succeed again once the server is back.
    """


# -- error text helpers (one implementation each) ------------------------------------

SECRET_KEY = re.compile(r"pass(word|wd|phrase)?|secret|token|api_?key|credential|private_?key", re.IGNORECASE)
"""Config keys whose values are never shown in an error, whatever their type."""

NEVER_SHOWN = frozenset({"extra_forbidden", "secret_inline"})
"""pydantic error types whose input is never shown (an unknown key's value may be anything, a secret's is one)."""


def one_line(exc: BaseException) -> str:
    """``Type: message`` of ``exc`` on one line (a multi-line message's lines joined)."""
    return f"{type(exc).__name__}: {' '.join(str(exc).split())}"


def in_file(source: str | Path | None, error: ConfigError) -> ConfigError:
    """Return ``error`` with ``source: `` (the config file) in front; unchanged if it already starts so, or no file."""
    if not source:
        return error
    where = f"{source}: "
    return error if str(error).startswith(where) else ConfigError(where + str(error))


def did_you_mean(key: str, known: Iterable[str]) -> str:
    """Return ``"; did you mean 'x'?"`` when a known key is close to ``key``, else ``""``."""
    close = difflib.get_close_matches(key, sorted(set(known)), n=1, cutoff=0.7)
    return f"; did you mean {close[0]!r}?" if close else ""


def is_secret_key(path: Sequence[object]) -> bool:
    """Whether a key path (``["endpoints", "sms", "config", "password"]``) leads to a secret-looking key."""
    return any(isinstance(part, str) and SECRET_KEY.search(part) for part in path)


def got(value: object) -> str:
    """`` (got 'x')`` for a plain value in an error; nothing for a mapping or list (it may hold secrets)."""
    return "" if isinstance(value, (Mapping, list, tuple, set)) else f" (got {value!r})"


def format_validation_error(exc: ValidationError, what: str, model: type[BaseModel] | None = None) -> str:
    """Turn a pydantic error into one line naming each bad key and its value.

    An unknown key is named with a did-you-mean when ``model`` (the model that
    was validated) declares a close one. A value is never shown when it sits
    under a secret-looking key (password, token, ...), was given inline for a
    ``Secret``, or belongs to an unknown key.
    """
    parts = []
    for item in exc.errors():
        loc = [p for p in item["loc"] if p != "[key]"]
        key = ".".join(str(p) for p in loc) or "(top level)"
        msg = item["msg"].removeprefix("Value error, ")
        if item["type"] == "extra_forbidden" and loc:
            msg = "unknown key" + did_you_mean(str(loc[-1]), _known_keys(model, loc[:-1]))
        value = item.get("input")
        hidden = item["type"] in NEVER_SHOWN or item["type"] == "missing" or is_secret_key(loc)
        parts.append(f"{key}: {msg}{'' if hidden else got(value)}")
    return f"invalid {what}: " + "; ".join(parts)


def _known_keys(model: type[BaseModel] | None, path: Sequence[object]) -> list[str]:
    """The keys (field names and aliases) the model reached by ``path`` from ``model`` declares."""
    current: Any = model
    for part in path:
        current = _step(current, part)
    if typing.get_origin(current) in (typing.Union, types.UnionType):  # an optional block: ``Spec | None``
        current = next((a for a in typing.get_args(current) if isinstance(a, type) and issubclass(a, BaseModel)), None)
    if not (isinstance(current, type) and issubclass(current, BaseModel)):
        return []
    fields = current.model_fields
    return [*fields, *(f.alias for f in fields.values() if f.alias)]


def _step(annotation: Any, part: object) -> Any:
    """The annotation one key (or list index) below ``annotation``, or None when it cannot be told."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        for name, field in annotation.model_fields.items():
            if part in (name, field.alias):
                return field.annotation
        return None
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin in (dict, abc.Mapping) and len(args) == 2:
        return args[1]
    if origin in (list, abc.Sequence) and args and isinstance(part, int):
        return args[0]
    if origin in (typing.Union, types.UnionType):
        for arg in args:
            found = _step(arg, part)
            if found is not None:
                return found
    return None
