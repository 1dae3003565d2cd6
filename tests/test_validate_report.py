"""latency validate / report / db plot and the progress bar: real measurements at small scale, figures on disk."""

import io
import json
import re

import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from onnx import TensorProto, helper, numpy_helper

from latency.cli import main
from latency.targets import get_target

HOST = "x86-avx512-ort"


@pytest.fixture(scope="module", autouse=True)
def _restore_affinity():
    """validate pins the process to one core (as a CLI run should); give the rest of the test session its cores back."""
    import os

    saved = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else None
    yield
    if saved:
        os.sched_setaffinity(0, saved)


def _host_ok():
    return get_target(HOST).host_supported()[0]


needs_host = pytest.mark.skipif(not _host_ok(), reason=f"this host cannot run {HOST}")


def _tiny_model(path):
    """conv -> relu -> conv (+ residual) -> relu -> global pool -> flatten -> gemm: a few kernels, ~0.1 ms."""
    rng = np.random.default_rng(0)

    def init(name, shape):
        return numpy_helper.from_array(rng.standard_normal(shape).astype(np.float32) * 0.1, name)

    nodes = [
        helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], name="conv1", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
        helper.make_node("Conv", ["r1", "w2", "b2"], ["c2"], name="conv2", pads=[1, 1, 1, 1]),
        helper.make_node("Add", ["c2", "r1"], ["s"], name="add"),
        helper.make_node("Relu", ["s"], ["r2"], name="relu2"),
        helper.make_node("GlobalAveragePool", ["r2"], ["g"], name="pool"),
        helper.make_node("Flatten", ["g"], ["f"], name="flatten"),
        helper.make_node("Gemm", ["f", "wf", "bf"], ["y"], name="fc", transB=1),
    ]
    graph = helper.make_graph(
        nodes, "tiny", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 8, 16, 16])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 10])],
        [init("w1", [16, 8, 3, 3]), init("b1", [16]), init("w2", [16, 16, 3, 3]), init("b2", [16]),
         init("wf", [10, 16]), init("bf", [10])])
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    onnx.checker.check_model(m)
    onnx.save(m, str(path))
    return str(path)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return _tiny_model(tmp_path_factory.mktemp("m") / "tiny.onnx")


@pytest.fixture(scope="module")
def validated(tiny):
    """One real `latency validate --json` of the tiny model (batch 2, one phase), shared by the tests below."""
    if not _host_ok():
        pytest.skip(f"this host cannot run {HOST}")
    r = CliRunner().invoke(main, ["validate", tiny, "--target", HOST, "--batch", "2", "--phases", "1", "--json"])
    assert r.exit_code == 0, r.output
    return json.loads(r.stdout)


def _one_line_error(r):
    assert r.exit_code != 0
    err = r.stderr.strip()
    assert err.startswith("error: ") and "\n" not in err and "Traceback" not in r.output, r.output
    return err


# -- validate -------------------------------------------------------------------------------------


@needs_host
def test_validate_json_schema_and_consistent_errors(validated):
    from profilers.validate import KERNEL_KEYS, RESULT_KEYS

    v = validated
    assert tuple(v) == RESULT_KEYS
    assert v["target"] == HOST and v["profile"]
    assert v["protocol"]["phases"] == 1 and v["protocol"]["rounds"] == 2 and v["protocol"]["core"] == 0
    assert "per-node profile" in v["protocol"]["description"]
    tot = v["total"]
    assert tot["measured_ms"] > 0 and tot["predicted_ms"] > 0 and tot["phases"] >= 1
    assert tot["error_pct"] == pytest.approx(100 * (tot["predicted_ms"] - tot["measured_ms"]) / tot["measured_ms"])
    assert len(tot["measured_rounds_ms"]) >= 2 and min(tot["measured_rounds_ms"]) == pytest.approx(tot["measured_ms"])
    ks = v["kernel_sum"]
    assert ks["measured_us"] > 0
    assert ks["error_pct"] == pytest.approx(100 * (ks["predicted_us"] / ks["measured_us"] - 1))
    paired = [k for k in v["kernels"] if k["measured_us"] is not None]
    assert v["matching"]["paired"] == len(paired) >= 3  # two convs and the gemm at least
    kinds = {k["kind"] for k in paired}
    assert {"Conv", "MatMul"} <= kinds
    for k in v["kernels"]:
        assert tuple(k) == KERNEL_KEYS
    for k in paired:
        assert k["measured_us"] > 0 and k["predicted_us"] > 0 and k["runtime_node"]
        assert k["error_pct"] == pytest.approx(100 * (k["predicted_us"] - k["measured_us"]) / k["measured_us"])
    assert v["matched_sum"]["measured_us"] == pytest.approx(sum(k["measured_us"] for k in paired))
    # --batch 2 reached the runtime: the estimate priced batch-2 kernels
    conv = next(k for k in v["kernels"] if k["kind"] == "Conv")
    assert conv["predicted_us"] > 0


@needs_host
def test_validate_text_output(tiny):
    r = CliRunner().invoke(main, ["validate", tiny, "--batch", "1", "--phases", "1", "--top", "2"])
    assert r.exit_code == 0, r.output
    out = r.stdout
    assert "total (ms)" in out and "predicted_us measured_us" in out and "pinned to core 0" in out
    rows = [ln for ln in out.splitlines() if re.match(r"\s+\d+\.\d\s+\d+\.\d\s+[+-]", ln)]
    assert len(rows) == 2  # --top 2


def test_validate_bad_inputs(tmp_path, tiny):
    run = CliRunner().invoke
    assert "model file not found" in _one_line_error(run(main, ["validate", str(tmp_path / "missing.onnx")]))
    assert "unknown target" in _one_line_error(run(main, ["validate", tiny, "--target", "t5"]))
    assert "cannot measure t4" in _one_line_error(run(main, ["validate", tiny, "--target", "t4", "--batch", "1"]))
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"not a model at all")
    if _host_ok():
        _one_line_error(run(main, ["validate", str(junk)]))
        seq = tmp_path / "seq.onnx"  # a free sequence length (a free batch alone defaults to 1)
        m = helper.make_model(helper.make_graph([helper.make_node("Relu", ["x"], ["y"], name="r")], "g",
                                                [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", "seq"])],
                                                [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)]),
                              opset_imports=[helper.make_opsetid("", 17)])
        m.ir_version = 8
        onnx.save(m, str(seq))
        assert "no value" in _one_line_error(run(main, ["validate", str(seq)]))
        assert "--phases" in _one_line_error(run(main, ["validate", tiny, "--batch", "1", "--phases", "0"]))


def test_validate_feeds_the_shapes_it_estimated(tiny):
    import onnxruntime as ort

    from latency.graph import load_graph
    from profilers.e2e import make_inputs
    from profilers.validate import _FixedShapes

    sess = ort.InferenceSession(tiny, providers=["CPUExecutionProvider"])
    for kw, want in (({"batch": 3}, [3, 8, 16, 16]), ({"shapes": {"x": [2, 8, 16, 16]}}, [2, 8, 16, 16])):
        feed = make_inputs(_FixedShapes(sess, load_graph(tiny, **kw)), tiny)
        assert list(feed["x"].shape) == want


def test_validate_missing_profile(tmp_path, tiny):
    if not _host_ok():
        pytest.skip(f"this host cannot run {HOST}")
    r = CliRunner().invoke(main, ["validate", tiny, "--batch", "1", "--profile", str(tmp_path / "none.db")])
    assert "does not exist" in _one_line_error(r)


# -- report -----------------------------------------------------------------------------------------


@needs_host
def test_report_writes_self_contained_html(tmp_path, tiny, validated, monkeypatch):
    import profilers.validate as pv

    # the measurement itself is tested above: reuse it rather than measure again
    monkeypatch.setattr(pv, "validate", lambda *a, **k: validated)
    out = tmp_path / "rep"
    r = CliRunner().invoke(main, ["report", tiny, "--target", HOST, "--target", "t4", "--out", str(out),
                                  "--batch", "2", "--validate"])
    assert r.exit_code == 0, r.output
    pngs = sorted(p.name for p in out.glob("*.png"))
    for name in ("breakdown.png", "targets.png", "roofline.png", "validation.png", "profile-Conv-latency.png",
                 "profile-Conv-precision.png", "profile-sparsity.png"):
        assert name in pngs
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    html = (out / "report.html").read_text()
    assert html.count('src="data:image/png;base64,') == len(pngs)
    assert "<figcaption>" in html and html.count("<figcaption>") == len(pngs)
    assert "derived" in html and "spec sheet" in html  # t4 is labelled
    assert "best measured in the profile" in html or "best achieved" in html  # roofs are not datasheet claims
    assert "onnxruntime per-node profile" in html  # where the measured numbers came from
    assert not re.search(r'src="(?!data:)', html)  # nothing external


def test_report_bad_inputs(tmp_path, tiny):
    run = CliRunner().invoke
    out = str(tmp_path / "r")
    assert "model file not found" in _one_line_error(run(main, ["report", str(tmp_path / "no.onnx"), "--out", out]))
    assert "unknown target" in _one_line_error(run(main, ["report", tiny, "--batch", "1", "--target", "t5",
                                                          "--out", out]))
    (tmp_path / "no_tables").mkdir()  # a target with no profile installed anywhere
    no_profiles = {"LATENCY_TABLES": str(tmp_path / "no_tables"), "LATENCY_HOME": str(tmp_path / "no_home")}
    assert "no user profile" in _one_line_error(run(main, ["report", tiny, "--batch", "1", "--target", "arm64-ort",
                                                      "--out", out], env=no_profiles))


# -- db plot ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def fake_db(tmp_path_factory):
    from latency.store import Store
    from profilers.plans import plan
    from profilers.sweep import run_sweep

    db = tmp_path_factory.mktemp("db") / "fake.db"
    with Store(db) as st:
        run_sweep(st, get_target("fake"), plan("quick", ops=["Conv", "MatMul"]))
    return str(db)


def test_db_plot_writes_pngs(tmp_path, fake_db):
    out = tmp_path / "plots"
    r = CliRunner().invoke(main, ["db", "plot", "--db", fake_db, "--kind", "Conv", "--out", str(out)])
    assert r.exit_code == 0, r.output
    names = sorted(p.name for p in out.glob("*.png"))
    assert names == ["profile-Conv-latency.png", "profile-Conv-precision.png", "profile-sparsity.png"]
    assert all(p.stat().st_size > 10_000 for p in out.glob("*.png"))
    assert r.stdout.count("wrote ") == 3


def test_db_plot_bad_inputs(tmp_path, fake_db):
    run = CliRunner().invoke
    out = str(tmp_path / "p")
    assert "has no measured Pool rows" in _one_line_error(run(main, ["db", "plot", "--db", fake_db, "--kind", "Pool",
                                                                     "--out", out]))
    assert "unknown op kind" in _one_line_error(run(main, ["db", "plot", "--db", fake_db, "--kind", "Convolution",
                                                           "--out", out]))
    assert "has no target" in _one_line_error(run(main, ["db", "plot", "--db", fake_db, "--target", "t4",
                                                         "--kind", "Conv", "--out", out]))
    _one_line_error(run(main, ["db", "plot", "--db", str(tmp_path / "none.db"), "--kind", "Conv", "--out", out]))


def test_profile_data_ratios(fake_db):
    from latency.report import data

    df, target = data.profile_rows(fake_db)
    assert target == "fake" and (df["ops"] > 0).any()
    pr = data.precision_ratios(df)
    assert len(pr) and set(pr["precision"]) <= {"fp16", "int8", "int8_dynamic"}
    # the fake backend prices int8 2.5x faster on compute: ratios below 1 on big shapes
    assert pr[pr["precision"] == "int8"]["ratio"].min() < 1.0
    sr = data.sparsity_ratios(df)
    assert len(sr) and sr["ratio"].between(0.9, 1.1).all()  # fake prices ignore sparsity
    c = data.ceilings(df)
    assert c["compute"]["fp32"]["gops"] > 0 and "measured" in c["compute"]["fp32"]["basis"]


# -- progress -----------------------------------------------------------------------------------------


def test_progress_bar_draws_only_when_enabled():
    from latency.progress import Bar, wanted

    buf = io.StringIO()
    with Bar(4, "x", enabled=True, stream=buf) as bar:
        bar.update(2, note="half")
        bar.echo("a line")
    s = buf.getvalue()
    assert "2/4 x" in s and "half" in s and "a line\n" in s
    quiet = io.StringIO()
    with Bar(4, "x", enabled=False, stream=quiet) as bar:
        bar.update(3)
        bar.echo("kept")
    assert quiet.getvalue() == "kept\n"  # lines stay, no bar
    assert not wanted(stream=io.StringIO())  # not a terminal
    assert not wanted(quiet=True)


def test_new_commands_have_help():
    for args in (["validate", "--help"], ["report", "--help"], ["db", "plot", "--help"]):
        r = CliRunner().invoke(main, args)
        assert r.exit_code == 0 and "Usage" in r.output
