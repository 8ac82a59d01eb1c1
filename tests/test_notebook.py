"""examples/notebook.ipynb runs top to bottom in a fresh kernel, with its own local Ray.

The kernel is a separate process, so the notebook's ``ray_dispatch.deploy``
starts its own Ray, independent of the test session's. It gets a private Ray
temp dir (its ``ray_current_cluster`` file must not redirect anyone else's
``ray.init``), and a last cell outside the notebook shuts its Ray down even when
a cell failed.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

pytestmark = pytest.mark.ray

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
NOTEBOOK = EXAMPLES / "notebook.ipynb"
CELL_TIMEOUT = 180
EXPERIMENTS_HEADING = "## 3. Experiments: explain, replay, diff, draw"


def outputs_text(cell: nbformat.NotebookNode) -> str:
    """Everything a code cell printed or displayed, as text."""
    parts = []
    for output in cell.get("outputs", []):
        if output.output_type == "stream":
            parts.append(output.text)
        elif output.output_type in ("execute_result", "display_data"):
            parts.append(output.data.get("text/plain", ""))
        elif output.output_type == "error":
            parts.append("\n".join(output.traceback))
    return "".join(parts)


@pytest.fixture(scope="module")
def executed() -> nbformat.NotebookNode:
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    # The kernel starts in examples/, where a user opening the notebook would be.
    resources = {"metadata": {"path": str(EXAMPLES)}}
    client = NotebookClient(notebook, timeout=CELL_TIMEOUT, kernel_name="python3", resources=resources)
    temp_dir = tempfile.mkdtemp(prefix="rdnb.")  # short: Ray's socket paths must stay under ~107 bytes
    with pytest.MonkeyPatch.context() as env:
        env.setenv("RAY_TMPDIR", temp_dir)
        env.delenv("RAY_ADDRESS", raising=False)
        try:
            with client.setup_kernel():
                try:
                    for index, cell in enumerate(notebook.cells):
                        client.execute_cell(cell, index)
                finally:  # the kernel's Ray goes down even when a cell failed
                    notebook.cells.append(nbformat.v4.new_code_cell("import ray\nray.shutdown()"))
                    with contextlib.suppress(CellExecutionError):
                        client.execute_cell(notebook.cells[-1], len(notebook.cells) - 1)
                    notebook.cells.pop()
        finally:
            shutil.rmtree(temp_dir, ignore_errors=True)
    return notebook


def test_every_cell_runs_without_error(executed: nbformat.NotebookNode) -> None:
    code = [c for c in executed.cells if c.cell_type == "code"]
    assert code and all(c.get("execution_count") for c in code)
    assert not [c for c in code if any(o.output_type == "error" for o in c.get("outputs", []))]


def test_the_harness_part_shows_inbound_reply_ack_and_a_failure(executed: nbformat.NotebookNode) -> None:
    text = "\n".join(outputs_text(c) for c in executed.cells if c.cell_type == "code")
    assert "delivered to: ['my_application']" in text
    assert "sent out by: ['smpp_transport']" in text
    assert "return route: event about" in text
    assert "route: outbound transport_name 'telnet_transport'" in text


def test_the_ray_part_runs_two_replicas_and_shuts_ray_down(executed: nbformat.NotebookNode) -> None:
    text = "\n".join(outputs_text(c) for c in executed.cells if c.cell_type == "code")
    assert "my_application replicas: ['0', '1']" in text
    assert "'destinations': ['inbound:my_application']" in text
    assert "replica 0: alive=True" in text and "replica 1: alive=True" in text
    assert executed.cells[-1].source.startswith("dep.shutdown()")
    assert outputs_text(executed.cells[-1]).strip() == "ray running: False"


def test_the_experiments_section_sits_before_the_shutdown(executed: nbformat.NotebookNode) -> None:
    headings = [c.source.splitlines()[0] for c in executed.cells if c.cell_type == "markdown"]
    assert EXPERIMENTS_HEADING in headings
    assert headings.index(EXPERIMENTS_HEADING) == len(headings) - 2
