"""Command-line faces of the experiments: ``explain``, ``replay``, ``diff`` and ``graph``.

``register(group)`` adds the four commands to a click group (the main
``ray-dispatch`` CLI mounts them this way). Every error is one line on stderr
(``Error: ...``) and exit status 2; nothing prints a traceback.
``diff --exit-code`` exits 1 when some message is routed differently.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click

from ray_dispatch.errors import DispatchError
from ray_dispatch.failures import DIRECTIONS

from .diff import diff
from .draw import draw
from .explain import explain
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


@click.command("explain")
@click.argument("config")
@click.argument("message_file", metavar="MESSAGE.json")
@click.option("--endpoint", "-e", help="Endpoint it arrives on (default: its transport_name).")
@click.option(
    "--direction", "-d", type=click.Choice(DIRECTIONS), help="inbound, event or outbound (default: inferred)."
)
@_json_option
def explain_command(config: str, message_file: str, endpoint: str | None, direction: str | None, as_json: bool) -> None:
    """Explain how CONFIG routes the message in MESSAGE.json, step by step.

    MESSAGE.json holds a Vumi message or event, or a traffic record
    {"endpoint": ..., "direction": ..., "message": {...}}; "-" reads stdin.
    """
    with _one_line_errors():
        _check_file(config, "config file")
        result = explain(config, _read_message_file(message_file), endpoint, direction)  # type: ignore[arg-type]
    if as_json:
        _echo_json(result.to_dict())
    else:
        click.echo(result.to_text())


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


@click.command("graph")
@click.argument("config")
@click.option(
    "--output", "-o", required=True, metavar="FILE", help="Where to write: FILE.svg, FILE.png, or - for SVG on stdout."
)
@click.option("--traffic", metavar="TRAFFIC.jsonl", help="Replay this traffic and label the links with counts.")
def graph_command(config: str, output: str, traffic: str | None) -> None:
    """Draw CONFIG's topology: transports, dispatcher, applications, labelled links."""
    with _one_line_errors():
        _check_file(config, "config file")
        counts = None
        if traffic is not None:
            _check_file(traffic, "traffic file")
            counts = replay(config, traffic, progress=False).endpoint_counts
        picture = draw(config, counts=counts)
        if output == "-":
            click.echo(picture.to_svg())
            return
        written = picture.save(output)
    click.echo(f"wrote {written}", err=True)


COMMANDS: tuple[click.Command, ...] = (explain_command, replay_command, diff_command, graph_command)


def register(group: click.Group) -> None:
    """Add ``explain``, ``replay``, ``diff`` and ``graph`` to ``group``."""
    for command in COMMANDS:
        group.add_command(command)


@click.group("experiments")
def experiments() -> None:
    """Routing experiments: explain, replay, diff, graph (no Ray needed)."""


register(experiments)

main: Callable[..., Any] = experiments

if __name__ == "__main__":
    experiments()
