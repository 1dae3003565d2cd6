"""The profiler pipeline: plans, builders, the real measuring backend, the resumable sweep."""

import os
import signal
import sqlite3
import subprocess
import sys
import time

import onnx
import pytest
from click.testing import CliRunner

from latency.cli import main
from latency.errors import EmptyPlan, UnknownOpKind, UnknownPlan
from latency.ops import Config, SPARSITIES, get_kind
from latency.store import Store
from latency.targets import get_target
from profilers.builders import build, buildable_kinds
from profilers.measure import V1, Protocol, _Item, _settled, measure_chunk
from profilers.plans import plan
from profilers.sweep import run_sweep

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FAST = Protocol(phases=1, rounds_per_phase=2, warmup=1, min_runs=3, max_runs=5, remeasure_phases=0)


def test_quick_plan_covers_every_kind_precision_and_sparsity():
    cfgs = plan("quick")
    have = {(c.kind, c.precision) for c in cfgs}
    for k in buildable_kinds():
        assert (k, "fp32") in have or k == "Quant", k
        if k not in ("Reorder",) and "int8" in get_kind(k).precisions:  # LLM ops, recurrent layers: no QDQ form
            assert (k, "int8") in have, k
    assert {c.sparsity for c in cfgs} == set(SPARSITIES)
    assert any(c.precision == "fp16" for c in cfgs)
    assert len({c.hash for c in cfgs}) == len(cfgs)


def test_plan_errors():
    with pytest.raises(UnknownPlan):
        plan("huge")
    with pytest.raises(UnknownOpKind):
        plan("quick", ops=["Convolution"])
    with pytest.raises(EmptyPlan):
        plan("quick", ops=["Reorder"], precisions=["int8"])


def test_every_quick_config_builds_a_valid_model():
    import onnxruntime as ort

    for c in plan("quick"):
        m = build(c)
        if all(o.domain in ("", "ai.onnx") for o in m.opset_import):
            onnx.checker.check_model(onnx.shape_inference.infer_shapes(m, strict_mode=True))
        else:  # contrib ops have no onnx shape inference: the runtime is the judge
            ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])


def test_real_measurement_small_scale():
    """Real onnxruntime sessions on this CPU: kernel time, rounds, canary, edges, failure as data."""
    conv = {"x": [1, 16, 16, 16], "cout": 16, "kernel": [3, 3], "strides": [1, 1], "pads": [1, 1, 1, 1],
            "dilations": [1, 1], "group": 1, "act": "Relu", "sum": 0}
    cfgs = [Config("Conv", conv), Config("Conv", dict(conv, act="none"), "int8"),
            Config("MatMul", {"a": [8, 64], "b": [64, 64], "const_b": 1, "bias": 1, "scale": 0, "trans_b": 0,
                              "act": "none"}),
            Config("Reorder", {"op": "ReorderInput", "x": [1, 16, 16, 16]}),
            Config("Gather", {"data": [10, 4], "indices": [3], "axis": 5})]  # invalid axis: fails
    rows = measure_chunk(cfgs, FAST)
    for r in rows[:4]:
        assert r["error"] is None, r["error"]
        assert r["latency_us"] > 0 and r["latency_us"] <= r["median_us"]
        assert len(r["rounds_us"]) == 2 and len(r["canary_us"]) == 2
    # the isolated fp32 conv gets layout reorders that are not part of its own kernel time
    assert "ReorderInput" in rows[0]["extra"]["edge_us"]
    assert rows[0]["kernel_ops"] == ["Conv"] and "QLinearConv" in rows[1]["kernel_ops"]
    assert rows[4]["error"] and rows[4]["latency_us"] is None


def test_adaptive_protocol_settles_on_two_sessions_and_keeps_the_v1_record():
    """v2 stops a config after two phases only when its two lowest rounds come from two sessions and
    agree; v1 (the shipped profiles' protocol) keeps its stored record (the same spec, the same id)."""
    from latency.store import _hash16

    assert _hash16(V1.spec()) == "5fe000d0bec2db1d"  # the id in tables/*.MANIFEST.md
    assert "settle_after" not in V1.spec() and Protocol().spec()["settle_after"] == 2
    p = Protocol()
    assert _settled(_Item(None, rounds=[100.0, 101.0, 130.0], phase_of=[1, 2, 2]), p)
    assert not _settled(_Item(None, rounds=[100.0, 101.0, 130.0], phase_of=[1, 1, 2]), p)  # one session
    assert not _settled(_Item(None, rounds=[100.0, 104.0, 130.0], phase_of=[1, 2, 2]), p)  # 4% apart
    assert _settled(_Item(None, error="boom"), p)
    conv = {"x": [1, 16, 16, 16], "cout": 16, "kernel": [3, 3], "strides": [1, 1], "pads": [1, 1, 1, 1],
            "dilations": [1, 1], "group": 1, "act": "Relu", "sum": 0}
    quick = Protocol(phases=3, rounds_per_phase=1, warmup=1, min_runs=3, max_runs=5, settle_after=2,
                     settled_spread=10.0, remeasure_phases=0)  # anything settles: two phases each
    rows = measure_chunk([Config("Conv", conv), Config("Conv", dict(conv, cout=8))], quick)
    assert [r["extra"]["phases"] for r in rows] == [2, 2] and all(len(r["rounds_us"]) == 2 for r in rows)
    never = Protocol(phases=3, rounds_per_phase=1, warmup=1, min_runs=3, max_runs=5, settle_after=2,
                     settled_spread=-1.0, remeasure_phases=0)
    rows = measure_chunk([Config("Conv", conv)], never)
    assert rows[0]["extra"]["phases"] == 3 and len(rows[0]["rounds_us"]) == 3


def test_conv_hardswish_is_timed_as_the_fused_kernel_networks_run():
    """As a graph output HardSwish stays Conv + HardSigmoid + Mul; inside a network onnxruntime fuses it
    into the blocked conv. The builder gives it a consumer (not timed) so the row is the fused kernel."""
    conv = {"x": [1, 32, 10, 10], "cout": 32, "kernel": [3, 3], "strides": [1, 1], "pads": [1, 1, 1, 1],
            "dilations": [1, 1], "group": 32, "act": "HardSwish", "sum": 0}
    rows = measure_chunk([Config("Conv", conv)], FAST)
    assert rows[0]["error"] is None, rows[0]["error"]
    assert rows[0]["kernel_ops"] == ["Conv"]


def test_boolean_inputs_are_fed_as_masks():
    """A Where's condition is a mask in networks (long runs): fed random, it ran 3x slower here."""
    from profilers.builders import build, feeds

    c = Config("Elementwise", {"op": "Where", "inputs": [[1, 4, 16, 16], [], [1, 4, 16, 16]], "const_b": 1})
    m = build(c)
    f = feeds(m)
    bools = [i.name for i in m.graph.input if i.type.tensor_type.elem_type == 9]
    assert bools and all(f[b].all() for b in bools)


def test_fake_sweep_resumes_and_stores_failures(tmp_path):
    db = tmp_path / "p.db"
    t = get_target("fake")
    cfgs = plan("quick")[:40] + [Config("Elementwise", {"op": "Add", "inputs": [[2], [2]], "const_b": 0,
                                                         "fail": 1})]
    with Store(db) as st:
        r1 = run_sweep(st, t, cfgs, chunk_size=7)
        assert (r1.measured, r1.failed, r1.status) == (41, 1, "done")
        r2 = run_sweep(st, t, cfgs, chunk_size=7)
        assert (r2.skipped, r2.measured) == (41, 0)
        r3 = run_sweep(st, t, cfgs, retry_failed=True)
        assert r3.measured == 1
        assert len(st.measurements()) == 41
        bad = st.measurements(ok_only=False)
        assert bad["error"].notna().sum() == 1


def test_budget_stops_early(tmp_path, monkeypatch):
    monkeypatch.setenv("LATENCY_FAKE_DELAY_S", "0.2")
    with Store(tmp_path / "b.db") as st:
        r = run_sweep(st, get_target("fake"), plan("quick")[:100], chunk_size=10, budget_s=0.5)
        assert r.status == "budget" and 0 < r.measured < 100


def test_workers_write_every_row(tmp_path):
    with Store(tmp_path / "w.db") as st:
        r = run_sweep(st, get_target("fake"), plan("quick")[:60], chunk_size=10, workers=2)
        assert r.measured == 60 and len(st.measurements()) == 60


def test_kill_mid_sweep_leaves_consistent_db_and_resumes(tmp_path):
    db = tmp_path / "k.db"
    env = dict(os.environ, LATENCY_FAKE_DELAY_S="0.3", PYTHONPATH=ROOT)
    cmd = [sys.executable, "-m", "latency.cli", "profile", "--target", "fake", "--db", str(db), "--plan", "quick",
           "--chunk", "20", "--no-progress"]
    p = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 30
    n = 0
    while time.time() < deadline:
        time.sleep(0.2)
        try:
            with sqlite3.connect(db) as c:
                n = c.execute("select count(*) from measurements").fetchone()[0]
        except sqlite3.Error:
            continue
        if n >= 40:
            break
    p.send_signal(signal.SIGKILL)
    p.wait()
    total = len(plan("quick"))
    with Store(db) as st:
        assert st.integrity_check() == "ok"
        n_killed = len(st.measurements())
        assert 0 < n_killed < total
    env["LATENCY_FAKE_DELAY_S"] = "0"
    subprocess.run(cmd, env=env, check=True, capture_output=True)
    with Store(db) as st:
        df = st.measurements()
        assert len(df) == total and df["key_hash"].is_unique


def test_cli_errors_are_one_line(tmp_path):
    r = CliRunner().invoke(main, ["profile", "--target", "t5", "--db", str(tmp_path / "x.db")])
    assert r.exit_code == 2 and "unknown target 't5'" in r.output and "x86-avx2-ort" in r.output
    assert "Traceback" not in r.output
    r = CliRunner().invoke(main, ["profile", "--target", "fake", "--db", str(tmp_path / "x.db"), "--ops", "Foo"])
    assert r.exit_code == 2 and "unknown op kind 'Foo'" in r.output
    r = CliRunner().invoke(main, ["profile", "--target", "fake", "--db", str(tmp_path / "x.db"), "--plan", "nope"])
    assert r.exit_code == 2 and "valid plans" in r.output
    bad = tmp_path / "bad.db"
    bad.write_bytes(b"this is not sqlite" * 100)
    r = CliRunner().invoke(main, ["db", "stats", "--db", str(bad)])
    assert r.exit_code == 2 and len(r.output.strip().splitlines()) == 1


def test_cli_profile_stats_export_merge(tmp_path):
    a, b = tmp_path / "a.db", tmp_path / "b.db"
    run = CliRunner().invoke
    r = run(main, ["profile", "--target", "fake", "--db", str(a), "--ops", "Conv,MatMul", "--no-progress"])
    assert r.exit_code == 0, r.output
    r = run(main, ["profile", "--target", "fake", "--db", str(b), "--ops", "Pool", "--no-progress"])
    assert r.exit_code == 0, r.output
    r = run(main, ["db", "stats", "--db", str(a)])
    assert "Conv" in r.output and "MatMul" in r.output and "integrity: ok" in r.output
    r = run(main, ["db", "merge", "--db", str(a), str(b)])
    assert r.exit_code == 0
    with Store(a) as st:
        assert set(st.measurements()["kind"]) == {"Conv", "MatMul", "Pool"}
    out = tmp_path / "e.jsonl"
    r = run(main, ["db", "export", "--db", str(a), "--out", str(out), "--format", "jsonl"])
    assert r.exit_code == 0 and len(out.read_text().splitlines()) == len(Store(a).measurements())


def test_every_command_has_help():
    run = CliRunner().invoke
    for cmd in (["targets"], ["ops"], ["profile"], ["db"], ["db", "stats"], ["db", "export"], ["db", "merge"],
                ["train"], ["estimate"]):
        r = run(main, cmd + ["--help"])
        assert r.exit_code == 0 and "Usage" in r.output, cmd


def test_profile_a_models_kernels(tmp_path):
    import onnx

    from models import small_cnn

    m = tmp_path / "m.onnx"
    onnx.save(small_cnn(), m)
    db = tmp_path / "m.db"
    r = CliRunner().invoke(main, ["profile", "--target", "fake", "--db", str(db), "--model", str(m),
                                  "--precision", "fp32,int8", "--no-progress"])
    assert r.exit_code == 0, r.output
    with Store(db) as st:
        df = st.measurements()
    assert set(df["precision"]) == {"fp32", "int8"}
    assert "Conv" in set(df["kind"]) and "Pool" in set(df["kind"])
