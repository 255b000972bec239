"""The notebooks run top to bottom (nbclient, the venv's python3 kernel) and are committed
without outputs, in sync with notebooks/make_notebooks.py. Each notebook asserts its own
numbers (norm conservation, formula vs trajectory, drift vs D) in its cells, so an assertion
failing inside a notebook fails here. Budget: each notebook ≤ 40 s on 2 cores."""

import importlib.util
import time
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NB_DIR = Path(__file__).resolve().parents[1] / "notebooks"
NOTEBOOKS = sorted(NB_DIR.glob("0*.ipynb"))


def _generator():
    spec = importlib.util.spec_from_file_location("make_notebooks", NB_DIR / "make_notebooks.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_three_notebooks_present():
    assert [p.stem for p in NOTEBOOKS] == ["01_tour", "02_optimizers", "03_network_drift"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_committed_clean_and_in_sync(path):
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code, "no code cells"
    assert all(not c.outputs and c.execution_count is None for c in code), "committed with outputs"
    gen = _generator()
    cells = {"01_tour": gen.TOUR, "02_optimizers": gen.OPTIMIZERS, "03_network_drift": gen.NETWORK}[path.stem]
    assert [c.source for c in nb.cells] == [src for _, src in cells], "out of sync: run notebooks/make_notebooks.py"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs(path):
    nb = nbformat.read(path, as_version=4)
    # kernel "python3" launches sys.executable (jupyter_client substitutes it for "python"),
    # i.e. this venv's interpreter with normflow installed; nothing installed by hand.
    client = NotebookClient(nb, timeout=240, kernel_name="python3", allow_errors=False,
                            resources={"metadata": {"path": str(NB_DIR)}})
    t0 = time.time()
    client.execute()
    wall = time.time() - t0
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []) if o.output_type == "error"]
    assert not errors
    assert all(c.execution_count is not None for c in nb.cells if c.cell_type == "code")
    print(f"{path.name}: {wall:.1f}s")
