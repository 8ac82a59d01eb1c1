"""``ray-dispatch``: run, inspect and steer deployments from the shell.

Every error is one clear line on stderr starting ``error:`` and a non-zero exit
(2 for bad input, usage errors included; 1 when the world failed), never a traceback.
"""

from __future__ import annotations

import functools
import json
import os
import sys
import time
from collections.abc import Callable
from typing import Any, TypeVar

import click

from actors.connection import describe_connection, replica_connected
from ray_dispatch import run_state
from ray_dispatch.core.errors import ConfigError, DispatchError, InvalidMessage, one_line
from ray_dispatch.foreground import run_until_stopped
from ray_dispatch.ray_connect import connect
from ray_dispatch.tools import cli as experiments_cli

F = TypeVar("F", bound=Callable[..., Any])

DEFAULT_NAME = "default"
DEFAULT_NAMESPACE = "ray_dispatch"


def _fail(text: str, code: int) -> None:
    click.echo(f"error: {text}", err=True)
    sys.exit(code)


def clean_errors(func: F) -> F:
    """Turn expected exceptions into one line on stderr and an exit code.

    An error raised inside an actor reaches us wrapped by Ray (its text is a
    remote traceback); the original exception is reported instead.
    """

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except click.ClickException:
            raise
        except Exception as raised:
            exc = _unwrap(raised)
            if isinstance(exc, (ConfigError, InvalidMessage)):
                _fail(str(exc), 2)
            if isinstance(exc, KeyError):
                _fail(str(exc.args[0]) if exc.args else "not found", 2)
            if isinstance(exc, DispatchError):
                _fail(str(exc), 1)
            if isinstance(exc, BrokenPipeError):  # our reader went away (`| head`): nothing to report
                os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
                sys.exit(1)
            if isinstance(exc, ConnectionError):
                _fail(f"cannot reach the Ray cluster: {exc}", 1)
            _fail(one_line(exc), 1)

    return wrapper  # type: ignore[return-value]


def _unwrap(exc: BaseException) -> BaseException:
    """The exception an actor raised, if ``exc`` is Ray's wrapper of one (``ray_dispatch.api.original_error``)."""
    if "ray" not in sys.modules:  # nothing ran on Ray: nothing is wrapped (and Ray need not be imported)
        return exc
    from ray_dispatch.api import original_error

    return original_error(exc)


def _attach(name: str, namespace: str, address: str | None) -> Any:
    """The deployment ``name``, on the Ray cluster ``_target`` picks (joined within seconds, or one error line)."""
    if not _ray_connected():
        target, source = _target(name, namespace, address)  # before Ray is imported: it may set RAY_AUTH_MODE
        connect(target, namespace, source)
    from ray_dispatch.api import Deployment, DeploymentNotFound

    try:
        return Deployment.attach(name, namespace, address=None)
    except DeploymentNotFound as exc:
        raise DeploymentNotFound(
            f"{exc} on the Ray cluster at {_ray_address()}; pass --address (or set RAY_ADDRESS)"
            " if the deployment runs elsewhere"
        ) from None


def _target(name: str, namespace: str, address: str | None) -> tuple[str, str]:
    """The Ray address a command other than ``run`` uses, and where it came from.

    ``--address``, else ``RAY_ADDRESS``, else the record ``run`` left for this
    deployment on this machine (``ray_dispatch.run_state``): never a cluster
    the user did not name or start.
    """
    if address:
        return address, "--address"
    if os.environ.get("RAY_ADDRESS"):
        return os.environ["RAY_ADDRESS"], "RAY_ADDRESS"
    record = run_state.read_record(name, namespace)
    where = run_state.record_path(name, namespace)
    if record is None:
        raise DispatchError(
            f"no deployment {name!r} (namespace {namespace!r}) was started on this machine by `ray-dispatch run`"
            f" (no {where}); pass --address (or set RAY_ADDRESS) to use one running elsewhere"
        )
    if not record.detached and not record.owner_alive():
        run_state.remove_record(name, namespace)
        raise DispatchError(
            f"deployment {name!r} (namespace {namespace!r}) is not running: the `ray-dispatch run` that started it"
            f" (pid {record.pid}) has exited"
        )
    if record.token_auth:
        os.environ.setdefault("RAY_AUTH_MODE", "token")  # the token itself: ~/.ray/auth_token, as for `run`
    return record.address, f"recorded in {where}"


def _ray_connected() -> bool:
    return "ray" in sys.modules and bool(sys.modules["ray"].is_initialized())


def _ray_address() -> str:
    """The address of the Ray cluster this process is connected to (GCS host:port)."""
    import ray

    return str(ray.get_runtime_context().gcs_address)


def deployment_options(func: F, name_aliases: tuple[str, ...] = ()) -> F:
    """Add --name (also spelled as ``name_aliases``), --namespace and --address to a command."""
    func = click.option(
        "--address",
        default=None,
        help="Ray cluster address (HOST:PORT). Default: $RAY_ADDRESS, else the Ray that `ray-dispatch run`"
        " started this deployment on, on this machine.",
    )(func)
    func = click.option("--namespace", default=DEFAULT_NAMESPACE, show_default=True, help="Ray namespace.")(func)
    return click.option(  # type: ignore[return-value]
        "--name", *name_aliases, "name", default=DEFAULT_NAME, show_default=True, help="Deployment name."
    )(func)


class OneLineErrorGroup(click.Group):
    """A click group whose usage errors read like every other error: ``error: ...``, one line.

    Click prints ``Usage: ...`` / ``Try ...`` / ``Error: ...`` for a bad option or
    argument; here it is one line naming the problem and where help is, exit 2.
    """

    def main(self, *args: Any, standalone_mode: bool = True, **kwargs: Any) -> Any:
        """Run the CLI; in standalone mode turn click's errors into one ``error:`` line and an exit code."""
        run_click: Any = super().main
        if not standalone_mode:
            return run_click(*args, standalone_mode=False, **kwargs)
        try:
            code = run_click(*args, standalone_mode=False, **kwargs)
        except click.UsageError as exc:
            where = f" (see `{exc.ctx.command_path} --help`)" if exc.ctx is not None else ""
            _fail(f"{' '.join(exc.format_message().split()).rstrip('.')}{where}", exc.exit_code)
        except click.ClickException as exc:
            _fail(" ".join(exc.format_message().split()), exc.exit_code)
        except click.Abort:
            _fail("aborted", 1)
        sys.exit(code if isinstance(code, int) else 0)


@click.group(cls=OneLineErrorGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="ray-dispatch")
def main() -> None:
    """Vumi-style message dispatchers on Ray."""


@main.command()
@click.argument("config", type=click.Path(dir_okay=False))
@clean_errors
def validate(config: str) -> None:
    """Check CONFIG (router, middleware, stores, endpoints) without starting anything."""
    from ray_dispatch.preflight import preflight

    loaded = preflight(config)
    click.echo(
        f"{config}: valid ({loaded.router_class}; transports {loaded.transport_names};"
        f" applications {loaded.exposed_names})"
    )


@main.command()
@click.argument("config", type=click.Path(dir_okay=False))
@click.option("--name", default=DEFAULT_NAME, show_default=True, help="Deployment name.")
@click.option("--namespace", default=DEFAULT_NAMESPACE, show_default=True, help="Ray namespace.")
@click.option(
    "--address",
    default=None,
    help="Start it on the Ray cluster at HOST:PORT (or $RAY_ADDRESS; 'auto': the one `ray start` started here)."
    " Default: a new local Ray, stopped with the deployment.",
)
@click.option(
    "--detach", is_flag=True, help="Leave the deployment running and return (needs --address or RAY_ADDRESS)."
)
@click.option("--allow-prefix", multiple=True, help="Only load classes under these module prefixes.")
@click.option(
    "--console-host", default=None, help="Address the web console listens on. Default: console.host, else 127.0.0.1."
)
@click.option(
    "--console-port",
    type=click.IntRange(0, 65535),
    default=None,
    help="Port of the web console. Default: console.port, else a free one.",
)
@click.option("--no-console", is_flag=True, help="Do not start the web console.")
@clean_errors
def run(
    config: str,
    name: str,
    namespace: str,
    address: str | None,
    detach: bool,
    allow_prefix: tuple[str, ...],
    console_host: str | None,
    console_port: int | None,
    no_console: bool,
) -> None:
    """Start the deployment CONFIG describes and keep it up until Ctrl-C (or `ray-dispatch stop`).

    It runs on a new local Ray of its own unless --address or RAY_ADDRESS names a cluster.
    Its web console's address (with its token) is printed as ``console: http://...``.
    The config is checked first, as ``validate`` does: a bad one starts nothing (not even Ray).
    Other commands on this machine find the deployment by --name, from a small record in
    $RAY_DISPATCH_STATE_DIR, else $XDG_RUNTIME_DIR/ray_dispatch, else ~/.ray_dispatch.
    """
    from ray_dispatch.preflight import preflight

    allowed = list(allow_prefix) or None
    loaded = preflight(config, allowed)
    earlier = run_state.read_record(name, namespace)
    if earlier is not None and earlier.running_here() and earlier.pid != os.getpid():
        raise DispatchError(
            f"deployment {name!r} (namespace {namespace!r}) already runs on this machine (`ray-dispatch run`,"
            f" pid {earlier.pid}, Ray at {earlier.address}); stop it (`ray-dispatch stop --name {name}`)"
            " or give this one another --name"
        )
    target, source = (address, "--address") if address else (os.environ.get("RAY_ADDRESS"), "RAY_ADDRESS")
    if target:
        connect(target, namespace, source)
    elif detach and not _ray_connected():
        raise ConfigError(
            "--detach needs a Ray cluster that outlives this command: start one (`ray start --head`)"
            " and pass --address (or set RAY_ADDRESS)"
        )

    from ray_dispatch.api import Deployment, ensure_ray

    ensure_ray(None, namespace, quiet=True)  # a new local Ray, unless connected above
    deployment = Deployment.start_checked(  # checked above, before Ray started
        loaded, name=name, namespace=namespace, detached=detach, allowed_class_prefixes=allowed
    )
    token_auth = os.environ.get("RAY_AUTH_MODE", "").lower() == "token"
    run_state.write_record(run_state.RunRecord(name, namespace, _ray_address(), os.getpid(), detach, token_auth))
    _print_status(deployment.status())
    click.echo(
        f"ray address: {_ray_address()} (other commands on this machine find it by --name {name};"
        f" from elsewhere: --address {_ray_address()}, or RAY_ADDRESS)"
    )
    if not no_console and loaded.console.enabled:
        _start_console(deployment, console_host, console_port)
    if detach:
        click.echo(f"deployment {name!r} is running detached; stop it with `ray-dispatch stop --name {name}`")
        return
    click.echo("running; press Ctrl-C to stop")
    forget = functools.partial(run_state.remove_record, name, namespace, pid=os.getpid())
    try:
        run_until_stopped(deployment, ray_address=_ray_address(), on_exit=forget)
    finally:
        forget()


def _start_console(deployment: Any, host: str | None, port: int | None) -> None:
    """Start the deployment's web console and print its line; a console that cannot start stops the deployment."""
    from ray_dispatch.console import start_console

    try:
        url = start_console(deployment, host=host, port=port)
    except BaseException:
        deployment.shutdown(timeout=10)
        raise
    click.echo(f"console: {url}")


@main.command()
@deployment_options
@click.option("--deployment", default=None, help="Deployment name (the same as --name).")
@clean_errors
def console(name: str, namespace: str, address: str | None, deployment: str | None) -> None:
    """Print the web console's address (with its token) of a running deployment."""
    found = _attach(deployment or name, namespace, address)  # before Ray is imported: it may set RAY_AUTH_MODE
    from ray_dispatch.console import console_url

    click.echo(console_url(found))


@main.command()
@click.argument("endpoint")
@click.argument("content", required=False)
@deployment_options
@click.option("--from", "from_addr", default="+27831234567", show_default=True, help="from_addr of the message.")
@click.option("--to", "to_addr", default="12345", show_default=True, help="to_addr of the message.")
@click.option("--json", "json_payload", default=None, help="Extra message fields as a JSON object.")
@click.option("--trace", is_flag=True, help="Also print the routing decisions.")
@clean_errors
def send(
    endpoint: str,
    content: str | None,
    name: str,
    namespace: str,
    address: str | None,
    from_addr: str,
    to_addr: str,
    json_payload: str | None,
    trace: bool,
) -> None:
    """Route a message as if it arrived on ENDPOINT; print where it went."""
    fields: dict[str, Any] = {}
    if json_payload:
        try:
            fields = json.loads(json_payload)
        except ValueError as exc:
            raise InvalidMessage(f"--json is not valid JSON ({exc})") from None
        if not isinstance(fields, dict):
            raise InvalidMessage("--json must be a JSON object of message fields")
        not_fields = sorted(set(fields) & {"direction", "trace", "timeout"})
        if not_fields:
            raise InvalidMessage(f"--json: {not_fields} are not message fields")
    # Fields given in --json win over the --from / --to defaults and CONTENT.
    from_addr = fields.pop("from_addr", from_addr)
    to_addr = fields.pop("to_addr", to_addr)
    content = fields.pop("content", content)
    deployment = _attach(name, namespace, address)
    result = deployment.send(endpoint, content, from_addr=from_addr, to_addr=to_addr, trace=trace, **fields)
    click.echo(f"message {result['message_id']}")
    for destination in result["destinations"]:
        click.echo(f"  -> {destination}")
    _warn_if_not_connected(deployment, result["destinations"])
    for failure in result["failures"]:
        click.echo(f"  failed ({failure['stage']}): {failure['reason']}  [failure {failure['failure_id']}]")
    if result.get("dropped"):
        click.echo(f"  dropped: {result['dropped']}")
    for step in result.get("trace") or []:
        click.echo(f"  | {step}")
    if result["failures"] and not result["destinations"]:
        sys.exit(1)


@main.command()
@deployment_options
@click.option("--json", "as_json", is_flag=True, help="Print the raw status as JSON.")
@clean_errors
def status(name: str, namespace: str, address: str | None, as_json: bool) -> None:
    """Show endpoints, replicas (alive or dead), counts per endpoint, and failures."""
    deployment = _attach(name, namespace, address)
    info = deployment.status()
    if as_json:
        click.echo(json.dumps(info, indent=2, default=str))
    else:
        _print_status(info)


def _print_status(info: dict[str, Any]) -> None:
    click.echo(f"deployment {info['name']!r} (namespace {info['namespace']!r})")
    for d in info["dispatchers"]:
        if d.get("alive") is False:
            click.echo(f"  dispatcher {d['dispatcher']}: DEAD ({d['error']})")
            continue
        click.echo(
            f"  dispatcher {d['dispatcher']}: {d['router']} on node {d['node_id'][:12]}, failures: {d['failures']}"
        )
        if "generation" in d:
            click.echo(f"    generation {d['generation']}, applied {_iso_time(d['applied_at'])}")
        click.echo("    stores: " + "; ".join(_store_line(n, d.get(k) or {}) for n, k in _STORES))
        _print_dispatcher_metrics(d.get("metrics"))
    counts = info["dispatchers"][0].get("stats", {}) if info["dispatchers"] else {}
    for endpoint, entry in info["endpoints"].items():
        received = {k: v for k, v in counts.get("received", {}).items() if k.endswith(f":{endpoint}")}
        published = {k: v for k, v in counts.get("published", {}).items() if k.endswith(f":{endpoint}")}
        click.echo(f"  {entry['role']} {endpoint}: {len(entry['replicas'])} replica(s)")
        if entry.get("autoscaling"):
            click.echo(f"    autoscaling: {_autoscaling_line(entry['autoscaling'])}")
        for rid, replica in entry["replicas"].items():
            if replica["alive"]:
                health = "alive, NOT CONNECTED" if replica.get("connected") is False else "alive"
                click.echo(
                    f"    [{rid}] {health}  {replica['class']} on node {replica['node_id'][:12]} pid {replica['pid']}"
                )
                _print_connections(replica)
            else:
                click.echo(f"    [{rid}] DEAD   {replica['error']}")
        if received or published:
            click.echo(f"    from it: {received or '{}'}  to it: {published or '{}'}")
        _print_rates(info["dispatchers"], endpoint)


def _autoscaling_line(state: dict[str, Any]) -> str:
    """Bounds, what the load asks for, and the last scaling decision with its reason."""
    if "min_replicas" not in state:
        return f"unknown ({state.get('error')})"
    line = (
        f"{state['min_replicas']}..{state['max_replicas']} replicas,"
        f" target {state['target_pending_per_replica']:g} pending per replica;"
        f" pending {state['pending']}, load asks for {state['target']}"
    )
    last = state.get("last_decision")
    if last:
        when = time.strftime("%H:%M:%S", time.localtime(last["at"]))
        line += f"; last: {last['current']} -> {last['target']} at {when} ({last['reason']})"
    if state.get("error"):
        line += f"; error: {state['error']}"
    return line


_STORES = (("routing", "store"), ("failures", "failure_store"))


def _iso_time(seconds: float) -> str:
    """Seconds since the epoch as ISO 8601 UTC, to the second."""
    from datetime import UTC, datetime

    return datetime.fromtimestamp(seconds, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _store_line(name: str, state: dict[str, Any]) -> str:
    """``<name> <state>``, with the store's one-line detail when it is not ``ok``."""
    shown = state.get("state", "unknown")
    return f"{name} {shown}" if shown in ("ok", "unknown") else f"{name} {shown} ({state.get('detail')})"


def _print_connections(replica: dict[str, Any]) -> None:
    """One line per connection of a transport replica to its peer (``connection: n/a`` when it has none)."""
    if replica.get("role") != "transport":
        return
    connections = replica.get("connections") or []
    if not connections:
        click.echo("        connection: n/a (no peer connection reported)")
    for entry in connections:
        click.echo(f"        connection {describe_connection(entry)}")


def _warn_if_not_connected(deployment: Any, destinations: list[str]) -> None:
    """Say so when a transport a message went out to has no replica connected to its peer (it waits there)."""
    for destination in destinations:
        direction, _, endpoint = destination.partition(":")
        if direction != "outbound" or not deployment.config.is_transport(endpoint):
            continue
        replicas = deployment.connections(endpoint)
        states = [entry for entries in replicas.values() if entries for entry in entries]
        if any(replica_connected(entries) is not False for entries in replicas.values() if entries is not None):
            continue
        why = "; ".join(describe_connection(entry) for entry in states) or "no replica answered"
        click.echo(
            f"  warning: transport {endpoint!r} is not connected to its peer ({why}); "
            "the message waits there for the connection (outbound_timeout), then is nacked"
        )


def _ms(summary: dict[str, Any]) -> str:
    if not summary or summary.get("p50") is None:
        return "-"
    return f"p50 {summary['p50']:.2f} ms, p99 {summary['p99']:.2f} ms"


def _print_dispatcher_metrics(metrics: dict[str, Any] | None) -> None:
    """Latencies and batching of one dispatcher (``DispatcherActor.status()["metrics"]``)."""
    if not metrics or not metrics.get("batches"):
        return
    click.echo(
        f"    batches: {metrics['batches']} (mean {metrics['mean_batch']} messages);"
        f" batch in -> confirmed: {_ms(metrics['batch_latency_ms'])}"
    )
    for direction, summary in metrics.get("e2e_latency_ms", {}).items():
        click.echo(f"    {direction} created -> delivered: {_ms(summary)} (recent {summary.get('window', 0)})")


def _print_rates(dispatchers: list[dict[str, Any]], endpoint: str) -> None:
    """Messages per second from and to ``endpoint`` over the dispatchers' last interval, summed."""
    totals: dict[str, dict[str, float]] = {"received": {}, "published": {}}
    interval = 0.0
    for d in dispatchers:
        metrics = d.get("metrics") or {}
        interval = max(interval, metrics.get("interval_s") or 0.0)
        for stage, rates in totals.items():
            for key, rate in (metrics.get("rates", {}).get(stage) or {}).items():
                direction, _, name = key.partition(":")
                if name == endpoint:
                    rates[direction] = rates.get(direction, 0.0) + rate
    if not totals["received"] and not totals["published"]:
        return

    def text(rates: dict[str, float]) -> str:
        return ", ".join(f"{d} {r:,.0f}/s" for d, r in sorted(rates.items())) or "-"

    click.echo(
        f"    rate over the last {interval:.1f} s: from it {text(totals['received'])};"
        f" to it {text(totals['published'])}"
    )


@main.command()
@deployment_options
@clean_errors
def stop(name: str, namespace: str, address: str | None) -> None:
    """Stop a running deployment: drain messages in flight, then end its actors."""
    deployment = _attach(name, namespace, address)
    deployment.shutdown()
    record = run_state.read_record(name, namespace)
    if record is not None and (record.detached or not record.owner_alive()):
        run_state.remove_record(name, namespace)  # a foreground `run` sees the deployment gone and removes its own
    click.echo(f"deployment {name!r} stopped")


@main.group()
def failures() -> None:
    """List, inspect, replay and purge failure records (dead letters)."""


@failures.command("list")
@deployment_options
@click.option("--direction", type=click.Choice(["inbound", "event", "outbound"]), default=None)
@click.option("--endpoint", default=None)
@clean_errors
def failures_list(name: str, namespace: str, address: str | None, direction: str | None, endpoint: str | None) -> None:
    """One line per failure record, oldest first."""
    records = _attach(name, namespace, address).failures(direction, endpoint)
    for r in records:
        click.echo(f"{r['failure_id']}  {r['timestamp']}  {r['direction']:8} {r['endpoint']}  {r['reason']}")
    click.echo(f"{len(records)} failure record(s)")


@failures.command("undeliverable")
@deployment_options
@click.option("--endpoint", default=None)
@click.option("--clear", is_flag=True, help="Also make the endpoints forget the records listed.")
@clean_errors
def failures_undeliverable(name: str, namespace: str, address: str | None, endpoint: str | None, clear: bool) -> None:
    """Records held by endpoints: invalid peer input, and messages no dispatcher took (oldest first)."""
    records = _attach(name, namespace, address).undeliverable(endpoint, clear)
    for r in records:
        where = f"{r['endpoint']}[{r['replica']}]"
        click.echo(f"{r['failure_id']}  {r['timestamp']}  {r['stage']:8} {where}  {r['reason']}")
    click.echo(f"{len(records)} undeliverable record(s)" + (", cleared" if clear and records else ""))


@failures.command("show")
@click.argument("failure_id")
@deployment_options
@clean_errors
def failures_show(failure_id: str, name: str, namespace: str, address: str | None) -> None:
    """Print one failure record as JSON."""
    click.echo(json.dumps(_attach(name, namespace, address).failure(failure_id), indent=2, default=str))


@failures.command("replay")
@click.argument("failure_id")
@deployment_options
@click.option(
    "--endpoint",
    default=None,
    help="Deliver it to this endpoint instead (delivery failures) or dispatch it as if it arrived there (others).",
)
@clean_errors
def failures_replay(failure_id: str, name: str, namespace: str, address: str | None, endpoint: str | None) -> None:
    """Route a failed message again; the record is removed if it now succeeds."""
    result = _attach(name, namespace, address).replay_failure(failure_id, endpoint)
    for destination in result["destinations"]:
        click.echo(f"  -> {destination}")
    for reason in result["failures"]:
        click.echo(f"  failed again: {reason}")
    if result["failures"]:
        sys.exit(1)


@failures.command("purge")
@click.argument("failure_ids", nargs=-1)
@deployment_options
@click.option("--all", "purge_all", is_flag=True, help="Remove every record.")
@clean_errors
def failures_purge(
    failure_ids: tuple[str, ...], name: str, namespace: str, address: str | None, purge_all: bool
) -> None:
    """Remove the given failure records (or --all)."""
    if not failure_ids and not purge_all:
        raise ConfigError("name the failure ids to purge, or pass --all")
    count = _attach(name, namespace, address).purge_failures(None if purge_all else list(failure_ids))
    click.echo(f"purged {count} failure record(s)")


def deployment_name_options(func: F) -> F:
    """``deployment_options`` with ``--deployment`` accepted as another name for ``--name``."""
    return deployment_options(func, name_aliases=("--deployment",))


@main.command()
@click.argument("config", required=False, type=click.Path(dir_okay=False))
@deployment_name_options
@click.option("--dry-run", is_flag=True, help="Print the plan and the routing difference; change nothing.")
@click.option("--rollback", is_flag=True, help="Apply the previous generation again (no CONFIG).")
@click.option("--examples", default=5, show_default=True, help="Changed messages shown with their traces.")
@click.option("--allow-prefix", multiple=True, help="Only load classes under these module prefixes.")
@clean_errors
def apply(
    config: str | None,
    name: str,
    namespace: str,
    address: str | None,
    dry_run: bool,
    rollback: bool,
    examples: int,
    allow_prefix: tuple[str, ...],
) -> None:
    """Change a running deployment to CONFIG: check it, print the plan, switch every dispatcher.

    The plan lists router, middleware, store and endpoint changes, and how the
    deployment's recent traffic would be routed differently. Every dispatcher
    switches between two batches (nothing lost, per-user order kept); if one cannot
    set the new config up, none switches. --rollback goes back to the previous generation.
    """
    from ray_dispatch.preflight import preflight

    if rollback == (config is not None):
        raise ConfigError("give CONFIG, or --rollback without CONFIG")
    allowed = list(allow_prefix) or None
    checked = None if config is None else preflight(config, allowed)  # before Ray: a bad config is one line
    deployment = _attach(name, namespace, address)
    if checked is None:
        if dry_run:
            raise ConfigError("--rollback --dry-run: give the earlier config file to see its plan instead")
        result = deployment.rollback()
    else:
        result = deployment.apply(checked, dry_run=dry_run, allowed_class_prefixes=allowed)
    click.echo(result.to_text(examples))


@main.command()
@deployment_name_options
@click.option("--json", "as_json", is_flag=True, help="Print the generations as JSON.")
@clean_errors
def history(name: str, namespace: str, address: str | None, as_json: bool) -> None:
    """List the config generations the deployment applied, oldest first (the last one is in force)."""
    entries = _attach(name, namespace, address).history()
    if as_json:
        click.echo(json.dumps(entries, indent=2))
        return
    for entry in entries:
        source = f"  {entry['source']}" if entry.get("source") else ""
        click.echo(
            f"generation {entry['generation']}  {entry['applied_at']}  {entry['note']:<14}"
            f"  {entry['router_class']}{source}"
        )


@main.command()
@click.option("--quick", is_flag=True, help="Smaller scenarios: about 1.5 minutes on a quiet 2-core machine.")
@click.option("--out", type=click.Path(dir_okay=False), default=None, help="Also write the JSON to this file.")
@clean_errors
def bench(quick: bool, out: str | None) -> None:
    """Benchmark throughput, latency and overload against raw Ray; print one JSON object.

    Runs ``bench/run_bench.py`` from the source checkout (the benchmark is not part of the package).
    """
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parent.parent / "bench" / "run_bench.py"
    if not script.is_file():
        raise DispatchError(f"the benchmark is not installed here: it ships in the source checkout as {script}")
    args = [sys.executable, str(script), *(["--quick"] if quick else []), *(["--out", out] if out else [])]
    raise SystemExit(subprocess.call(args))


class _LiveDeployments:
    """Lets ``explain`` and ``graph`` (from ``ray_dispatch.tools``) take ``--deployment NAME``."""

    default_namespace = DEFAULT_NAMESPACE

    def explain(self, deployment: str, namespace: str, address: str | None, message_id: str) -> Any:
        """``Deployment.explain`` of the deployment named ``deployment``."""
        return _attach(deployment, namespace, address).explain(message_id)

    def graph(self, deployment: str, namespace: str, address: str | None) -> Any:
        """``Deployment.graph`` of the deployment named ``deployment``."""
        return _attach(deployment, namespace, address).graph()


experiments_cli.register(main, live=_LiveDeployments())

if __name__ == "__main__":  # pragma: no cover
    main()
