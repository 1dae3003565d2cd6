"""Decode steps and recurrent/attention shapes: a recurrent or attention node whose shapes cannot be
inferred stops the estimate with a one-line error naming the node and what settles it; other nodes
no kernel prices stay listed as uncovered; a matrix-vector product (an LLM decode step's projections)
streams its weights at the cache probe's memory rate, not at the fitted rate of kernels that compute on them;
a negative per-kernel overhead term takes at most its kernel's price."""

import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from onnx import TensorProto, helper, numpy_helper

from latency.cli import main
from latency.context import PROBE_WEIGHT_MB, ContextModel, matrix_vector, memory_rate
from latency.errors import DynamicShapeError
from latency.estimator import Estimator
from latency.ops import Config
from latency.store import Store
from latency.targets import get_target
from profilers.sweep import run_sweep

FAKE = get_target("fake")
H, I, T = 8, 4, 16


def _model(nodes, inputs, outputs, inits=(), domains=()):
    g = helper.make_graph(nodes, "m", inputs, outputs, list(inits))
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)] +
                          [helper.make_opsetid(d, 1) for d in domains])
    m.ir_version = 8
    return m


def _w(name, shape, seed=0):
    return numpy_helper.from_array((np.random.default_rng(seed).standard_normal(shape) * 0.1).astype(np.float32), name)


def _vi(name, shape, dt=TensorProto.FLOAT):
    return helper.make_tensor_value_info(name, dt, shape)


def _custom_then(node, out_shape=None):
    """``node`` fed by a custom-domain op that neither shape inference nor onnxruntime can run, beside a Relu."""
    foo = helper.make_node("Foo", ["inp"], ["x"], name="foo", domain="com.example")
    relu = helper.make_node("Relu", ["inp"], ["r"], name="relu")
    nodes = [foo, relu] + ([node] if node is not None else [])
    outs = [_vi("r", None)] + ([_vi(node.output[0], None)] if node is not None else [_vi("x", None)])
    inits = [_w("W", [1, 4 * H, I]), _w("R", [1, 4 * H, H], 1), _w("B", [1, 8 * H], 2)] \
        if node is not None and node.op_type == "LSTM" else []
    m = _model(nodes, [_vi("inp", [T, 1, I])], outs, inits, domains=("com.example",))
    if out_shape is not None:
        m.graph.value_info.append(_vi("x", out_shape))
    return m


def _lstm():
    return helper.make_node("LSTM", ["x", "W", "R", "B"], ["y"], name="lstm", hidden_size=H)


def _mha():
    return helper.make_node("MultiHeadAttention", ["x", "x", "x"], ["y"], name="mha", domain="com.microsoft",
                            num_heads=2)


@pytest.fixture(scope="module")
def prof(tmp_path_factory):
    db = tmp_path_factory.mktemp("decode") / "fake.db"
    cfgs = [Config("LSTM", {"direction": "forward", "seq_len": s, "batch": 1, "input_size": I, "hidden_size": H})
            for s in (4, 8, 16)]
    cfgs += [Config("Activation", {"op": "Relu", "x": [n, 1, I]}) for n in (4, 8, 16)]
    with Store(db) as st:
        run_sweep(st, FAKE, cfgs)
    return db


@pytest.mark.parametrize("node, name", [(_lstm(), "lstm"), (_mha(), "mha")])
def test_a_recurrent_or_attention_node_of_unknown_shape_is_a_one_line_error(node, name, prof, tmp_path):
    m = _custom_then(node)
    est = Estimator(FAKE, profile=prof, overhead=False, context=False)
    with pytest.raises(DynamicShapeError) as e:
        est.estimate(m)
    msg = str(e.value)
    assert f"node {name!r}" in msg and "'x'" in msg and "com.example:Foo node 'foo'" in msg and "value_info" in msg
    assert "\n" not in msg
    p = tmp_path / "m.onnx"
    onnx.save(m, p)
    r = CliRunner().invoke(main, ["estimate", str(p), "--target", "fake", "--profile", str(prof)])
    lines = r.output.strip().splitlines()
    assert r.exit_code != 0 and len(lines) == 1 and "Traceback" not in r.output, r.output
    assert f"node {name!r}" in lines[0] and "value_info" in lines[0], lines[0]


def test_what_the_error_names_settles_it(prof):
    """A static shape for the tensor in the model's value_info prices the LSTM (the custom op stays uncovered)."""
    e = Estimator(FAKE, profile=prof, overhead=False, context=False).estimate(_custom_then(_lstm(), [T, 1, I]))
    assert [k.kind for k in e.kernels if k.kind == "LSTM"] == ["LSTM"]
    assert [u.node for u in e.uncovered] == ["foo"]


def test_other_unpriced_nodes_stay_listed_as_uncovered(prof):
    e = Estimator(FAKE, profile=prof, overhead=False, context=False).estimate(_custom_then(None))
    assert [u.node for u in e.uncovered] == ["foo"] and any(k.kind == "Activation" for k in e.kernels)


# ---- the weight fetch of matrix-vector products -----------------------------------------------------------

def _probe_spec(lo_us, hi_us, rate=30.0):
    fp = [1.05, 2.1, 4.2, 8.4, 16.8, 25.3, 33.7, 50.5]
    t = [lo_us] * 4 + [lo_us * 1.1, (lo_us + hi_us) / 2, hi_us * 0.9, hi_us]
    return {"stream_us_per_mb": rate, "stream_cap_mb": 32.0, "stream_min_mb": 0.0,
            "gate": {"footprint_mb": [10.0, 32.0], "curve": {"footprint_mb": fp, "gate": [0] * 4 + [0.1, 0.5, 1, 1],
                                                            "us_per_product": t}}}


def test_the_memory_rate_is_the_largest_cache_probe_per_mb_of_a_product():
    assert memory_rate(_probe_spec(3.0, 6.0)) == pytest.approx(6.0 / PROBE_WEIGHT_MB)
    assert memory_rate({"stream_us_per_mb": 30.0}) is None  # no probe: the fitted rate prices every fetch
    assert memory_rate({"memory_us_per_mb": 22.0}) == 22.0


def _mm(a, const_b=1):
    return Config("MatMul", {"a": a, "b": [a[-1], 64], "const_b": const_b, "bias": 0, "scale": 0, "trans_b": 0,
                             "act": "none"}).key


def test_a_matrix_vector_product_takes_its_memory_stream_and_other_kernels_the_fitted_rate():
    cm = ContextModel(_probe_spec(2.62144, 5.24288, rate=30.0))  # memory: 20 us/MB
    w, mv, mm = 4.0, _mm([1, 1, 512]), _mm([1, 32, 512])
    assert cm.stream_us(w, 1.0, 10.0 * w, mv) == pytest.approx(10.0 * w)   # 20 us/MB in all
    assert cm.stream_us(w, 0.5, 10.0 * w, mv) == pytest.approx(5.0 * w)    # linear in the gate
    assert cm.stream_us(w, 1.0, 25.0 * w, mv) == 0.0                      # slower alone than the stream
    assert cm.stream_us(w, 1.0, 1.0, mv) == pytest.approx(20.0 * w - 1.0)
    slow = ContextModel(_probe_spec(2.62144, 5.24288, rate=15.0))
    assert slow.stream_us(w, 1.0, 1.0, mv) == pytest.approx(15.0 * w)     # never above the fitted rate
    assert cm.stream_us(w, 1.0, 10.0 * w, mm) == pytest.approx(30.0 * w)   # a product of 32 rows: fitted rate
    assert cm.stream_us(w, 1.0) == pytest.approx(30.0 * w)                  # nothing known of the kernel
    assert cm.stream_us(64.0, 1.0, 1.0, mv) == 0.0                          # beyond the cache: as before


def test_matrix_vector_kernels_are_told_by_their_shapes():
    assert matrix_vector(_mm([1, 1, 512])) and matrix_vector(_mm([1, 512]))
    assert not matrix_vector(_mm([1, 32, 512])) and not matrix_vector(_mm([1, 1, 512], const_b=0))
    nbits = {"k": 512, "n": 512, "bits": 4, "block_size": 32, "accuracy_level": 0, "bias": 0, "zero_point": 0}
    assert matrix_vector(Config("MatMulNBits", {**nbits, "m": 1}).key)
    assert not matrix_vector(Config("MatMulNBits", {**nbits, "m": 32}).key)


def test_the_probe_weight_matches_the_probe_the_calibration_measures():
    from latency.estimator import weight_mb
    from latency.graph import load_graph
    from latency.fusion import fuse
    from profilers import chains

    ks = [k for k in fuse(load_graph(chains.build_probe(chains.probe_name(chains.PROBE_LENGTHS[0]))),
                          get_target("x86-avx512-ort").fusion_rules())[0] if k.kind == "MatMul"]
    assert ks and all(weight_mb(k.key) == pytest.approx(PROBE_WEIGHT_MB) for k in ks)


# ---- per-kernel overhead terms never make a kernel cost less than nothing -----------------------------------

def _k(name, us, source="table", op="MatMul"):
    from latency.estimator import KernelEstimate

    return KernelEstimate(name, "Free" if source == "free" else op, (op,), (name,), "fp32", "0", us, source,
                          isolated_us=None if source == "free" else us)


OV = {"per_run_us": 3.0, "per_short_kernel_us": -1.0, "per_long_kernel_us": -5.0, "short_us": 30.0,
      "source": "fitted"}


def test_a_negative_per_kernel_term_takes_at_most_the_kernels_price():
    from latency.overhead import kernel_terms_us, overhead_us

    big = _k("big", 200.0)
    tiny = [_k(f"t{i}", 0.6, op="Add") for i in range(100)]   # 64-element ops: 0.6 us alone
    small = [_k(f"s{i}", 2.0, op="Add") for i in range(100)]
    reshape = _k("reshape", 0.0, source="free", op="Reshape")  # a dispatched metadata op: its term as fitted
    ks = [big, *tiny, *small, reshape]
    assert kernel_terms_us(ks, -1.0, -5.0, 30.0) == pytest.approx(-5.0 - 100 * 0.6 - 100 * 1.0 - 1.0)
    assert overhead_us(ks, OV) == pytest.approx(3.0 - 166.0)
    # additive over kernels: a what-if table that takes it kernel by kernel gets the same sum
    assert sum(overhead_us([k], OV) - 3.0 for k in ks) == pytest.approx(overhead_us(ks, OV) - 3.0)
    assert kernel_terms_us(ks, 0.5, 1.0, 30.0) == pytest.approx(1.0 + 200 * 0.5 + 0.5)  # positive: as fitted


def test_a_decode_step_of_tiny_kernels_keeps_its_big_kernels_price():
    """Before, 100 kernels of 0.6 us alone took 100 us off a model and scaled its big kernel by 0.6."""
    from latency.overhead import settle_overhead

    ks = [_k("big", 200.0), *[_k(f"t{i}", 0.6, op="Add") for i in range(100)]]
    ests, ksum, overhead, _ = settle_overhead(ks, OV)
    assert ksum + overhead == pytest.approx(260.0 + 3.0 - 5.0 - 60.0)
    assert [e.latency_us for e in ests][0] > 0.75 * 200.0
