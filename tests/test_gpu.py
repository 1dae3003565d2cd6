"""GPU targets: declarations with sources, TensorRT's pass list (each pass on a small model), the GPU
cost model, --precision, and the int8 < fp16 < fp32 order on ResNet-50 and BERT-Base. Nothing here
needs a GPU: every GPU number is derived."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from onnx import TensorProto, helper, numpy_helper

from latency import Estimator
from latency.cli import main
from latency.cost.gpu import GpuCostModel
from latency.errors import MissingTable, UnknownPrecision
from latency.fusion import TENSORRT_PASSES, fuse
from latency.graph import load_graph
from latency.ops import Config
from latency.targets import get_target
from profilers import zoo
from models import small_cnn

GPUS = ("t4", "a10", "l4", "a100", "h100", "h200")
ROOT = Path(__file__).resolve().parents[1]
RNG = np.random.default_rng(0)


def _w(name, shape, dtype=np.float32, scale=0.1):
    return numpy_helper.from_array((RNG.standard_normal(shape) * scale).astype(dtype), name)


def _model(nodes, inputs, outputs, inits=(), opset=17):
    g = helper.make_graph(nodes, "m", [helper.make_tensor_value_info(n, t, s) for n, t, s in inputs],
                          [helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in outputs], list(inits))
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset), helper.make_opsetid("com.microsoft", 1)])
    m.ir_version = 8
    return m


def _kernels(model, precision="fp32", target="t4"):
    rules = get_target(target).fusion_rules().with_precision(precision)
    ks, unc = fuse(load_graph(model), rules)
    return [k for k in ks if k.kind != "Free"], unc


F = TensorProto.FLOAT


# ---- declarations ------------------------------------------------------------------------------------------


def test_targets_json_lists_each_gpu_derived_with_the_source_of_every_figure():
    r = CliRunner().invoke(main, ["targets", "--json"])
    assert r.exit_code == 0, r.output
    by = {t["name"]: t for t in json.loads(r.output)["targets"]}
    for name in GPUS:
        t = by[name]
        assert t["device"] == "gpu" and t["runtime"] == "tensorrt", name
        (prov,) = t["profiles"]
        assert prov["provenance"] == "derived" and prov["path"] is None
        for fig in ("sm_count", "boost_mhz", "fp32", "fp16", "int8", "mem_gbs", "l2_mb"):
            assert "NVIDIA" in prov["sources"][fig] or "http" in prov["sources"][fig], (name, fig)
        assert any("https://" in s for s in prov["sources"].values())
        if name != "t4":
            assert "tf32" in prov["sources"]  # Ampere and later: TF32 tensor cores


@pytest.mark.parametrize("name,lanes", [("t4", 64), ("a10", 128), ("l4", 128), ("a100", 64), ("h100", 128),
                                        ("h200", 128)])
def test_spec_sheets_agree_with_themselves(name, lanes):
    """The quoted FP32 peak is SMs x FP32 lanes per SM x 2 x boost clock (the whitepapers' lanes per SM)."""
    s = get_target(name).spec
    assert s["sm_count"] * lanes * 2 * s["boost_mhz"] / 1e6 == pytest.approx(s["peak_tflops"]["fp32"], rel=0.02)
    p = s["peak_tflops"]
    assert p["int8"] == pytest.approx(2 * p["fp16"], rel=0.01)  # dense int8 = 2x dense fp16 on every card
    assert get_target(name).cost is not None and "TensorRT" in get_target(name).description


# ---- --precision and provenance --------------------------------------------------------------------------


def test_estimate_int8_on_t4_answers_with_derived_numbers_and_says_so(tmp_path):
    f = tmp_path / "m.onnx"
    onnx.save(small_cnn(), f)
    r = CliRunner().invoke(main, ["estimate", str(f), "--target", "t4", "--precision", "int8", "--json"])
    assert r.exit_code == 0, r.output
    d = json.loads(r.output)
    assert d["profile"] is None and d["total_ms"] > 0 and not d["uncovered"]
    assert set(d["sources"]) <= {"derived:gpu-model", "free"} and d["sources"]["derived:gpu-model"] > 0
    assert d["overhead_source"].startswith("derived:gpu-model")
    assert any("not measured" in w and "NVIDIA T4 datasheet" in w for w in d["warnings"])
    priced = [k for k in d["kernels"] if k["source"] != "free"]
    assert {k["precision"] for k in priced if k["kind"] == "Conv"} == {"int8"}
    assert all("memory" in k["detail"] and "TFLOPS" in k["detail"] for k in priced)
    conv = next(k for k in priced if k["kind"] == "Conv")
    assert "tiles on 40 SMs" in conv["detail"] and "int8 tensor cores" in conv["detail"]


def _one_line(r):
    lines = [x for x in r.output.strip().splitlines() if x.strip()]
    assert r.exit_code == 2 and len(lines) == 1 and "Traceback" not in r.output, r.output
    return lines[0]


def test_a_bad_precision_is_one_line_listing_the_valid_ones(tmp_path):
    f = tmp_path / "m.onnx"
    onnx.save(small_cnn(), f)
    line = _one_line(CliRunner().invoke(main, ["estimate", str(f), "--target", "t4", "--precision", "bf16"]))
    assert "'bf16'" in line and "fp32, fp16, int8, best" in line
    # a CPU target refuses --precision instead of ignoring it
    line = _one_line(CliRunner().invoke(main, ["estimate", str(f), "--target", "fake", "--precision", "int8"]))
    assert "not supported on target fake yet" in line
    with pytest.raises(UnknownPrecision):
        Estimator("a100").estimate(small_cnn(), precision="fp8")


def test_precision_changes_the_estimate():
    est = Estimator("t4")
    m = small_cnn(c=64, h=64)
    totals = {p: est.estimate(m, precision=p).total_ms for p in ("fp32", "fp16", "int8", "best")}
    assert totals["fp32"] > totals["fp16"] > totals["int8"] and totals["best"] <= min(totals.values()) + 1e-9
    assert est.estimate(m).total_ms == pytest.approx(totals["fp32"])  # TensorRT's default build


@pytest.mark.parametrize("name", ["resnet50", "bert_base"])
def test_int8_faster_than_fp16_faster_than_fp32_on_t4(name):
    """As on the real card (e.g. NVIDIA's demoBERT: BERT-Base s128 fp16 1.95 ms, int8 1.69 ms on T4)."""
    graph = load_graph(zoo.build(name))
    est = Estimator("t4")
    ms = {p: est.estimate(graph, precision=p) for p in ("fp32", "fp16", "int8")}
    assert all(not e.uncovered for e in ms.values())
    assert ms["int8"].total_ms < ms["fp16"].total_ms < ms["fp32"].total_ms, {p: e.total_ms for p, e in ms.items()}
    # fp16 and int8 builds run (mostly) on the tensor cores, the fp32 build on the CUDA cores (Turing has no TF32)
    assert any("fp32 CUDA cores" in k.detail for k in ms["fp32"].kernels)
    assert any("int8 tensor cores" in k.detail for k in ms["int8"].kernels)


def test_a_gpu_estimate_never_falls_back_to_cpu_numbers():
    from latency.profiles import discover

    est = Estimator("t4").prepare()
    assert est.profile_ is None and est.table_ == {} and not est.reg_kinds_
    e = est.estimate(small_cnn())
    assert {k.source for k in e.kernels} <= {"derived:gpu-model", "free"}
    cpu = [p for p in discover() if p.target.startswith("x86")]
    if cpu:  # a CPU profile named for a GPU target is refused, never read
        with pytest.raises(MissingTable, match="no rows for target t4"):
            Estimator("t4", profile=cpu[0].path).prepare()


# ---- TensorRT's passes, one small model each -----------------------------------------------------------------


def test_pass_list_is_tensorrts_with_its_sources():
    assert [p.name for p in TENSORRT_PASSES][0] == "trt_parse" and TENSORRT_PASSES[-1].name == "trt_precision"
    for p in TENSORRT_PASSES:
        assert "Mirrors TensorRT's" in p.doc and "Source:" in p.doc, p.name


def test_trt_parse_lists_what_tensorrt_cannot_run_as_uncovered():
    nodes = [helper.make_node("ConvInteger", ["x", "w"], ["c"], name="convint"),
             helper.make_node("Cast", ["c"], ["y"], to=TensorProto.FLOAT, name="cast")]
    m = _model(nodes, [("x", TensorProto.UINT8, [1, 4, 8, 8])], ["y"],
               [numpy_helper.from_array(np.ones((4, 4, 1, 1), np.uint8), "w")])
    e = Estimator("t4").estimate(m)
    (u,) = [u for u in e.uncovered if u.node == "convint"]
    assert "TensorRT cannot run ConvInteger" in u.reason and "onnx-tensorrt" in u.reason
    assert not any(k.nodes == ("convint",) for k in e.kernels)
    # a contrib op needs a plugin; an asymmetric DQ has no TensorRT form
    nodes = [helper.make_node("Gelu", ["x"], ["g"], domain="com.microsoft", name="msgelu"),
             helper.make_node("QuantizeLinear", ["g", "s", "zp"], ["q"], name="q"),
             helper.make_node("DequantizeLinear", ["q", "s", "zp"], ["y"], name="dq")]
    inits = [numpy_helper.from_array(np.float32(0.1), "s"), numpy_helper.from_array(np.int8(3), "zp")]
    _, unc = _kernels(_model(nodes, [("x", F, [1, 8])], ["y"], inits))
    reasons = {u.node: u.reason for u in unc}
    assert "plugin" in reasons["msgelu"] and "zero point of 0" in reasons["q"] and "zero point of 0" in reasons["dq"]


def _conv(name, x, y, cin, cout, k=3, bias=True):
    ins = [x, f"{name}.w"] + ([f"{name}.b"] if bias else [])
    inits = [_w(f"{name}.w", (cout, cin, k, k))] + ([_w(f"{name}.b", (cout,))] if bias else [])
    return helper.make_node("Conv", ins, [y], name=name, pads=[k // 2] * 4), inits


def test_trt_eliminate_and_conv_scale_fold_identity_batchnorm_and_pad_into_the_conv():
    conv, inits = _conv("conv", "p", "c", 8, 8)
    bn = helper.make_node("BatchNormalization", ["i", "g", "b", "m", "v"], ["n"], name="bn")
    inits += [numpy_helper.from_array(np.ones(8, np.float32), k) for k in ("g", "v")]
    inits += [numpy_helper.from_array(np.zeros(8, np.float32), k) for k in ("b", "m")]
    inits += [numpy_helper.from_array(np.array([0, 0, 1, 1, 0, 0, 1, 1], np.int64), "pads")]
    nodes = [helper.make_node("Pad", ["x", "pads"], ["p"], name="pad"), conv,
             helper.make_node("Identity", ["c"], ["i"], name="ident"), bn, helper.make_node("Relu", ["n"], ["y"],
                                                                                           name="relu")]
    (k,), unc = _kernels(_model(nodes, [("x", F, [1, 8, 16, 16])], ["y"], inits))
    assert not unc and k.kind == "Conv" and k.params["act"] == "Relu"
    assert {"pad", "conv", "bn", "relu"} <= set(k.nodes) and k.params["pads"] == [2, 2, 2, 2]


def test_trt_shuffle_merges_transposes_that_cancel():
    nodes = [helper.make_node("Transpose", ["x"], ["t1"], perm=[0, 2, 3, 1], name="t1"),
             helper.make_node("Transpose", ["t1"], ["t2"], perm=[0, 3, 1, 2], name="t2"),
             helper.make_node("Relu", ["t2"], ["y"], name="relu")]
    ks, _ = _kernels(_model(nodes, [("x", F, [1, 8, 4, 4])], ["y"]))
    assert [k.kind for k in ks] == ["Activation"]


def test_trt_conv_activation_and_conv_add_give_one_kernel_per_conv_of_a_residual_block():
    c1, i1 = _conv("c1", "x", "a", 16, 16)
    c2, i2 = _conv("c2", "r", "b", 16, 16, bias=False)
    nodes = [c1, helper.make_node("Relu", ["a"], ["r"], name="relu1"), c2,
             helper.make_node("Add", ["b", "x"], ["s"], name="add"), helper.make_node("Relu", ["s"], ["y"], name="relu2")]
    ks, _ = _kernels(_model(nodes, [("x", F, [1, 16, 8, 8])], ["y"], i1 + i2))
    assert [(k.kind, k.params["act"], k.params["sum"]) for k in ks] == [("Conv", "Relu", 0), ("Conv", "Relu", 1)]


def _ffn(gelu=True):
    nodes = [helper.make_node("MatMul", ["x", "w"], ["m"], name="mm"), helper.make_node("Add", ["m", "b"], ["a"],
                                                                                        name="bias")]
    inits = [_w("w", (32, 64)), _w("b", (64,)), numpy_helper.from_array(np.float32(1.4142135), "sq"),
             numpy_helper.from_array(np.float32(1.0), "one"), numpy_helper.from_array(np.float32(0.5), "half")]
    if gelu:
        nodes += [helper.make_node("Div", ["a", "sq"], ["d"], name="div"), helper.make_node("Erf", ["d"], ["e"], name="erf"),
                  helper.make_node("Add", ["e", "one"], ["e1"], name="add1"),
                  helper.make_node("Mul", ["a", "e1"], ["p"], name="mul"),
                  helper.make_node("Mul", ["p", "half"], ["y"], name="mulhalf")]
    return _model(nodes, [("x", F, [1, 4, 32])], ["y" if gelu else "a"], inits)


def test_trt_gemm_bias_gelu_and_epilogue_give_one_gemm_with_bias_and_gelu():
    (k,), _ = _kernels(_ffn())
    assert k.kind == "MatMul" and k.params["bias"] == 1 and k.params["act"] == "Gelu"
    assert {"mm", "bias", "erf", "mulhalf"} <= set(k.nodes)


def test_trt_gemm_transpose_reads_the_operand_transposed():
    nodes = [helper.make_node("Transpose", ["b"], ["bt"], perm=[0, 1, 3, 2], name="tr"),
             helper.make_node("MatMul", ["a", "bt"], ["y"], name="mm")]
    (k,), _ = _kernels(_model(nodes, [("a", F, [1, 2, 8, 16]), ("b", F, [1, 2, 8, 16])], ["y"]))
    assert k.kind == "MatMul" and k.params["trans_b"] == 1 and set(k.nodes) == {"tr", "mm"}


def _skip_layernorm():
    """A residual Add and a LayerNorm written out in primitive ops, as exporters write it."""
    c = {n: numpy_helper.from_array(np.float32(v), n) for n, v in (("two", 2.0), ("eps", 1e-5))}
    nodes = [helper.make_node("Add", ["x", "r"], ["s"], name="res"),
             helper.make_node("ReduceMean", ["s"], ["mu"], axes=[-1], name="rm1"),
             helper.make_node("Sub", ["s", "mu"], ["d"], name="sub"), helper.make_node("Pow", ["d", "two"], ["p"], name="pow"),
             helper.make_node("ReduceMean", ["p"], ["var"], axes=[-1], name="rm2"),
             helper.make_node("Add", ["var", "eps"], ["ve"], name="addeps"),
             helper.make_node("Sqrt", ["ve"], ["sd"], name="sqrt"), helper.make_node("Div", ["d", "sd"], ["y"], name="div")]
    return _model(nodes, [("x", F, [1, 4, 32]), ("r", F, [1, 4, 32])], ["y"], c.values(), opset=13)


def test_trt_layernorm_and_skip_layernorm_give_one_normalization_kernel():
    ks, _ = _kernels(_skip_layernorm())
    assert [(k.kind, k.params["skip"]) for k in ks] == [("LayerNorm", 1)] and "res" in ks[0].nodes


def _attention(heads=2, head=64, seq=16):
    hid = heads * head
    inits = [_w(f"w{n}", (hid, hid)) for n in "qkv"] + [
        numpy_helper.from_array(np.array([1, seq, heads, head], np.int64), "split"),
        numpy_helper.from_array(np.array([1, seq, hid], np.int64), "merge"),
        numpy_helper.from_array(np.float32(head ** 0.5), "scale")]
    nodes = []
    for n, perm in (("q", [0, 2, 1, 3]), ("k", [0, 2, 3, 1]), ("v", [0, 2, 1, 3])):
        nodes += [helper.make_node("MatMul", ["x", f"w{n}"], [f"{n}0"], name=f"proj_{n}"),
                  helper.make_node("Reshape", [f"{n}0", "split"], [f"{n}1"], name=f"split_{n}"),
                  helper.make_node("Transpose", [f"{n}1"], [n], perm=perm, name=f"heads_{n}")]
    nodes += [helper.make_node("MatMul", ["q", "k"], ["s"], name="qk"),
              helper.make_node("Div", ["s", "scale"], ["ss"], name="scale"),
              helper.make_node("Softmax", ["ss"], ["p"], axis=-1, name="softmax"),
              helper.make_node("MatMul", ["p", "v"], ["o"], name="pv"),
              helper.make_node("Transpose", ["o"], ["ot"], perm=[0, 2, 1, 3], name="merge_t"),
              helper.make_node("Reshape", ["ot", "merge"], ["y"], name="merge_r")]
    return _model(nodes, [("x", F, [1, seq, hid])], ["y"], inits)


def test_trt_mha_fuses_attention_into_one_kernel_in_fp16_and_int8_builds():
    ks, unc = _kernels(_attention(), "fp16")
    att = [k for k in ks if k.kind == "Attention"]
    assert not unc and len(att) == 1 and att[0].precision == "fp16"
    assert {"qk", "scale", "softmax", "pv", "heads_q", "heads_k", "heads_v", "merge_t"} <= set(att[0].nodes)
    assert att[0].params["num_heads"] == 2 and att[0].params["head_size"] == 64 and att[0].params["seq_len"] == 16
    assert not any(k.kind in ("Softmax", "Transpose") for k in ks)
    (att8,) = [k for k in _kernels(_attention(), "int8")[0] if k.kind == "Attention"]
    assert att8.precision == "fp16"  # no int8 Attention kind in the registry yet: TensorRT's int8 MHA is a later slice
    # fp32 builds have no fused attention kernel; nor has Turing one for a head size of 48
    assert not any(k.kind == "Attention" for k in _kernels(_attention(), "fp32")[0])
    assert not any(k.kind == "Attention" for k in _kernels(_attention(heads=2, head=48), "fp16")[0])
    assert any(k.kind == "Attention" for k in _kernels(_attention(heads=2, head=48), "fp16", target="a100")[0])


def test_trt_pointwise_fuses_a_chain_of_pointwise_layers_into_one_kernel():
    inits = [numpy_helper.from_array(np.float32(0.5), "c")]
    nodes = [helper.make_node("Sigmoid", ["x"], ["s"], name="sig"), helper.make_node("Mul", ["x", "s"], ["m"], name="mul"),
             helper.make_node("Add", ["m", "c"], ["a"], name="add"), helper.make_node("Tanh", ["a"], ["y"], name="tanh")]
    (k,), _ = _kernels(_model(nodes, [("x", F, [1, 8, 16, 16])], ["y"], inits))
    assert k.kind == "Elementwise" and set(k.nodes) == {"sig", "mul", "add", "tanh"}


def _qdq_block():
    """Q -> DQ -> conv(DQ weights) -> Relu -> Q -> DQ -> MaxPool -> conv(DQ weights) -> residual Add(DQ) -> Relu."""
    s, z = numpy_helper.from_array(np.float32(0.02), "s"), numpy_helper.from_array(np.int8(0), "z")
    wq = numpy_helper.from_array(RNG.integers(-127, 127, (16, 16, 3, 3)).astype(np.int8), "wq")
    ws = numpy_helper.from_array(np.float32(0.01), "ws")
    nodes = [helper.make_node("QuantizeLinear", ["x", "s", "z"], ["xq"], name="q_in"),
             helper.make_node("DequantizeLinear", ["xq", "s", "z"], ["xd"], name="dq_in"),
             helper.make_node("DequantizeLinear", ["wq", "ws", "z"], ["w1"], name="dq_w1"),
             helper.make_node("Conv", ["xd", "w1"], ["c1"], pads=[1, 1, 1, 1], name="conv1"),
             helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
             helper.make_node("QuantizeLinear", ["r1", "s", "z"], ["r1q"], name="q1"),
             helper.make_node("DequantizeLinear", ["r1q", "s", "z"], ["r1d"], name="dq1"),
             helper.make_node("MaxPool", ["r1d"], ["p"], kernel_shape=[2, 2], strides=[2, 2], name="pool"),
             helper.make_node("DequantizeLinear", ["wq", "ws", "z"], ["w2"], name="dq_w2"),
             helper.make_node("Conv", ["p", "w2"], ["c2"], pads=[1, 1, 1, 1], name="conv2"),
             helper.make_node("MaxPool", ["r1d"], ["p2"], kernel_shape=[2, 2], strides=[2, 2], name="pool_skip"),
             helper.make_node("Add", ["c2", "p2"], ["a"], name="add"), helper.make_node("Relu", ["a"], ["y"], name="relu2")]
    return _model(nodes, [("x", F, [1, 16, 32, 32])], ["y"], [s, z, wq, ws])


def test_trt_qdq_fuses_qdq_into_int8_convs_with_no_quantize_kernel_inside_the_region():
    ks, unc = _kernels(_qdq_block())
    assert not unc
    quant = [k for k in ks if k.kind == "Quant"]
    assert [k.nodes for k in quant] == [("q_in",)]  # only where the fp32 input enters the region
    convs = {k.name: k for k in ks if k.kind == "Conv"}
    assert all(k.precision == "int8" for k in convs.values())
    assert {"dq_in", "dq_w1", "conv1", "relu1", "q1"} <= set(convs["conv1"].nodes)
    assert convs["conv2"].params["sum"] == 1 and convs["conv2"].params["act"] == "Relu"
    assert {k.precision for k in ks if k.kind == "Pool"} == {"int8"}  # DQ propagated through max pooling
    # an explicitly quantized model keeps its int8 convs whatever the builder precision of the rest
    assert {k.precision for k in _kernels(_qdq_block(), "fp16")[0] if k.kind == "Conv"} == {"int8"}


def test_trt_precision_builds_each_layer_in_the_builder_precision():
    m = small_cnn(c=32, h=32)
    fp16, _ = _kernels(m, "fp16")
    assert {k.precision for k in fp16} == {"fp16"}
    assert [k.name for k in fp16 if not k.nodes] == ["Reformat(x)", "Reformat(y)"]  # fp32 network I/O
    int8, _ = _kernels(m, "int8")
    assert {k.precision for k in int8 if k.kind == "Conv"} == {"int8"}
    fp32, _ = _kernels(m, "fp32")
    assert {k.precision for k in fp32} == {"fp32"} and all(k.nodes for k in fp32)
    att, _ = _kernels(_attention(), "int8")
    assert {k.precision for k in att if k.kind == "LayerNorm" or k.kind == "Softmax"} <= {"fp16"}


# ---- the cost model -------------------------------------------------------------------------------------


def _gemm(m, n, k, precision="fp16"):
    return Config("MatMul", {"a": [m, k], "b": [k, n], "const_b": 1, "bias": 0, "scale": 0, "trans_b": 0,
                             "act": "none"}, precision)


def test_cost_model_has_wave_and_tile_quantisation_and_a_latency_floor():
    t4 = GpuCostModel(get_target("t4").spec)
    # 40 SMs: 40 tiles of 128x256 fill one wave; 41 need a second (or smaller tiles / split-K, which TensorRT's
    # tactics use against it): 2.5% more work costs well over 2.5% more compute time
    one, two = t4.price(_gemm(128 * 40, 256, 4096)), t4.price(_gemm(128 * 41, 256, 4096))
    compute = [float(r[2].split("compute ")[1].split(" us")[0]) for r in (one, two)]
    assert compute[1] > 1.075 * compute[0] and "40 tiles on 40 SMs = 1 wave(s)" in one[2] and two[0] > one[0]
    # int8 pads channels to 32: 33 input channels cost as much as 64
    conv = {"cout": 64, "kernel": [3, 3], "strides": [1, 1], "pads": [1, 1, 1, 1], "dilations": [1, 1],
            "group": 1, "act": "none", "sum": 0}
    c33, c64 = (t4.price(Config("Conv", dict(conv, x=[8, c, 56, 56]), "int8")) for c in (33, 64))
    assert "K 297->576" in c33[2] and c33[0] >= 0.95 * c64[0]
    tiny = t4.price(Config("Activation", {"op": "Relu", "x": [1, 8]}, "fp16"))
    assert "latency-bound" in tiny[2] and tiny[0] == t4.lat["min_kernel_us"] + t4.lat["launch_us"]
    big = t4.price(Config("Activation", {"op": "Relu", "x": [64, 256, 56, 56]}, "fp16"))
    assert "memory-bound" in big[2] and big[0] > 100
    assert all(v["basis"] for v in t4.terms().values())


def test_overhead_is_the_per_inference_term():
    e = Estimator("h100").estimate(small_cnn())
    assert e.overhead_us == GpuCostModel(get_target("h100").spec).lat["per_run_us"]


# ---- the prepared GPU check script ------------------------------------------------------------------------


def test_gpu_check_script_has_help_and_skips_cleanly_without_a_gpu(tmp_path):
    script = str(ROOT / "benchmarks" / "gpu_check.py")
    r = subprocess.run([sys.executable, script, "--help"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and "--out" in r.stdout
    r = subprocess.run([sys.executable, script, "--out", str(tmp_path)], capture_output=True, text=True, timeout=300,
                       env={"CUDA_VISIBLE_DEVICES": "", "PATH": "/usr/bin:/bin"})
    if "skipped" in r.stdout:
        assert r.returncode == 0 and "no" in r.stdout.lower()


def test_gpu_check_compares_each_device_machine_card_with_its_own_derived_target():
    """The prepared check picks the derived target from the GPU's name (the H200 its own, not the H100's) and
    names what it writes after that GPU."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("gpu_check", ROOT / "benchmarks" / "gpu_check.py")
    gc = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gc)
    assert gc.target_for("NVIDIA H200") == "h200" and gc.target_for("NVIDIA H100 80GB HBM3") == "h100"
    assert gc.target_for("NVIDIA A10") == "a10" and gc.target_for("NVIDIA A100-SXM4-80GB") == "a100"
    assert gc.target_for("Tesla T4") == "t4" and gc.target_for("NVIDIA GeForce RTX 4090") is None
    assert gc.gpu_slug("NVIDIA H100 80GB HBM3") == "nvidia-h100-80gb-hbm3"
    h200, h100 = get_target("h200").spec, get_target("h100").spec
    assert h200["sm_count"] == h100["sm_count"] and h200["mem_gbs"] > h100["mem_gbs"]
    m = small_cnn(c=64, h=64)
    assert Estimator("h200").estimate(m, precision="fp16").total_ms <= Estimator("h100").estimate(m, precision="fp16").total_ms


def _silu_conv(name, x, y, cin, cout):
    conv, inits = _conv(name, x, f"{name}.o", cin, cout)
    return [conv, helper.make_node("Sigmoid", [f"{name}.o"], [f"{name}.s"], name=f"{name}.sig"),
            helper.make_node("Mul", [f"{name}.o", f"{name}.s"], [y], name=f"{name}.mul")], inits


def test_trt_concat_writes_movable_inputs_in_place_and_copies_the_rest_and_split_is_a_view():
    """A C2f block (YOLOv8 / YOLO11): cv1 -> Split in two halves -> the second half through a bottleneck
    (SiLU convs, residual Add) -> Concat(half 0, half 1, bottleneck) -> cv2. TensorRT removes the Split
    (the halves are views of cv1's output), fuses the residual Add into the second conv's SiLU epilogue,
    and eliminates the Concat: the bottleneck writes into it, the two halves cannot move (cv1's output is
    read by the bottleneck too) and are copied, one copy kernel each."""
    n1, i1 = _silu_conv("cv1", "x", "a", 16, 16)
    nb1, ib1 = _silu_conv("m.cv1", "h1", "b1", 8, 8)
    nb2, ib2 = _silu_conv("m.cv2", "b1", "b2", 8, 8)
    n2, i2 = _silu_conv("cv2", "cat", "y", 24, 16)
    split = helper.make_node("Split", ["a", "sizes"], ["h0", "h1"], axis=1, name="split")
    add = helper.make_node("Add", ["h1", "b2"], ["r"], name="m.add")
    cat = helper.make_node("Concat", ["h0", "h1", "r"], ["cat"], axis=1, name="concat")
    inits = i1 + ib1 + ib2 + i2 + [numpy_helper.from_array(np.array([8, 8], np.int64), "sizes")]
    m = _model(n1 + [split] + nb1 + nb2 + [add, cat] + n2, [("x", F, [1, 16, 8, 8])], ["y"], inits)
    ks, unc = _kernels(m, "fp16")
    assert not unc
    kinds = [k.kind for k in ks]
    assert "Split" not in kinds and kinds.count("Conv") == 4 and "Elementwise" not in kinds
    assert [k.params for k in ks if k.kind == "Concat"] == [{"inputs": [[1, 8, 8, 8]], "axis": 1}] * 2
    fused = next(k for k in ks if "m.add" in k.nodes)
    assert fused.kind == "Conv" and fused.params["act"] == "Swish" and fused.params["sum"] == 1
    free = {n for k in fuse(load_graph(m), get_target("t4").fusion_rules())[0] if k.kind == "Free" for n in k.nodes}
    assert "split" in free


def test_trt_concat_of_single_consumer_producers_is_free_and_shared_inputs_stay_copies():
    c1, i1 = _conv("c1", "x", "a", 8, 8)
    c2, i2 = _conv("c2", "x", "b", 8, 8)
    cat = helper.make_node("Concat", ["a", "b"], ["y"], axis=1, name="concat")
    ks, _ = _kernels(_model([c1, c2, cat], [("x", F, [1, 8, 8, 8])], ["y"], i1 + i2), "fp16")
    ks = [k for k in ks if k.kind != "Activation"]  # not the fp32 network I/O's reformats
    assert [k.kind for k in ks] == ["Conv", "Conv"]   # both convs write into the concatenation
    # the network input cannot move: the Concat copies it, the conv writes in place
    cat2 = helper.make_node("Concat", ["x", "a"], ["y"], axis=1, name="concat")
    ks, _ = _kernels(_model([c1, cat2], [("x", F, [1, 8, 8, 8])], ["y"], i1), "fp16")
    ks = [k for k in ks if k.kind != "Activation"]
    assert [(k.kind, k.params.get("inputs")) for k in ks] == [("Conv", None), ("Concat", [[1, 8, 8, 8]])]
