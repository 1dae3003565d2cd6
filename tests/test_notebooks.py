"""The notebooks run: each executes top to bottom in a kernel of this interpreter, shows what it
claims to show, and is committed without outputs."""

import json
import re
import os
import sys
from pathlib import Path

import pytest

nbclient = pytest.importorskip("nbclient", reason="nbclient is not installed: pip install -e '.[test]' runs the notebooks")
import nbformat  # noqa: E402  (a dependency of nbclient)

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
TIMEOUT_S = 180  # per cell; each notebook runs in well under a minute on 2 cores


def _runs_this_interpreter(argv: list) -> bool:
    # jupyter_client launches a bare "python"/"python3"/"python3.X" argv[0] with sys.executable
    bare = {"python", f"python{sys.version_info[0]}", "python{}.{}".format(*sys.version_info[:2])}
    if argv[0] in bare:
        return True
    try:
        return os.path.samefile(argv[0], sys.executable)
    except OSError:
        return False


@pytest.fixture(scope="module")
def python3_kernel(tmp_path_factory):
    """Make the "python3" kernel this interpreter's: if the kernelspec jupyter finds runs another
    Python, put a temporary one first on JUPYTER_PATH (nothing is registered globally)."""
    import importlib.util

    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    assert importlib.util.find_spec("ipykernel"), "ipykernel is not installed in this interpreter: no kernel to run in"

    mp = pytest.MonkeyPatch()
    # the kernel inherits this environment: let it import latency/profilers from this checkout
    mp.setenv("PYTHONPATH", os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p))
    try:
        argv = KernelSpecManager().get_kernel_spec("python3").argv
    except NoSuchKernel:
        argv = None
    if argv is None or not _runs_this_interpreter(argv):
        spec_dir = tmp_path_factory.mktemp("jupyter") / "kernels" / "python3"
        spec_dir.mkdir(parents=True)
        (spec_dir / "kernel.json").write_text(json.dumps({
            "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
            "display_name": "Python 3 (test)", "language": "python"}))
        mp.setenv("JUPYTER_PATH", os.pathsep.join(
            p for p in (str(spec_dir.parent.parent), os.environ.get("JUPYTER_PATH")) if p))
        assert _runs_this_interpreter(KernelSpecManager().get_kernel_spec("python3").argv)
    yield "python3"
    mp.undo()


@pytest.fixture(scope="module")
def executed(python3_kernel, tmp_path_factory):
    """Each notebook executed once (in a scratch working directory), by file name."""
    cache = {}

    def run(name):
        if name not in cache:
            nb = nbformat.read(ROOT / "notebooks" / name, as_version=4)
            cwd = tmp_path_factory.mktemp(name.split(".")[0])
            client = nbclient.NotebookClient(nb, kernel_name=python3_kernel, timeout=TIMEOUT_S,
                                             resources={"metadata": {"path": str(cwd)}})
            client.execute()  # raises CellExecutionError, naming the cell, on the first error
            cache[name] = (nb, cwd)
        return cache[name]

    return run


def _tagged(nb, tag):
    cells = [c for c in nb.cells if tag in c.get("metadata", {}).get("tags", [])]
    assert len(cells) == 1, f"expected one cell tagged {tag!r}, found {len(cells)}"
    return cells[0]


def _text(cell) -> str:
    """Everything a code cell showed, as text."""
    out = []
    for o in cell.outputs:
        if o.output_type == "stream":
            out.append(o.text)
        elif o.output_type in ("execute_result", "display_data"):
            out.append(o.data.get("text/plain", ""))
    return "\n".join(out)


def _table_rows(cell) -> int:
    """Body rows of the HTML table (a pandas DataFrame) a cell returned; 0 if it returned none."""
    for o in cell.outputs:
        if o.output_type == "execute_result" and "text/html" in o.data:
            html = o.data["text/html"]
            body = html.split("<tbody>", 1)[1] if "<tbody>" in html else ""
            return body.count("<tr")
    return 0


def test_notebooks_exist():
    assert {p.name for p in NOTEBOOKS} >= {"quickstart.ipynb", "compression_search.ipynb",
                                            "new_device_profile.ipynb"}


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_committed_without_outputs(path):
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    for i, c in enumerate(nb.cells):
        if c.cell_type == "code":
            assert c.outputs == [] and c.execution_count is None, f"{path.name} cell {i} carries outputs"
    assert nb.metadata.get("kernelspec", {}).get("name") == "python3"
    # data size is one parameter cell at the top, small by default
    assert "parameters" in nb.cells[1].metadata.get("tags", []), f"{path.name}: no parameter cell"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_runs_without_error_and_writes_nothing_in_place(path, executed):
    nb, cwd = executed(path.name)
    for c in nb.cells:
        if c.cell_type == "code":
            assert not [o for o in c.outputs if o.output_type == "error"]
    assert list(cwd.iterdir()) == [], f"{path.name} wrote into its working directory"


def test_quickstart_shows_breakdown_comparison_and_provenance(executed):
    nb, _ = executed("quickstart.ipynb")
    assert "x86-avx512-ort:" in _text(_tagged(nb, "estimate"))
    assert _table_rows(_tagged(nb, "breakdown")) > 5
    prov = _text(_tagged(nb, "provenance"))
    assert "cpu_model" in prov and "runtime_version" in prov and "in-model context:" in prov
    compare = _tagged(nb, "compare")
    assert _table_rows(compare) == 3
    text = _text(compare)
    # the spec-sheet target is labelled as such, the measured ones name their profile
    assert "derived:gpu-model" in text and "none (not measured)" in text and "NVIDIA T4 datasheet" in text
    assert re.search(r"x86-avx2-ort(\.[\w-]+)?\.db", text) and re.search(r"x86-avx512-ort(\.[\w-]+)?\.db", text)


def test_compression_search_estimates_variants_and_picks_one(executed):
    nb, _ = executed("compression_search.ipynb")
    variants = _tagged(nb, "variants")
    assert _table_rows(variants) == 2 * 5  # two targets x (fp32 + four quantized variants)
    text = _text(variants)
    assert "int8 static, first/last fp32" in text and "int8 dynamic" in text and "int8_dynamic" in text
    choice = _tagged(nb, "choice")
    assert "variants meet it" in _text(choice)
    assert _table_rows(choice) == 1


def test_new_device_profile_sweeps_trains_and_estimates(executed):
    nb, _ = executed("new_device_profile.ipynb")
    assert _table_rows(_tagged(nb, "sweep")) == 2
    assert "integrity: ok" in _text(_tagged(nb, "stats")) and _table_rows(_tagged(nb, "stats")) > 10
    assert "trained" in _text(_tagged(nb, "train"))
    est = _text(_tagged(nb, "estimate"))
    assert "on fake" in est and "regressor" in est
    # after measuring the model's own kernels, the table prices them
    assert "'table'" in _text(_tagged(nb, "model_kernels"))
