"""What a deployment runs: the ``endpoints:`` and ``dispatcher:`` config sections.

These are our additions to Vumi's dispatcher YAML, validated without Ray::

    dispatcher:
      replicas: 1                # dispatcher actors sharing the routing store
      actor_options: {num_cpus: 0}
    endpoints:
      smpp_transport:
        class: actors.MemoryTransport   # dotted path of a TransportActor / ApplicationActor
        replicas: 2
        policy: sticky                  # round_robin | sticky | least_loaded
        actor_options: {num_cpus: 0.5, max_restarts: -1}
        batching: {max_batch: 500}      # dispatcher -> this endpoint
        rate_limit: 50                  # messages per second to this endpoint (an SMSC's TPS)
        config: {auto_ack: true}        # the endpoint's own config

An endpoint without a ``class`` is not started by the deployment: its
replicas are spawned from code later (``Deployment.spawn``).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ray_dispatch.core.config import DispatcherConfig
from ray_dispatch.core.errors import ConfigError
from ray_dispatch.core.router import format_validation_error

Policy = Literal["round_robin", "sticky", "least_loaded"]

DEFAULT_ACTOR_OPTIONS: dict[str, Any] = {"num_cpus": 0, "max_restarts": -1}
"""Endpoint and dispatcher actors take no CPU reservation and are restarted when they die."""

_ACTOR_OPTION_KEYS = frozenset(
    {
        "num_cpus",
        "num_gpus",
        "memory",
        "resources",
        "scheduling_strategy",
        "runtime_env",
        "max_restarts",
        "max_concurrency",
        "label_selector",
        "accelerator_type",
        "max_pending_calls",
    }
)


def _check_actor_options(options: dict[str, Any]) -> dict[str, Any]:
    unknown = sorted(set(options) - _ACTOR_OPTION_KEYS)
    if unknown:
        raise ValueError(f"unsupported actor option(s) {unknown}; allowed: {sorted(_ACTOR_OPTION_KEYS)}")
    return options


class EndpointSpec(BaseModel):
    """How one endpoint name is backed by actors (see the module docstring)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    class_path: str | None = Field(None, alias="class")
    replicas: int = Field(1, ge=0)
    policy: Policy = "round_robin"
    actor_options: dict[str, Any] = Field(default_factory=dict)
    batching: dict[str, Any] = Field(default_factory=dict)
    rate_limit: float | None = Field(None, gt=0)
    config: dict[str, Any] = Field(default_factory=dict)

    def options(self) -> dict[str, Any]:
        """Ray actor options: the defaults overridden by ``actor_options``."""
        return {**DEFAULT_ACTOR_OPTIONS, **_check_actor_options(self.actor_options)}


class DispatcherSpec(BaseModel):
    """The ``dispatcher:`` section: how many dispatcher actors and their options."""

    model_config = ConfigDict(extra="forbid")

    replicas: int = Field(1, ge=1)
    actor_options: dict[str, Any] = Field(default_factory=dict)
    batching: dict[str, Any] = Field(default_factory=dict)

    def options(self) -> dict[str, Any]:
        """Ray actor options: the defaults overridden by ``actor_options``."""
        return {**DEFAULT_ACTOR_OPTIONS, **_check_actor_options(self.actor_options)}


class DeploymentSpec(BaseModel):
    """Everything a deployment starts: dispatcher actors and endpoint actors."""

    dispatcher: DispatcherSpec
    endpoints: dict[str, EndpointSpec]

    def role(self, config: DispatcherConfig, endpoint: str) -> str:
        """Return ``transport`` or ``application`` for an endpoint name."""
        return "transport" if endpoint in config.transport_names else "application"


def deployment_spec(config: DispatcherConfig) -> DeploymentSpec:
    """Validate the ``dispatcher:`` and ``endpoints:`` sections of ``config``.

    Every endpoint name gets a spec (an empty one, started by no-one, when
    the config does not mention it).

    Raises:
        ConfigError: names the key (``endpoints.sms.replicas``) and the value.
    """
    raw_endpoints = config.raw.get("endpoints") or {}
    if not isinstance(raw_endpoints, dict):
        raise ConfigError(f"{_where(config)}endpoints: must be a mapping of endpoint name to spec")
    try:
        spec = DeploymentSpec.model_validate(
            {
                "dispatcher": config.raw.get("dispatcher") or {},
                "endpoints": {
                    name: raw_endpoints.get(name) or {} for name in [*config.transport_names, *config.exposed_names]
                },
            }
        )
    except ValidationError as exc:
        raise ConfigError(_where(config) + format_validation_error(exc, "deployment config")) from None
    for name, endpoint in spec.endpoints.items():
        try:
            endpoint.options()
        except ValueError as exc:
            raise ConfigError(f"{_where(config)}endpoints.{name}.actor_options: {exc}") from None
    try:
        spec.dispatcher.options()
    except ValueError as exc:
        raise ConfigError(f"{_where(config)}dispatcher.actor_options: {exc}") from None
    return spec


def check_endpoint_config(endpoint: str, cls: type, config: dict[str, Any]) -> None:
    """Validate an endpoint's own ``config`` against its class's ``CONFIG_CLASS`` before any actor starts.

    A bad key then fails as a ``ConfigError`` naming it, not as an actor that
    died in its constructor.

    Raises:
        ConfigError: names ``endpoints.<endpoint>.config``, the class and the key.
    """
    model = getattr(cls, "CONFIG_CLASS", None)
    if not (isinstance(model, type) and issubclass(model, BaseModel)):
        return
    try:
        model.model_validate(dict(config))
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, f"endpoints.{endpoint}.config ({cls.__name__})")) from None


def _where(config: DispatcherConfig) -> str:
    return f"{config.source}: " if config.source else ""
