"""The notebooks run top to bottom in a real Jupyter kernel, and are committed
without outputs; the ``notebooks`` extra installs what they import, and a plot
without matplotlib says what to install."""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
INSTALL = "pip install 'pydds-store[notebooks]'"


def code_cells(path: Path) -> list[str]:
    book = nbformat.read(path, as_version=4)
    return [cell.source for cell in book.cells if cell.cell_type == "code"]


def imported(source: str) -> set[str]:
    """The top-level modules a cell imports (its lines of IPython magic left out)."""
    lines = [line for line in source.splitlines() if not line.lstrip().startswith(("%", "!"))]
    names = set()
    for node in ast.walk(ast.parse("\n".join(lines))):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module.split(".")[0])
    return names


def test_there_are_notebooks() -> None:
    assert [p.name for p in NOTEBOOKS] == [
        "01-quickstart.ipynb",
        "02-cluster.ipynb",
        "03-modules-and-events.ipynb",
    ]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_committed_without_outputs(path: Path) -> None:
    book = nbformat.read(path, as_version=4)
    for cell in book.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [], f"{path.name}: a cell has outputs"
            assert cell.execution_count is None, f"{path.name}: a cell was executed"


@pytest.mark.timeout(300)
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_runs_top_to_bottom(path: Path, tmp_path: Path) -> None:
    book = nbformat.read(path, as_version=4)
    client = NotebookClient(
        book,
        timeout=120,  # seconds per cell
        kernel_name="python3",
        resources={"metadata": {"path": str(tmp_path)}},
    )
    client.execute()  # raises CellExecutionError on any error
    outputs = [o for cell in book.cells if cell.cell_type == "code" for o in cell.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    rich = [o for o in outputs if "text/html" in o.get("data", {})]
    assert rich, "the rich display shows up"


def test_the_notebooks_extra_installs_what_they_need() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extra = project["optional-dependencies"]["notebooks"]
    installed = {re.split(r"[^A-Za-z0-9_.-]", req, maxsplit=1)[0].lower() for req in extra}
    # To open them (JupyterLab or Notebook), to run them, and to clear their outputs.
    assert installed & {"jupyterlab", "notebook"}
    assert {"ipykernel", "nbconvert"} <= installed
    third_party = {
        name
        for path in NOTEBOOKS
        for source in code_cells(path)
        for name in imported(source)
        if name not in sys.stdlib_module_names and name != "pydds"
    }
    assert "matplotlib" in third_party  # the notebooks' imports are found at all
    assert third_party <= installed


@pytest.mark.timeout(300)
def test_a_plot_without_matplotlib_says_what_to_install(tmp_path: Path) -> None:
    plots = [s for path in NOTEBOOKS for s in code_cells(path) if "matplotlib" in imported(s)]
    assert len(plots) >= 2
    # Each plotting cell alone, after a cell that makes importing matplotlib fail:
    # the import comes first, so the cell needs nothing the notebook made before it.
    hide = 'import sys\nsys.modules["matplotlib"] = sys.modules["matplotlib.pyplot"] = None'
    book = nbformat.v4.new_notebook(
        cells=[nbformat.v4.new_code_cell(source) for source in [hide, *plots]]
    )
    NotebookClient(
        book, timeout=60, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    ).execute()  # raises CellExecutionError on any error
    for cell in book.cells[1:]:
        text = "".join(o.get("text", "") for o in cell.outputs if o.output_type == "stream")
        assert INSTALL in text, cell.source
