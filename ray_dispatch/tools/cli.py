"""Command-line faces of the experiments: ``explain``, ``replay``, ``diff`` and ``graph``.

``register(group)`` adds the four commands to a click group (the main
``ray-dispatch`` CLI mounts them this way). Every error is one line on stderr
(``error: ...`` under ``ray-dispatch``) and exit status 2; nothing prints a traceback.
``diff --exit-code`` exits 1 when some message is routed differently.

Given a ``LiveDeployments`` (``register(group, live=...)``; the ``ray-dispatch``
CLI passes one that talks to Ray), ``explain`` and ``graph`` also take
``--deployment NAME`` (with ``--namespace`` and ``--address``)::

    ray-dispatch explain --deployment NAME MESSAGE_ID    # what a running dispatcher did, and why
    ray-dispatch graph --deployment NAME -o live.svg      # its topology with live counts and replicas

Errors reaching a deployment are one line too: exit 2 for an id no
dispatcher remembers, 1 when the deployment or cluster cannot be reached.
"""

from __future__ import annotations

import inspect
import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol

import click

from ray_dispatch.core.errors import DispatchError
from ray_dispatch.core.stores.failures import DIRECTIONS

from .diff import diff
from .draw import Topology, draw
from .explain import explain
from .recent import LiveExplanation
from .replay import replay
from .traffic import BadRecord

EXIT_ERROR = 2


class ExperimentError(click.ClickException):
    """A one-line error from an experiment command (bad file, bad config, bad message)."""

    exit_code = EXIT_ERROR


@contextmanager
def _one_line_errors() -> Iterator[None]:
    """Turn the errors users cause (files, configs, messages) into ``ExperimentError``."""
    try:
        yield
    except (click.ClickException, click.exceptions.Exit, click.Abort):
        raise
    except (DispatchError, BadRecord) as exc:
        raise ExperimentError(_flat(str(exc))) from None
    except OSError as exc:
        where = f"{exc.filename}: " if exc.filename else ""
        raise ExperimentError(f"{where}{exc.strerror or exc}") from None
    except (ValueError, RuntimeError) as exc:
        raise ExperimentError(_flat(str(exc))) from None
    except Exception as exc:  # a bug in a router or middleware: still one line, but say what it was
        raise ExperimentError(f"unexpected {type(exc).__name__}: {_flat(str(exc))}") from None


class WorldError(ExperimentError):
    """A running deployment or its cluster could not be reached or answered with an error (exit 1)."""

    exit_code = 1


class LiveDeployments(Protocol):
    """How ``explain`` and ``graph`` reach running deployments (the ``ray-dispatch`` CLI provides one).

    Both methods may raise ``KeyError`` (unknown message id), ``ConfigError``
    or any ``DispatchError`` (no such deployment, no cluster); the commands
    turn each into a one-line error.
    """

    default_namespace: str

    def explain(self, deployment: str, namespace: str, address: str | None, message_id: str) -> LiveExplanation:
        """What the deployment did with a recent message, and a traced re-run (``Deployment.explain``)."""

    def graph(self, deployment: str, namespace: str, address: str | None) -> Topology:
        """The deployment's topology with live counts and replicas (``Deployment.graph``)."""


@contextmanager
def _live_errors() -> Iterator[None]:
    """One-line errors for calls to a running deployment: 2 for what the user asked wrong, 1 for the world."""
    try:
        yield
    except (click.ClickException, click.exceptions.Exit, click.Abort):
        raise
    except Exception as raised:
        cause = getattr(raised, "cause", None)  # Ray wraps an actor's exception; report the original
        exc = cause if isinstance(cause, BaseException) else raised
        if isinstance(exc, KeyError):
            raise ExperimentError(_flat(str(exc.args[0]) if exc.args else "not found")) from None
        if isinstance(exc, (ValueError, BadRecord)):  # ConfigError, InvalidMessage
            raise ExperimentError(_flat(str(exc))) from None
        if isinstance(exc, DispatchError):
            raise WorldError(_flat(str(exc))) from None
        if isinstance(exc, ConnectionError):
            raise WorldError(f"cannot reach the Ray cluster: {_flat(str(exc))}") from None
        raise WorldError(f"{type(exc).__name__}: {_flat(str(exc))[:500]}") from None


def _flat(text: str) -> str:
    return " ".join(text.split())


def _read_message_file(path: str) -> Any:
    """Read the JSON object in ``path`` (``-`` for stdin).

    Raises:
        ExperimentError: unreadable, not JSON, or not an object.
    """
    try:
        text = sys.stdin.read() if path == "-" else Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ExperimentError(f"{path}: cannot read message file ({exc.strerror or exc})") from None
    except UnicodeDecodeError:
        raise ExperimentError(f"{path}: not UTF-8 text") from None
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ExperimentError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})") from None
    if not isinstance(obj, dict):
        raise ExperimentError(f"{path}: expected a JSON object (a Vumi message or a traffic record)")
    return obj


def _check_file(path: str, what: str) -> str:
    if not Path(path).is_file():
        raise ExperimentError(f"{path}: {what} not found")
    return path


def _echo_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, default=str))


_json_option = click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
_progress_option = click.option(
    "--progress/--no-progress", default=None, help="Progress bar on stderr (default: when stderr is a terminal)."
)


def _explain_command(live: LiveDeployments | None) -> click.Command:
    @click.command("explain")
    @click.argument("target", metavar="CONFIG" if live is None else "CONFIG|MESSAGE_ID")
    @click.argument("message_file", metavar="MESSAGE.json" if live is None else "[MESSAGE.json]", required=live is None)
    @click.option("--endpoint", "-e", help="Endpoint it arrives on (default: its transport_name).")
    @click.option(
        "--direction", "-d", type=click.Choice(DIRECTIONS), help="inbound, event or outbound (default: inferred)."
    )
    @_json_option
    @_deployment_options(live)
    def explain_command(
        target: str,
        message_file: str | None,
        endpoint: str | None,
        direction: str | None,
        as_json: bool,
        deployment: str | None = None,
        namespace: str | None = None,
        address: str | None = None,
    ) -> None:
        """Explain how CONFIG routes the message in MESSAGE.json, step by step.

        MESSAGE.json holds a Vumi message or event, or a traffic record
        {"endpoint": ..., "direction": ..., "message": {...}}; "-" reads stdin.
        """
        if deployment is not None:
            result: Any = _explain_live(live, deployment, namespace, address, target, message_file, endpoint, direction)
        else:
            if message_file is None:
                raise click.UsageError("give CONFIG and MESSAGE.json, or --deployment NAME and a MESSAGE_ID")
            with _one_line_errors():
                _check_file(target, "config file")
                result = explain(target, _read_message_file(message_file), endpoint, direction)  # type: ignore[arg-type]
        if as_json:
            _echo_json(result.to_dict())
        else:
            click.echo(result.to_text())

    if live is not None:
        explain_command.help = inspect.cleandoc(explain_command.help or "") + (
            "\n\nWith --deployment NAME MESSAGE_ID, explain a message a running deployment routed: what its"
            " dispatcher did (kept for its last `recent_outcomes` messages) next to a traced re-run"
            " with the deployment's config."
        )
    return explain_command


def _explain_live(
    live: LiveDeployments | None,
    deployment: str,
    namespace: str | None,
    address: str | None,
    message_id: str,
    extra: str | None,
    endpoint: str | None,
    direction: str | None,
) -> LiveExplanation:
    if extra is not None or endpoint is not None or direction is not None:
        raise click.UsageError(
            "with --deployment, give only the MESSAGE_ID (no MESSAGE.json, --endpoint or --direction)"
        )
    assert live is not None  # the option exists only with a live provider
    with _live_errors():
        return live.explain(deployment, namespace or live.default_namespace, address, message_id)


def _deployment_options(live: LiveDeployments | None) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Add --deployment, --namespace and --address when ``live`` can reach deployments."""

    def add(func: Callable[..., Any]) -> Callable[..., Any]:
        if live is None:
            return func
        func = click.option("--address", default=None, help="Ray cluster address (default: the running one).")(func)
        func = click.option(
            "--namespace", default=live.default_namespace, show_default=True, help="Ray namespace of the deployment."
        )(func)
        return click.option("--deployment", metavar="NAME", help="A running deployment (see the text above).")(func)

    return add


@click.command("replay")
@click.argument("config")
@click.argument("traffic", metavar="TRAFFIC.jsonl")
@_progress_option
@_json_option
def replay_command(config: str, traffic: str, progress: bool | None, as_json: bool) -> None:
    """Replay recorded TRAFFIC.jsonl through CONFIG and count where it went.

    One JSON object per line: a Vumi message or event (arriving on its
    transport_name) or {"endpoint": ..., "direction": ..., "message": {...}}.
    Bad lines are counted as failures with their line numbers.
    """
    with _one_line_errors():
        _check_file(config, "config file")
        _check_file(traffic, "traffic file")
        summary = replay(config, traffic, progress=progress)
    if as_json:
        _echo_json(summary.to_dict())
    else:
        click.echo(summary.to_text())


@click.command("diff")
@click.argument("old_config", metavar="OLD.yaml")
@click.argument("new_config", metavar="NEW.yaml")
@click.argument("traffic", metavar="TRAFFIC.jsonl")
@click.option("--limit", default=20, show_default=True, help="Changed messages to show with their traces.")
@click.option("--exit-code", is_flag=True, help="Exit 1 when some message is routed differently.")
@_progress_option
@_json_option
def diff_command(
    old_config: str,
    new_config: str,
    traffic: str,
    limit: int,
    exit_code: bool,
    progress: bool | None,
    as_json: bool,
) -> None:
    """Show which messages of TRAFFIC.jsonl NEW.yaml would route differently from OLD.yaml."""
    with _one_line_errors():
        _check_file(old_config, "config file")
        _check_file(new_config, "config file")
        _check_file(traffic, "traffic file")
        result = diff(old_config, new_config, traffic, max_changes=max(limit, 0), progress=progress)
    if as_json:
        _echo_json(result.to_dict())
    else:
        click.echo(result.to_text(limit=limit))
    if exit_code and not result.equivalent:
        raise click.exceptions.Exit(1)


def _graph_command(live: LiveDeployments | None) -> click.Command:
    @click.command("graph")
    @click.argument("config", required=live is None)
    @click.option(
        "--output",
        "-o",
        required=True,
        metavar="FILE",
        help="Where to write: FILE.svg, FILE.png, or - for SVG on stdout.",
    )
    @click.option("--traffic", metavar="TRAFFIC.jsonl", help="Replay this traffic and label the links with counts.")
    @_deployment_options(live)
    def graph_command(
        config: str | None,
        output: str,
        traffic: str | None,
        deployment: str | None = None,
        namespace: str | None = None,
        address: str | None = None,
    ) -> None:
        """Draw CONFIG's topology: transports, dispatcher, applications, labelled links."""
        if deployment is not None:
            if config is not None or traffic is not None:
                raise click.UsageError("with --deployment, give no CONFIG or --traffic: the deployment's own are drawn")
            assert live is not None
            with _live_errors():
                picture = live.graph(deployment, namespace or live.default_namespace, address)
        else:
            if config is None:
                raise click.UsageError("give CONFIG, or --deployment NAME")
            with _one_line_errors():
                _check_file(config, "config file")
                counts = None
                if traffic is not None:
                    _check_file(traffic, "traffic file")
                    counts = replay(config, traffic, progress=False).endpoint_counts
                picture = draw(config, counts=counts)
        with _one_line_errors():
            if output == "-":
                click.echo(picture.to_svg())
                return
            written = picture.save(output)
        click.echo(f"wrote {written}", err=True)

    if live is not None:
        graph_command.help = inspect.cleandoc(graph_command.help or "") + (
            "\n\nWith --deployment NAME, draw a running deployment instead: links labelled with the"
            " messages its dispatchers counted (and failures), boxes with the replicas running."
        )
    return graph_command


def make_commands(live: LiveDeployments | None = None) -> tuple[click.Command, ...]:
    """Fresh ``explain``, ``replay``, ``diff`` and ``graph`` commands; with ``live``, also ``--deployment``."""
    return (_explain_command(live), replay_command, diff_command, _graph_command(live))


COMMANDS: tuple[click.Command, ...] = make_commands()
explain_command, _, _, graph_command = COMMANDS


def register(group: click.Group, live: LiveDeployments | None = None) -> None:
    """Add ``explain``, ``replay``, ``diff`` and ``graph`` to ``group`` (``--deployment`` too, given ``live``)."""
    for command in make_commands(live) if live is not None else COMMANDS:
        group.add_command(command)


@click.group("experiments")
def experiments() -> None:
    """Routing experiments: explain, replay, diff, graph (no Ray needed)."""


register(experiments)

main: Callable[..., Any] = experiments

if __name__ == "__main__":
    experiments()
