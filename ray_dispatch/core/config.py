"""Load and validate dispatcher configs (Vumi's YAML, unchanged, plus our extras).

A config is a flat mapping: the dispatcher's own keys (``router_class``,
``transport_names``, ``exposed_names``, ``middleware``, ...), the router's keys
at the top level (as in Vumi), and one top-level block per middleware name.
Vumi class paths (``vumi.dispatchers.SimpleDispatchRouter``, ...) resolve to
ours so existing files work.

Our additions say what a deployment runs, and are declared here too::

    dispatcher:
      replicas: 1                # dispatcher actors sharing the routing store
      actor_options: {num_cpus: 0}
      batching: {max_batch: 500}        # every endpoint -> the dispatchers
    endpoints:
      smpp_transport:
        class: actors.MemoryTransport   # dotted path of a TransportActor / ApplicationActor
        replicas: 2
        policy: sticky                  # round_robin | sticky | least_loaded
        actor_options: {num_cpus: 0.5, max_restarts: -1}
        batching: {max_batch: 500}      # dispatcher -> this endpoint (``BatchingOptions``)
        rate_limit: 50                  # messages per second to this endpoint (an SMSC's TPS)
        config: {auto_ack: true}        # the endpoint's own config (its class's ``CONFIG_CLASS``)
        autoscaling: {min_replicas: 1, max_replicas: 4}  # replicas follow the load (``core.autoscaling``)

An endpoint without a ``class`` is not started by the deployment: its
replicas are spawned from code later (``Deployment.spawn``). Unknown keys in
these blocks are refused, naming the key and, when one is close, the key meant.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from ray_dispatch.core.autoscaling import AutoscalingSpec
from ray_dispatch.core.batching import BatchingOptions
from ray_dispatch.core.errors import ConfigError, did_you_mean, format_validation_error, got, in_file
from ray_dispatch.core.vumi import IncludeError, load_yaml, unavailable_vumi_class, unsupported_vumi_config, vumi_alias

DEFAULT_RETURN_ROUTE_TTL = 7 * 24 * 3600.0


def _under(target: str, prefix: str) -> bool:
    """Whether dotted ``target`` is ``prefix`` or inside it (``routers`` allows ``routers.x``, not ``routersx``)."""
    prefix = prefix.rstrip(".")
    return target == prefix or target.startswith(prefix + ".")


BUILTIN_PREFIXES = ("ray_dispatch", "routers", "actors")
"""Our own packages: always allowed, whatever ``allowed_prefixes`` says."""

_BUILTIN_PACKAGES = ("routers", "ray_dispatch.middleware")
"""Packages whose ``__all__`` lists the builtin classes a config names by short path (``routers.X``)."""


def resolve_class(path: str, key: str, base: type | None = None, allowed_prefixes: Sequence[str] | None = None) -> type:
    """Import the class named by dotted ``path`` (Vumi paths aliased).

    With ``allowed_prefixes`` (for configs from less trusted hands), only
    classes under those module prefixes or ``BUILTIN_PREFIXES`` load.

    Raises:
        ConfigError: names ``key``, the path, and why it could not be used
            (not allowed, no such module or class, wrong base class).
    """
    if not isinstance(path, str) or "." not in path:
        raise ConfigError(f"{key}: expected a dotted class path like 'routers.SimpleDispatchRouter' (got {path!r})")
    unavailable = unavailable_vumi_class(path)
    if unavailable is not None:
        raise ConfigError(f"{key}: {unavailable}")
    target = vumi_alias(path)
    if allowed_prefixes is not None and not any(_under(target, p) for p in (*BUILTIN_PREFIXES, *allowed_prefixes)):
        raise ConfigError(
            f"{key}: class {target!r} is refused: not under the allowed prefixes {list(allowed_prefixes)}"
        )
    module_name, _, class_name = target.rpartition(".")
    if not module_name or not class_name:
        raise ConfigError(f"{key}: expected a dotted class path like 'routers.SimpleDispatchRouter' (got {path!r})")
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # ImportError, or the module itself failing to run
        raise ConfigError(
            f"{key}: cannot import module {module_name!r} for {path!r} ({type(exc).__name__}: {exc})"
        ) from None
    cls = getattr(module, class_name, None)
    if not isinstance(cls, type):
        builtin = sorted(getattr(module, "__all__", ())) if module_name in _BUILTIN_PACKAGES else []
        if builtin:  # routers.X / vumi.dispatchers.X: list what there is rather than name our package
            raise ConfigError(
                f"{key}: {path!r} is not a builtin class; the builtin ones are {', '.join(builtin)}"
                f"{did_you_mean(class_name, builtin)}"
            )
        raise ConfigError(f"{key}: module {module_name!r} has no class {class_name!r} (from {path!r})")
    if base is not None and not issubclass(cls, base):
        raise ConfigError(f"{key}: {path!r} is not a subclass of {base.__module__}.{base.__name__}")
    return cls


class MiddlewareSpec(BaseModel):
    """One entry of the ``middleware:`` list, normalised (unknown keys, such as typos, are refused)."""

    model_config = ConfigDict(extra="forbid")

    name: str
    class_path: str
    consume_priority: int = 0
    publish_priority: int = 0


class StoreSpec(BaseModel):
    """The ``store:`` block: which routing store backs this dispatcher.

    ``class`` is a dotted path of a ``RoutingStore`` (default the in-memory
    one); the remaining keys are passed to its constructor.
    """

    model_config = ConfigDict(extra="allow", populate_by_name=True)

    class_path: str = Field("ray_dispatch.store.MemoryStore", alias="class")


class FailureStoreSpec(StoreSpec):
    """The ``failure_store:`` block: where failure records (dead letters) are kept.

    ``class`` is a dotted path of a ``FailureStore`` (default the in-memory
    one; ``ray_dispatch.redis_failures.RedisFailureStore`` keeps them in Redis,
    shared by dispatcher replicas); the remaining keys go to its constructor.
    """

    class_path: str = Field("ray_dispatch.failures.MemoryFailureStore", alias="class")


class ConsoleSpec(BaseModel):
    """The ``console:`` block: the web console ``ray-dispatch run`` starts (``ray_dispatch.console``).

    Attributes:
        enabled: whether ``run`` starts it (default yes; ``--no-console`` also turns it off).
        host: the address it listens on (default ``127.0.0.1``: this machine only).
        port: the port it listens on; 0 (the default) picks a free one.
    """

    model_config = ConfigDict(extra="forbid")

    enabled: bool = True
    host: str = Field("127.0.0.1", min_length=1)
    port: int = Field(0, ge=0, le=65535)


DISPATCHER_NAME = "dispatcher"
"""Reserved: the dispatcher actors are named ``<deployment>:dispatcher:<index>`` (``actors.naming``)."""

Policy = Literal["round_robin", "sticky", "least_loaded"]
Role = Literal["transport", "application"]

DEFAULT_ACTOR_OPTIONS: dict[str, Any] = {"num_cpus": 0, "max_restarts": -1}
"""Endpoint and dispatcher actors take no CPU reservation and are restarted when they die."""

ACTOR_OPTION_KEYS = frozenset(
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
"""The Ray actor options a config may set in ``actor_options``."""


def _check_actor_options(options: dict[str, Any]) -> dict[str, Any]:
    for key in options:
        if key not in ACTOR_OPTION_KEYS:
            raise ValueError(
                f"unsupported actor option {key!r}{did_you_mean(key, ACTOR_OPTION_KEYS)}"
                f" (allowed: {sorted(ACTOR_OPTION_KEYS)})"
            )
    return options


def _mapping_or_empty(value: Any) -> Any:
    """``None`` (an empty YAML block) as an empty mapping."""
    return {} if value is None else value


class ActorSpec(BaseModel):
    """What the ``endpoints:`` entries and the ``dispatcher:`` section share: actor options and batching."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    actor_options: dict[str, Any] = Field(default_factory=dict)
    batching: BatchingOptions = Field(default_factory=BatchingOptions)

    _actor_options = field_validator("actor_options")(_check_actor_options)
    _empty = field_validator("actor_options", "batching", mode="before")(_mapping_or_empty)

    def options(self) -> dict[str, Any]:
        """Ray actor options: the defaults overridden by ``actor_options``."""
        return {**DEFAULT_ACTOR_OPTIONS, **self.actor_options}


class EndpointSpec(ActorSpec):
    """How one endpoint name is backed by actors (the ``endpoints:`` entry; see the module docstring).

    ``batching`` is for the dispatcher's sends to this endpoint.
    """

    class_path: str | None = Field(None, alias="class")
    replicas: int = Field(1, ge=0)
    policy: Policy = "round_robin"
    rate_limit: float | None = Field(None, gt=0)
    config: dict[str, Any] = Field(default_factory=dict)
    autoscaling: AutoscalingSpec | None = None

    _empty_config = field_validator("config", mode="before")(_mapping_or_empty)

    @model_validator(mode="after")
    def _replicas_within_autoscaling(self) -> EndpointSpec:
        scaling = self.autoscaling
        if scaling is None:
            return self
        if not self.class_path:
            raise ValueError("autoscaling needs a 'class': the autoscaler starts replicas of it")
        if "replicas" not in self.model_fields_set:
            self.replicas = scaling.min_replicas
        elif not scaling.min_replicas <= self.replicas <= scaling.max_replicas:
            raise ValueError(
                f"replicas ({self.replicas}) is outside autoscaling's"
                f" [min_replicas, max_replicas] = [{scaling.min_replicas}, {scaling.max_replicas}]"
            )
        return self


class DispatcherSpec(ActorSpec):
    """The ``dispatcher:`` section: how many dispatcher actors; ``batching`` is for the endpoints' sends to them.

    ``call_deadline``: seconds a call to an endpoint replica may go unconfirmed
    before the dispatcher probes the replica (0 turns this off); ``probe_timeout``:
    seconds the probe may take before the replica's messages go to the others.
    """

    replicas: int = Field(1, ge=1)
    call_deadline: float = Field(2.0, ge=0)
    probe_timeout: float = Field(1.0, gt=0)


class DispatcherConfig(BaseModel):
    """The dispatcher's own config keys, validated.

    Attributes:
        router_class: dotted path of the router class.
        transport_names: endpoints facing transports.
        exposed_names: endpoints facing applications.
        middleware: Vumi-style list of ``{name: class}`` or ``{name: {class: ..., ...}}``.
        endpoints: how each endpoint name is backed by actors (every name has one;
            an empty spec starts nothing).
        dispatcher: the dispatcher actors' replicas, actor options and batching.
        store: routing store spec (default in-memory).
        failure_store: failure store spec (default in-memory).
        return_route_ttl: seconds the dispatcher remembers which application sent
            an outbound message, so its events find their way back (default 7 days).
        max_hops: a message consumed more times than this is a routing loop.
        recent_outcomes: how many recent messages each dispatcher actor remembers
            for explain-by-id (0 turns it off).
        console: the web console's address, and whether ``run`` starts it.
        raw: the whole config as given (routers and middleware read their keys here).
        source: the file it came from, if any.
    """

    model_config = ConfigDict(extra="ignore")

    router_class: str
    transport_names: list[str]
    exposed_names: list[str] = Field(default_factory=list)
    middleware: list[MiddlewareSpec] = Field(default_factory=list)
    endpoints: dict[str, EndpointSpec] = Field(default_factory=dict)
    dispatcher: DispatcherSpec = Field(default_factory=DispatcherSpec)
    store: StoreSpec = Field(default_factory=StoreSpec)  # type: ignore[arg-type]
    failure_store: FailureStoreSpec = Field(default_factory=FailureStoreSpec)  # type: ignore[arg-type]
    return_route_ttl: float = Field(DEFAULT_RETURN_ROUTE_TTL, gt=0)
    max_hops: int = Field(10, ge=1)
    recent_outcomes: int = Field(10_000, ge=0, strict=True)
    console: ConsoleSpec = Field(default_factory=ConsoleSpec)
    raw: dict[str, Any] = Field(default_factory=dict)
    source: str | None = None

    @field_validator("transport_names", "exposed_names", mode="before")
    @classmethod
    def _names_list(cls, value: Any) -> Any:
        if isinstance(value, str):
            raise ValueError("must be a list of endpoint names, not a single string")
        return value

    @field_validator("endpoints", mode="before")
    @classmethod
    def _endpoint_blocks(cls, value: Any) -> Any:
        if value is None:
            return {}
        if not isinstance(value, Mapping):
            raise ValueError("must be a mapping of endpoint name to spec")
        return {name: _mapping_or_empty(spec) for name, spec in value.items()}

    _empty_dispatcher = field_validator("dispatcher", "console", mode="before")(_mapping_or_empty)

    @field_validator("middleware", mode="before")
    @classmethod
    def _normalise_middleware(cls, value: Any) -> Any:
        if value is None:
            return []
        if not isinstance(value, list):
            raise ValueError("must be a list of {name: class} entries")
        specs = []
        for index, entry in enumerate(value):
            if not isinstance(entry, dict) or len(entry) != 1:
                raise ValueError(f"entry {index} must be a single {{name: class}} mapping{got(entry)}")
            ((name, spec),) = entry.items()
            if isinstance(spec, str):
                specs.append({"name": name, "class_path": spec})
            elif isinstance(spec, dict) and "class" in spec:
                extra = {k: v for k, v in spec.items() if k != "class"}
                specs.append({"name": name, "class_path": spec["class"], **extra})
            else:
                raise ValueError(f"entry {name!r} must be a class path or a mapping with a 'class' key{got(spec)}")
        return specs

    @model_validator(mode="after")
    def _check_names(self) -> DispatcherConfig:
        if not self.transport_names and not self.exposed_names:
            raise ValueError("transport_names and exposed_names are both empty: nothing to route between")
        for key in ("transport_names", "exposed_names"):
            names: list[str] = getattr(self, key)
            dupes = sorted({n for n in names if names.count(n) > 1})
            if dupes:
                raise ValueError(f"{key} lists {dupes} more than once")
        both = sorted(set(self.transport_names) & set(self.exposed_names))
        if both:
            raise ValueError(f"{both} appear in both transport_names and exposed_names")
        if DISPATCHER_NAME in self.transport_names + self.exposed_names:
            raise ValueError(f"{DISPATCHER_NAME!r} cannot be an endpoint name: the dispatcher actors are called so")
        unknown = sorted(set(self.endpoints) - set(self.transport_names) - set(self.exposed_names))
        if unknown:
            raise ValueError(f"endpoints {unknown} are in neither transport_names nor exposed_names")
        mw_names = [m.name for m in self.middleware]
        if len(set(mw_names)) != len(mw_names):
            raise ValueError(f"middleware names must be unique (got {mw_names})")
        for name in [*self.transport_names, *self.exposed_names]:
            self.endpoints.setdefault(name, EndpointSpec())
        return self

    def role(self, endpoint: str) -> Role:
        """Whether ``endpoint`` faces a transport or an application.

        Raises:
            ConfigError: ``endpoint`` is in neither ``transport_names`` nor ``exposed_names``.
        """
        if endpoint in self.transport_names:
            return "transport"
        if endpoint in self.exposed_names:
            return "application"
        raise ConfigError(
            f"unknown endpoint {endpoint!r}: not in transport_names {self.transport_names}"
            f" or exposed_names {self.exposed_names}"
        )

    def is_transport(self, endpoint: str) -> bool:
        """Whether ``endpoint`` is one of ``transport_names`` (``role`` is ``"transport"``)."""
        return endpoint in self.transport_names

    @property
    def endpoint_names(self) -> list[str]:
        """Every endpoint name: the transports, then the applications."""
        return [*self.transport_names, *self.exposed_names]

    def check_top_level_keys(self, router_keys: Iterable[str]) -> None:
        """Refuse a top-level key that looks like a typo of a known one (with the key meant).

        Known: the dispatcher's own keys, ``router_keys`` (the router's
        ``CONFIG_CLASS`` fields) and the middleware names. Other unknown keys
        pass, as Vumi configs carry keys for other components at the top level.

        Raises:
            ConfigError: names the key and the one it is close to.
        """
        own = set(type(self).model_fields) - {"raw", "source"}
        known = own | set(router_keys) | {m.name for m in self.middleware}
        for key in self.raw:
            hint = "" if key in known else did_you_mean(key, known)
            if hint:
                raise self.located(ConfigError(f"{key}: unknown key{hint}"))

    def middleware_config(self, name: str) -> dict[str, Any]:
        """Return the top-level config block of middleware ``name`` (empty if none)."""
        block = self.raw.get(name) or {}
        if not isinstance(block, Mapping):
            raise self.located(ConfigError(f"{name}: middleware config must be a mapping{got(block)}"))
        return dict(block)

    def located(self, error: ConfigError) -> ConfigError:
        """Return ``error`` with this config's file name in front (``in_file``)."""
        return in_file(self.source, error)


def check_endpoint_config(endpoint: str, cls: type, config: Mapping[str, Any]) -> None:
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
        what = f"endpoints.{endpoint}.config ({cls.__name__})"
        raise ConfigError(format_validation_error(exc, what, model)) from None


def read_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML mapping with the safe loader (never the unsafe one) plus Vumi's ``!include``.

    Raises:
        ConfigError: the file is missing, unreadable, not YAML, or not a mapping;
            an ``!include`` leaves the config's folder, loops or cannot be read.
    """
    try:
        data = load_yaml(Path(path))
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read config file ({exc.strerror or exc})") from None
    except IncludeError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {_yaml_problem(exc)}") from None
    return _yaml_mapping(str(path), data)


def read_yaml_text(text: str, name: str = "pasted config") -> dict[str, Any]:
    """Read a YAML mapping given as text (the safe loader; no ``!include``: there is no folder to read from).

    Raises:
        ConfigError: not YAML, or not a mapping (named ``name``).
    """
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{name}: not valid YAML: {_yaml_problem(exc)}") from None
    return _yaml_mapping(name, data)


def _yaml_mapping(name: str, data: Any) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise ConfigError(f"{name}: a dispatcher config must be a YAML mapping (got {type(data).__name__})")
    return data


def _yaml_problem(exc: yaml.YAMLError) -> str:
    """One line for a YAML error: where (line, column, 1-based) and what, and what was being parsed."""
    if not isinstance(exc, yaml.MarkedYAMLError):
        return " ".join(str(exc).split())
    mark = exc.problem_mark or exc.context_mark
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
    text = f"{where}{exc.problem or exc.context or 'cannot parse'}"
    if exc.context and exc.problem:
        started = exc.context_mark
        at = f" started at line {started.line + 1}, column {started.column + 1}" if started else ""
        text += f" ({exc.context}{at})"
    return " ".join(text.split())


def load_config(source: Mapping[str, Any] | str | Path | DispatcherConfig) -> DispatcherConfig:
    """Load a dispatcher config from a dict, a YAML file path, or an existing config.

    Raises:
        ConfigError: the text names the file (if any), the key and the value.
    """
    if isinstance(source, DispatcherConfig):
        return source
    origin: str | None = None
    if isinstance(source, (str, Path)):
        origin = str(source)
        raw = read_yaml(source)
    elif isinstance(source, Mapping):
        raw = dict(source)
    else:
        raise ConfigError(f"a config must be a mapping or a YAML file path (got {type(source).__name__})")
    unsupported = unsupported_vumi_config(raw)
    if unsupported is not None:
        raise in_file(origin, ConfigError(unsupported))
    bad_keys = [k for k in raw if not isinstance(k, str)]
    if bad_keys:
        raise in_file(origin, ConfigError(f"invalid dispatcher config: top-level key {bad_keys[0]!r} is not a string"))
    try:
        config = DispatcherConfig.model_validate({**raw, "raw": raw, "source": origin})
    except ValidationError as exc:
        text = format_validation_error(exc, "dispatcher config", DispatcherConfig)
        raise in_file(origin, ConfigError(text)) from None
    return config
