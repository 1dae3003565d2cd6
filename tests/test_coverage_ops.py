"""Recurrent layers, LLM operators, control flow and dynamic inputs (issue 18): each new op kind builds,
lowers to one kernel keyed as the profiler keys it, and is priced with its source; If / Loop / Scan are
priced by what they run; free dims other than a batch are an error that names them."""

import json

import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from onnx import TensorProto, helper, numpy_helper

from latency.cli import main
from latency.errors import DynamicShapeError, ModelError
from latency.estimator import Estimator
from latency.fusion import fuse
from latency.graph import load_graph
from latency.ops import Config
from latency.store import Store
from latency.targets import get_target
from profilers.builders import build
from profilers.plans import plan
from profilers.sweep import run_sweep

FAKE = get_target("fake")
NEW_KINDS = ["LSTM", "GRU", "RNN", "Attention", "RotaryEmbedding", "MatMulNBits", "Einsum", "EmbedLayerNorm"]


def _lstm(seq, hidden=32, inp=16, direction="forward"):
    return Config("LSTM", {"direction": direction, "seq_len": seq, "batch": 1, "input_size": inp, "hidden_size": hidden})


def _mm(n=64):
    return Config("MatMul", {"a": [1, n], "b": [n, n], "const_b": 1, "bias": 0, "scale": 0, "trans_b": 0,
                             "act": "none"})


def _variants():
    """Shapes beside the quick plan's: every new kind gets >= 3 rows per precision (its prior's fit)."""
    out = [_lstm(s) for s in (4, 8, 16)] + [Config("LSTM", _lstm(s).params, "int8_dynamic") for s in (4, 8)]
    out += [Config("RotaryEmbedding", {"x": [1, s, 256], "head_size": 64, "rotary_dim": 64, "interleaved": 0})
            for s in (4, 8, 32)]
    out += [Config("Einsum", {"equation": "ij,jk->ik", "inputs": [[m, 32], [32, 32]]}) for m in (4, 8)]
    out += [_mm(n) for n in (16, 32, 64, 128)]
    out += [Config("Activation", {"op": "Relu", "x": [1, n]}) for n in (16, 32, 64, 128)]
    # the DynamicQuantizeLinear that quantizes a QAttention's input
    out += [Config("Quant", {"op": "DynamicQuantizeLinear", "x": [1, s, h]}, "int8") for s, h in
            ((128, 768), (16, 64), (32, 64))]
    return out


@pytest.fixture(scope="module")
def prof(tmp_path_factory):
    db = tmp_path_factory.mktemp("coverage") / "fake.db"
    with Store(db) as st:
        run_sweep(st, FAKE, plan("quick", ops=NEW_KINDS) + _variants())
    return db


@pytest.fixture(scope="module")
def est(prof):
    return Estimator(FAKE, profile=prof, overhead=False, context=False)


def _model(nodes, inputs, outputs, inits=(), opset=17):
    g = helper.make_graph(nodes, "m", inputs, outputs, list(inits))
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = 8
    return m


def _vi(name, shape, dt=TensorProto.FLOAT):
    return helper.make_tensor_value_info(name, dt, shape)


def _w(name, shape, seed=0):
    return numpy_helper.from_array((np.random.default_rng(seed).standard_normal(shape) * 0.1).astype(np.float32), name)


# ---- new op kinds -------------------------------------------------------------------------------------


def test_every_new_kind_builds_lowers_to_its_key_and_is_priced_from_the_table(est):
    cfgs = plan("quick", ops=NEW_KINDS)
    kp = {(c.kind, c.precision) for c in cfgs}
    assert {c.kind for c in cfgs} == set(NEW_KINDS) and ("LSTM", "int8_dynamic") in kp
    assert {("Attention", "int8_dynamic"), ("EmbedLayerNorm", "fp32"), ("EmbedLayerNorm", "int8")} <= kp
    for c in cfgs:
        m = build(c)
        kernels, unc = fuse(load_graph(m), FAKE.fusion_rules())
        own = [k for k in kernels if k.kind == c.kind]
        assert not unc and len(own) == 1 and own[0].key == c.key, c.key
        e = est.estimate(m)
        k = next(k for k in e.kernels if k.kind == c.kind)
        assert k.source == "table" and k.latency_us > 0 and not e.uncovered, c.key


def test_a_shape_the_table_misses_is_priced_by_the_prior_with_its_source(est):
    for c in (_lstm(12), Config("RotaryEmbedding", {"x": [1, 16, 256], "head_size": 64, "rotary_dim": 64,
                                                     "interleaved": 0})):
        e = est.estimate(build(c))
        k = next(k for k in e.kernels if k.kind == c.kind)
        assert k.source == "prior" and "FLOPs/bytes line" in k.detail and k.latency_us > 0


def test_lstm_sequence_length_is_a_key_field(est):
    short, long_ = _lstm(8), _lstm(64)
    assert short.key != long_.key and '"seq_len":64' in long_.key
    a, b = est.estimate(build(short)), est.estimate(build(long_))
    ka, kb = a.kernels[0], b.kernels[0]
    assert ka.source == "table" and kb.source != "table"  # a longer utterance is a new shape, not a hit
    assert kb.latency_us > ka.latency_us
    # a DynamicQuantizeLSTM is the LSTM kind at int8_dynamic
    q = Config("LSTM", short.params, "int8_dynamic")
    kq = est.estimate(build(q)).kernels[0]
    assert kq.precision == "int8_dynamic" and kq.source == "table" and kq.key == q.key


def test_attention_decode_and_prefill_are_different_keys():
    gqa = [c for c in plan("quick", ops=["Attention"]) if c.params["op"] == "GroupQueryAttention"]
    decode = [c for c in gqa if c.params["seq_len"] == 1 and c.params["past_len"] > 0]
    prefill = [c for c in gqa if c.params["seq_len"] > 1 and c.params["past_len"] == 0]
    assert decode and prefill
    # the past length is read from the cache input's shape
    k = fuse(load_graph(build(decode[0])), FAKE.fusion_rules())[0][0]
    assert k.params["past_len"] == decode[0].params["past_len"] and k.params["seq_len"] == 1


def test_einsum_with_ellipsis_or_implicit_output_is_written_out():
    from latency.fusion.lower import explicit_einsum

    assert explicit_einsum("...ij,...jk->...ik", [[2, 3, 4, 5], [2, 3, 5, 6]]) == "ABij,ABjk->ABik"
    assert explicit_einsum("ij,jk", [[4, 5], [5, 6]]) == "ij,jk->ik"
    assert explicit_einsum("ij,jk->ik", [[4, 5]]) is None


# ---- control flow -------------------------------------------------------------------------------------


def _branch(name, big):
    """A branch computing y from the outer x: a 128-wide MatMul (big) or a Relu."""
    if big:
        node = helper.make_node("MatMul", ["x", f"{name}_w"], [f"{name}_y"], name=f"{name}_mm")
        inits = [_w(f"{name}_w", [128, 128])]
    else:
        node = helper.make_node("Relu", ["x"], [f"{name}_y"], name=f"{name}_relu")
        inits = []
    return helper.make_graph([node], name, [], [_vi(f"{name}_y", [1, 128])], inits)


def _if_model(cond):
    """If over x [1, 128]: then = MatMul, else = Relu; cond a constant (True/False) or a graph input (None)."""
    inputs = [_vi("x", [1, 128])]
    inits = []
    if cond is None:
        inputs.append(_vi("c", [], TensorProto.BOOL))
    else:
        inits.append(numpy_helper.from_array(np.array(cond), "c"))
    node = helper.make_node("If", ["c"], ["y"], name="if", then_branch=_branch("then", True),
                            else_branch=_branch("else", False))
    return _model([node], inputs, [_vi("y", [1, 128])], inits)


def test_if_with_a_constant_condition_takes_that_branch(est):
    then = est.estimate(_if_model(True))
    assert [k.kind for k in then.kernels] == ["MatMul"] and then.kernels[0].name.startswith("if/then_branch/")
    assert "if" in then.kernels[0].nodes and not then.uncovered
    other = est.estimate(_if_model(False))
    assert [k.kind for k in other.kernels] == ["Activation"] and other.kernels[0].name.startswith("if/else_branch/")
    # not constant: the costlier branch, and a note saying so
    free = est.estimate(_if_model(None))
    assert [k.kind for k in free.kernels] == ["MatMul"]
    assert any("not constant" in w and "then_branch" in w for w in free.warnings)
    assert free.total_ms == pytest.approx(then.total_ms)


def _loop_model(trips, const=True):
    """Loop carrying h [1, 64] through h = Relu(h @ W), ``trips`` iterations (a constant M, or a graph input)."""
    body = helper.make_graph(
        [helper.make_node("Identity", ["cond_in"], ["cond_out"], name="cond_pass"),
         helper.make_node("MatMul", ["h_in", "W"], ["mm"], name="step_mm"),
         helper.make_node("Relu", ["mm"], ["h_out"], name="step_relu")],
        "body", [_vi("i", [], TensorProto.INT64), _vi("cond_in", [], TensorProto.BOOL), _vi("h_in", [1, 64])],
        [_vi("cond_out", [], TensorProto.BOOL), _vi("h_out", [1, 64])])
    inits = [_w("W", [64, 64]), numpy_helper.from_array(np.array(True), "cond")]
    inputs = [_vi("h0", [1, 64])]
    if const:
        inits.append(numpy_helper.from_array(np.array(trips, np.int64), "M"))
    else:
        inputs.append(_vi("M", [], TensorProto.INT64))
    node = helper.make_node("Loop", ["M", "cond", "h0"], ["h"], name="loop", body=body)
    return _model([node], inputs, [_vi("h", [1, 64])], inits)


def test_loop_with_a_static_trip_count_multiplies_its_body(est):
    one, five = est.estimate(_loop_model(1)), est.estimate(_loop_model(5))
    assert sum(k.kind == "MatMul" for k in five.kernels) == 5 and not five.uncovered
    assert five.kernel_sum_us == pytest.approx(5 * one.kernel_sum_us)
    assert five.kernels[0].nodes[0] == "loop" and five.kernels[-1].name.startswith("loop/body[4]/")
    assert est.estimate(_loop_model(0)).kernel_sum_us == 0  # zero iterations run nothing, said by a Free kernel


def test_loop_without_a_static_count_needs_trip_count(est, tmp_path):
    with pytest.raises(DynamicShapeError) as e:
        load_graph(_loop_model(3, const=False))
    assert "'loop'" in str(e.value) and "--trip-count loop=N" in str(e.value) and "\n" not in str(e.value)
    g = load_graph(_loop_model(3, const=False), trip_counts={"loop": 3})
    assert g.control["loop"].trips == 3 and g.control["loop"].trips_source == "--trip-count"
    assert sum(k.kind == "MatMul" for k in est.estimate(g).kernels) == 3


@pytest.mark.parametrize("arg, needles", [
    ("nosuch=3", ["'nosuch'", "not a Loop or Scan node", "loop"]),
    ("loop=x", ["--trip-count", "NAME=N"]),
    ("=4", ["--trip-count"]),
])
def test_a_bad_trip_count_is_a_one_line_error(arg, needles, prof, tmp_path):
    p = tmp_path / "loop.onnx"
    onnx.save(_loop_model(3, const=False), p)
    r = CliRunner().invoke(main, ["estimate", str(p), "--target", "fake", "--profile", str(prof),
                                  "--trip-count", arg])
    lines = r.output.strip().splitlines()
    assert r.exit_code == 2 and len(lines) == 1 and "Traceback" not in r.output, r.output
    assert all(n in lines[0] for n in needles), lines[0]
    ok = CliRunner().invoke(main, ["estimate", str(p), "--target", "fake", "--profile", str(prof), "--trip-count",
                                   "loop=3", "--json"])
    assert ok.exit_code == 0 and sum(k["kind"] == "MatMul" for k in json.loads(ok.stdout)["kernels"]) == 3


def test_a_loop_body_is_one_working_set_whatever_its_trips(est):
    # the same weight read every iteration is not a bigger model: the working set (and the cache gates it
    # drives) stays that of one iteration, so the price per iteration is flat
    g = lambda n: load_graph(_loop_model(n, const=False), trip_counts={"loop": n})  # noqa: E731
    few, many = est.estimate(g(4)), est.estimate(g(400))
    assert many.footprint_mb == pytest.approx(few.footprint_mb) and many.cache_gate == few.cache_gate
    assert many.kernel_sum_us == pytest.approx(100 * few.kernel_sum_us, rel=1e-6)


def test_a_trip_count_the_graph_contradicts_is_refused(est):
    with pytest.raises(ModelError, match="fixes this Loop at 5 iterations"):
        load_graph(_loop_model(5), trip_counts={"loop": 100})
    assert load_graph(_loop_model(5), trip_counts={"loop": 5}).control["loop"].trips == 5


def test_scan_runs_its_body_once_per_step(est):
    body = helper.make_graph([helper.make_node("MatMul", ["s_in", "W"], ["s_out"], name="mm"),
                              helper.make_node("Identity", ["s_out"], ["y_t"], name="emit")],
                             "body", [_vi("s_in", [1, 64]), _vi("x_t", [64])], [_vi("s_out", [1, 64]), _vi("y_t", [1, 64])])
    node = helper.make_node("Scan", ["s0", "xs"], ["s", "ys"], name="scan", body=body, num_scan_inputs=1)
    m = _model([node], [_vi("s0", [1, 64]), _vi("xs", [7, 64])], [_vi("s", [1, 64]), _vi("ys", None)], [_w("W", [64, 64])])
    e = est.estimate(m)
    assert sum(k.kind == "MatMul" for k in e.kernels) == 7 and not e.uncovered


# ---- dynamic inputs -----------------------------------------------------------------------------------


def _relu_model(*shapes):
    ins = [_vi(f"x{i}", s) for i, s in enumerate(shapes)]
    nodes = [helper.make_node("Relu", [f"x{i}"], [f"y{i}"], name=f"r{i}") for i in range(len(shapes))]
    return _model(nodes, ins, [_vi(f"y{i}", None) for i in range(len(shapes))])


def test_a_free_batch_defaults_to_one_with_a_note():
    g = load_graph(_relu_model(["N", 8, 16]))
    assert g.inputs[0].shape == (1, 8, 16)
    assert len(g.notes) == 1 and "set to 1" in g.notes[0] and "--batch" in g.notes[0]
    assert load_graph(_relu_model(["N", 8, 16]), batch=4).inputs[0].shape == (4, 8, 16)
    # a dim named like a batch at another position (time-major recurrent input) is one too
    assert load_graph(_relu_model(["seq", "batch_size", 80]), shapes={"seq": 50}).inputs[0].shape == (50, 1, 80)


def test_free_non_batch_dims_error_names_every_one_with_a_complete_example():
    with pytest.raises(DynamicShapeError) as e:
        load_graph(_relu_model(["batch", "sequence_length", 80], ["batch", "frames"]))
    msg = str(e.value)
    assert "\n" not in msg and "dim 1 ('sequence_length')" in msg and "dim 1 ('frames')" in msg
    assert "dim 0" not in msg  # the batch took its default
    assert "--shape x0=1x128x80 --shape x1=1x128" in msg
    # a leading dim named as a length is not taken for a batch
    with pytest.raises(DynamicShapeError) as e:
        load_graph(_relu_model(["time", 80]))
    assert "dim 0 ('time')" in str(e.value)


def test_dim_names_settle_other_inputs():
    m = _relu_model(["batch", "seq"], ["batch", "seq"])
    g = load_graph(m, shapes={"x0": [2, 16]})
    assert [t.shape for t in g.inputs] == [(2, 16), (2, 16)] and not g.notes
    assert [t.shape for t in load_graph(m, shapes={"seq": 32}).inputs] == [(1, 32), (1, 32)]
    with pytest.raises(ModelError) as e:
        load_graph(m, shapes={"seqq": 32})
    assert "dim names: batch, seq" in str(e.value)


def test_a_profile_of_another_device_is_never_extended_with_this_hosts_rows(tmp_path):
    """The estimator reads one fingerprint per target name (the newest): rows of this host written into
    a profile measured elsewhere would replace the old device's rows, not join them. Refused."""
    from latency.errors import StoreError

    db = tmp_path / "other.db"
    with Store(db) as st:
        st.ensure_target("fake", {"cpu_model": "another CPU", "cpu_flags": [], "runtime": "formula"})
        with pytest.raises(StoreError) as e:
            run_sweep(st, FAKE, [_lstm(4)])
        assert "another device" in str(e.value) and "cpu_model" in str(e.value) and "\n" not in str(e.value)
        assert len(st.targets()) == 1 and st.measurements().empty


# ---- transformer optimizer ops, decode steps ------------------------------------------------------------


def test_qattention_and_embed_layer_norm_are_their_kinds_at_int8():
    """QAttention (quantize_dynamic of an optimized BERT) is Attention at int8_dynamic, its input's
    DynamicQuantizeLinear a kernel of its own; (Q)EmbedLayerNormalization is EmbedLayerNorm."""
    att = {"op": "Attention", "batch": 1, "seq_len": 16, "past_len": 0, "kv_len": 16, "num_heads": 2, "kv_heads": 2,
           "head_size": 32, "qkv_hidden": 64, "mask": 1, "causal": 0, "rotary": 0}
    emb = {"batch": 1, "seq_len": 16, "hidden": 64, "segment": 1, "mask": 1}
    for c, op in ((Config("Attention", att, "int8_dynamic"), "QAttention"),
                  (Config("EmbedLayerNorm", emb), "EmbedLayerNormalization"),
                  (Config("EmbedLayerNorm", emb, "int8"), "QEmbedLayerNormalization")):
        m = build(c)
        assert op in {n.op_type for n in m.graph.node}
        kernels, unc = fuse(load_graph(m), FAKE.fusion_rules())
        own = [k for k in kernels if k.kind == c.kind]
        assert not unc and len(own) == 1 and own[0].key == c.key and own[0].op_types == (op,), [k.key for k in kernels]
    assert Config("Attention", att, "int8_dynamic").key != Config("Attention", att).key


def _kv_decoder():
    """A one-layer decoder step as exporters write it: input_ids [batch_size, sequence_length], a key
    cache [batch_size, 2, past_sequence_length, 4] concatenated with the new keys, scores over both."""
    nodes = [helper.make_node("Gather", ["emb", "input_ids"], ["x"], name="embed"),
             helper.make_node("MatMul", ["x", "wk"], ["k2"], name="k_proj"),
             helper.make_node("Reshape", ["k2", "kshape"], ["k4"], name="k_split"),
             helper.make_node("Transpose", ["k4"], ["k"], name="k_heads", perm=[0, 2, 1, 3]),
             helper.make_node("Concat", ["past_key_values.0.key", "k"], ["present.0.key"], name="cat", axis=2),
             helper.make_node("Transpose", ["present.0.key"], ["kt"], name="kt", perm=[0, 1, 3, 2]),
             helper.make_node("MatMul", ["k", "kt"], ["scores"], name="qk"),
             helper.make_node("Softmax", ["scores"], ["probs"], name="softmax", axis=-1)]
    inits = [_w("emb", [50, 8]), _w("wk", [8, 8]), numpy_helper.from_array(np.array([0, -1, 2, 4], np.int64), "kshape")]
    ins = [_vi("input_ids", ["batch_size", "sequence_length"], TensorProto.INT64),
           _vi("past_key_values.0.key", ["batch_size", 2, "past_sequence_length", 4])]
    return _model(nodes, ins, [_vi("probs", None), _vi("present.0.key", None)], inits)


def test_decode_step_sets_the_past_and_one_token_and_a_prefill_takes_an_empty_cache(prof, tmp_path):
    from latency.graph import decode_step_shapes

    p = tmp_path / "dec.onnx"
    onnx.save(_kv_decoder(), p)
    assert decode_step_shapes(str(p), 16) == {"past_sequence_length": 16, "sequence_length": 1}

    def softmax_x(shapes):
        kernels, _ = fuse(load_graph(str(p), shapes=shapes), FAKE.fusion_rules())
        return next(k for k in kernels if k.kind == "Softmax").params["x"]

    assert softmax_x(decode_step_shapes(str(p), 16)) == [1, 2, 1, 17]
    assert softmax_x({"past_sequence_length": 64, "sequence_length": 1}) == [1, 2, 1, 65]
    assert softmax_x({"sequence_length": 8, "past_sequence_length": 0}) == [1, 2, 8, 8]
    assert softmax_x(decode_step_shapes(str(p), 0, 8)) == [1, 2, 8, 8]
    for args in (["--decode-step", "16"], ["--shape", "sequence_length=8", "--shape", "past_sequence_length=0"]):
        r = CliRunner().invoke(main, ["estimate", str(p), "--target", "fake", "--profile", str(prof), "--json", *args])
        assert r.exit_code == 0 and json.loads(r.stdout)["total_ms"] > 0, r.output
    # an empty cache is a prefill; any other zero dim is still refused
    with pytest.raises(ModelError):
        load_graph(_kv_decoder(), shapes={"sequence_length": 0, "past_sequence_length": 4})


@pytest.mark.parametrize("args, needles", [
    (["--decode-step", "8"], ["--decode-step", "no key/value cache input", "--shape"]),
    (["--decode-step", "8", "--shape", "past_sequence_length=4"], ["--decode-step 8", "past_sequence_length",
                                                                   "--shape"]),
])
def test_a_decode_step_naming_nothing_is_a_one_line_error(args, needles, prof, tmp_path):
    p = tmp_path / "m.onnx"
    onnx.save(_relu_model(["batch", 8]) if "--shape" not in args else _kv_decoder(), p)
    r = CliRunner().invoke(main, ["estimate", str(p), "--target", "fake", "--profile", str(prof), *args])
    lines = r.output.strip().splitlines()
    assert r.exit_code != 0 and len(lines) == 1 and "Traceback" not in r.output, r.output
    assert all(n in lines[0] for n in needles), lines[0]


def test_lstm_sequence_lens_bounds_the_steps_when_constant():
    def lstm(lens_const):
        h, i, t = 8, 4, 16
        ins = ["x", "W", "R", "B", "lens"]
        inits = [_w("W", [1, 4 * h, i]), _w("R", [1, 4 * h, h], 1), _w("B", [1, 8 * h], 2)]
        inputs = [_vi("x", [t, 1, i])]
        if lens_const:
            inits.append(numpy_helper.from_array(np.array([5], np.int32), "lens"))
        else:
            inputs.append(_vi("lens", [1], TensorProto.INT32))
        node = helper.make_node("LSTM", ins, ["y"], name="lstm", hidden_size=h)
        return _model([node], inputs, [_vi("y", None)], inits)

    const = fuse(load_graph(lstm(True)), FAKE.fusion_rules())[0]
    fed = fuse(load_graph(lstm(False)), FAKE.fusion_rules())[0]
    assert [k.params["seq_len"] for k in const if k.kind == "LSTM"] == [5]
    assert [k.params["seq_len"] for k in fed if k.kind == "LSTM"] == [16]  # fed at run time: the full length


def test_the_models_metadata_settles_a_free_dim_it_names():
    m = _relu_model(["batch_size", "sequence_length", 8])
    with pytest.raises(DynamicShapeError):
        load_graph(m)
    helper.set_model_props(m, {"sequence_length": "48", "author": "x"})
    g = load_graph(m)
    assert g.inputs[0].shape == (1, 48, 8) and any("metadata: sequence_length=48" in n for n in g.notes)
    assert load_graph(m, shapes={"sequence_length": 16}).inputs[0].shape == (1, 16, 8)  # --shape wins
