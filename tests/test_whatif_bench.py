"""benchmarks/whatif.py at tiny scale: the variants it makes with the real tools are real, loadable,
smaller or sparser models, the nodes it excludes exist in the file the quantizer reads, and its
summary counts what it says it counts."""

from __future__ import annotations

import os
import sys

import numpy as np
import pytest

pytest.importorskip("onnxruntime.quantization")

import onnx  # noqa: E402
import onnxruntime as ort  # noqa: E402
from onnx import numpy_helper  # noqa: E402

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks"))

import whatif as bench  # noqa: E402

from latency import Estimator  # noqa: E402
from profilers import zoo  # noqa: E402
from profilers.e2e import make_inputs  # noqa: E402


@pytest.fixture(scope="module")
def lenet():
    m = zoo.build("lenet5")
    plan = Estimator("x86-avx512-ort").prepare().plan(m, warm=0)
    return m, plan, {label: (choice, make) for label, choice, make in bench.variants(plan, m, "lenet5", False)}


def _run(model_or_path):
    src = model_or_path if isinstance(model_or_path, str) else model_or_path.SerializeToString()
    s = ort.InferenceSession(src, providers=["CPUExecutionProvider"])
    m = onnx.load(model_or_path) if isinstance(model_or_path, str) else model_or_path
    return s.run(None, make_inputs(s, m))


def _weights(m):
    return {i.name: numpy_helper.to_array(i) for i in m.graph.initializer}


def test_prune_writes_a_smaller_model_that_runs(lenet):
    m, plan, vs = lenet
    label = next(k for k in vs if k.startswith("prune"))
    choice, make = vs[label]
    small = make(None, None)
    before, after = _weights(m), _weights(small)
    assert sum(a.size for a in after.values()) < sum(b.size for b in before.values())
    head = next(iter(choice["nodes"]))
    w = next(n.input[1] for n in m.graph.node if n.name == head)
    assert after[w].shape[0] == max(1, round(before[w].shape[0] * 0.5))
    assert _run(small)[0].shape == _run(m)[0].shape
    # the what-if's price of the choice is the estimate of the file really pruned (lenet is too small for
    # pruning to be reliably faster: on some profiles its 17 us total moves by under 2% either way)
    from latency.graph import load_graph

    whole = Estimator("x86-avx512-ort").prepare().estimate(load_graph(small)).total_ms
    assert abs(plan.evaluate(choice).total_ms / whole - 1) < 0.03


def test_sparsity_zeroes_half_of_each_weight(lenet):
    m, plan, vs = lenet
    choice, make = vs["sparsity 50%"]
    sp = make(None, None)
    heads = set(choice["nodes"])
    names = {n.input[1] for n in sp.graph.node if n.name in heads}
    assert names
    for name, a in _weights(sp).items():
        if name in names:
            assert abs((a == 0).mean() - 0.5) < 0.01
    _run(sp)


def test_int8_mix_excludes_nodes_the_quantizer_sees(lenet, tmp_path):
    m, plan, vs = lenet
    pre = bench.preprocessed(m, str(tmp_path))
    label = next(k for k in vs if "first+last" in k and k.startswith("int8"))
    choice, make = vs[label]
    excl = plan.evaluate(choice).nodes_to_exclude
    names = {n.name for n in onnx.load(pre).graph.node}
    assert excl and set(excl) <= names
    q = onnx.load(make(str(tmp_path), pre))
    kept = {n.name for n in q.graph.node if n.op_type in ("Conv", "Gemm", "MatMul")}
    assert choice["fp32_nodes"][0] in kept
    assert any(n.op_type == "QuantizeLinear" for n in q.graph.node)
    _run(q)


def test_report_counts(capsys):
    from scipy.stats import kendalltau

    rows = [{"model": "m", "variant": "fp32", "pred_ms": 1.0, "meas_ms": 1.05, "base_pred": 1.0, "base_meas": 1.05,
             "spread": 0.0},
            {"model": "m", "variant": "int8 static", "pred_ms": 0.5, "meas_ms": 1.2, "base_pred": 1.0,
             "base_meas": 1.05, "spread": 0.0}]
    bench.report(rows, [("m", "int4 weight-only", "not priced (no data)")], [], {"m": 1.0}, kendalltau)
    out = capsys.readouterr().out
    assert "within +-10%: 50% (1/2)" in out
    assert "sign of the change vs fp32 right: 0/1" in out
    assert "m int4 weight-only: not priced (no data)" in out
    assert np.isclose(float(out.split("MAPE ")[1].split("%")[0]), 100 * (0.05 / 1.05 + 0.7 / 1.2) / 2, atol=0.06)


def _timed(ms_by_phase):
    return {"rounds_phase": list(range(len(ms_by_phase))), "rounds_ms": list(ms_by_phase)}


def test_a_change_is_resolved_only_when_its_phases_agree():
    base = _timed([1.0] * 9)
    assert bench.resolved(_timed([0.95] * 8 + [1.01]), base) is True
    assert bench.resolved(_timed([0.99, 1.01] * 4 + [0.98]), base) is False  # 5 of 9 below: noise
    assert bench.resolved(_timed([0.9] * 3), base) is None  # too few phases to say
    assert np.isclose(bench.paired_change(_timed([0.95] * 8 + [1.01]), base), -0.05)


def test_report_leaves_the_control_out_and_judges_unresolved_signs(capsys):
    from scipy.stats import kendalltau

    common = {"model": "m", "base_pred": 1.0, "base_meas": 1.0, "spread": 0.0}
    rows = [{**common, "variant": "fp32", "pred_ms": 1.0, "meas_ms": 1.0},
            {**common, "variant": bench.CONTROL, "pred_ms": 1.0, "meas_ms": 0.5, "meas_change": -0.03,
             "resolved": False},
            {**common, "variant": "sparsity 50%", "pred_ms": 1.0, "meas_ms": 0.95, "meas_change": -0.05,
             "resolved": False},
            {**common, "variant": "int8 static", "pred_ms": 0.8, "meas_ms": 1.1, "meas_change": 0.1,
             "resolved": True}]
    bench.report(rows, [], [], {"m": 1.0}, kendalltau)
    out = capsys.readouterr().out
    assert "variants compared: 3 over 1 models" in out  # the control is not a variant
    assert "resolved as a change (>= 80% of phases on one side): 0/1" in out
    assert "sign of the change vs fp32 right: 0/2" in out  # the 2% rule: both wrong
    assert "judged by resolution instead" in out and ": 1/2 (1 unresolved)" in out
