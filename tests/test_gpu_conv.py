"""The GPU cost model's convolution shares (CONV_EFFICIENCY) and the published-figure check's builders,
split and fit (benchmarks/gpu_published.py). CPU only: every GPU number here is derived."""

import math
import sys
from pathlib import Path

import pytest

from latency.cost.gpu import CONV_EFFICIENCY, GpuCostModel, calibrated_spec
from latency.ops import Config
from latency.targets import get_target

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import gpu_published as gp  # noqa: E402

CONV = {"kernel": [1, 1], "strides": [1, 1], "pads": [0, 0, 0, 0], "dilations": [1, 1], "group": 1, "act": "none",
        "sum": 0}


def _conv(cin, cout, hw, precision):
    return Config("Conv", dict(CONV, x=[1, cin, hw, hw], cout=cout), precision)


def _gemm(m, n, k, precision):
    return Config("MatMul", {"a": [m, k], "b": [k, n], "const_b": 1, "bias": 0, "scale": 0, "trans_b": 0,
                             "act": "none"}, precision)


@pytest.mark.parametrize("precision,term", [("fp16", "conv"), ("int8", "conv_int8")])
def test_a_convolution_runs_at_its_share_of_the_gemm_rate(precision, term):
    """A 1x1 convolution is the GEMM of its im2col view (M = pixels, N = cout, K = cin); compute-bound, it
    takes 1/share as long as that GEMM's compute, and the breakdown says so."""
    spec = get_target("t4").spec
    t4 = GpuCostModel(spec)
    share = t4.conv[term]
    assert 0 < share < 1
    conv, gemm = t4.price(_conv(1024, 1024, 64, precision)), t4.price(_gemm(64 * 64, 1024, 1024, precision))
    assert "implicit-GEMM convolution M4096 N1024 K1024" in conv[2] and f"{share:.2f} of the GEMM rate" in conv[2]
    assert "GEMM rate" not in gemm[2] and "compute-bound" in conv[2]
    # at share 1 the convolution costs what the GEMM does (same tiles, same bytes up to the layout)
    same = GpuCostModel(dict(spec, model=dict(spec["model"], **{term: 1.0}))).price(_conv(1024, 1024, 64, precision))
    assert same[0] == pytest.approx(gemm[0], rel=0.05)
    # the compute term (tiles x waves, each wave with its fixed cost) grows by about 1 / share
    ratio = _compute_us(conv[2]) / _compute_us(same[2])
    assert 0.8 / share < ratio <= 1.0 / share + 1e-9 and conv[0] > same[0]


def _compute_us(terms: str) -> float:
    return float(terms.split("compute ")[1].split(" us")[0])


def test_fp32_convolutions_on_cuda_cores_take_no_share_and_the_terms_say_where_they_come_from():
    t4 = GpuCostModel(get_target("t4").spec)
    fp32 = t4.price(_conv(256, 256, 56, "fp32"))
    assert "fp32 CUDA cores" in fp32[2] and "GEMM rate" not in fp32[2]
    terms = t4.terms()
    assert terms["conv"]["value"] == 0.50 and terms["conv_int8"]["value"] == 0.30
    assert "fitted" in terms["conv"]["basis"] and set(CONV_EFFICIENCY) <= set(terms)
    # a measured value replaces the fitted one (latency profile --target t4, micro-benchmark mode)
    cal = calibrated_spec(get_target("t4").spec, {"terms": {"conv": 0.8, "bogus": 1.0}, "measured_with": "x"})
    assert GpuCostModel(cal).conv["conv"] == 0.8 and "bogus" not in cal["model"]


def test_resnet50_is_faster_in_int8_than_fp16_on_every_gpu():
    """The convolution shares slow int8 convolutions more than fp16 ones, but int8 stays the faster build."""
    from latency import Estimator
    from latency.graph import load_graph
    from profilers import zoo

    graph = load_graph(zoo.build("resnet50"))
    for name in ("t4", "a100"):
        est = Estimator(name)
        ms = {p: est.estimate(graph, precision=p).total_ms for p in ("fp16", "int8")}
        assert ms["int8"] < ms["fp16"], (name, ms)


def test_published_builders_are_the_named_architectures():
    resnext = gp.build("resnext50_32x4d", 224)
    convs = [n for n in resnext.ops if n.op_type == "Conv"]
    grouped = [n for n in convs if n.attrs.get("group", 1) == 32]
    assert len(convs) == 53 and len(grouped) == 16
    se = gp.build("seresnet50", 224)
    assert sum(n.op_type == "Sigmoid" for n in se.ops) == 16
    keras = gp.build("resnet50_keras", 224)
    strided = [n for n in keras.ops if n.op_type == "Conv" and list(n.attrs.get("strides", ())) == [2, 2]
               and list(n.attrs.get("kernel_shape", ())) == [1, 1]]
    assert len(strided) == 6  # v1: the stride of stages 2-4 in the first 1x1 conv and in the shortcut
    mbv1 = gp.build("mobilenet_v1", 224)
    assert sum(n.op_type == "Conv" for n in mbv1.ops) == 27
    srcnn = gp.build("srcnn_x4", 32)
    assert [n.op_type for n in srcnn.ops][0] == "Resize" and srcnn.outputs[0].shape[-2:] == (128, 128)
    x101 = [n for n in gp.build("resnext101_32x8d", 224).ops if n.op_type == "Conv"]
    assert len(x101) == 104 and sum(n.attrs.get("group", 1) == 32 for n in x101) == 33
    regnet = [n for n in gp.build("regnetx_016", 224).ops if n.op_type == "Conv"]
    # stem + 18 blocks of three convs + 4 projections; the 3x3 convs grouped by width / 24
    assert len(regnet) == 59 and sorted({n.attrs.get("group", 1) for n in regnet}) == [1, 3, 7, 17, 38]


def test_published_split_alternates_within_each_source_table():
    halves = [p.half for p in gp.PUBLISHED if p.source == gp.MMDEPLOY_T4]
    assert halves == ["held-out", "fit"] * 6
    assert [p.half for p in gp.PUBLISHED if p.source == gp.MMDEPLOY_T4_EDIT] == ["held-out", "fit", "held-out"]
    ascend = sorted((p.model, p.half) for p in gp.PUBLISHED if p.source.startswith("Ascend/") and p.half not in ("added", "added2"))
    assert [h for _, h in ascend] == ["held-out", "fit"] * 3 + ["held-out"]
    assert all(p.half in ("check", "added2", "added3") for p in gp.PUBLISHED if p.target != "t4")
    assert all(p.half in ("fit", "held-out", "added", "added2", "added3") for p in gp.PUBLISHED if p.target == "t4")
    # figures found after the split was fixed are scored apart and leave the split as it was
    assert [sum(p.half == h for p in gp.PUBLISHED) for h in ("fit", "held-out")] == [14, 17]
    added = [p for p in gp.PUBLISHED if p.half == "added"]
    assert added and all(p.target == "t4" and not p.host_timed and not any(p.io) for p in added)


def test_only_mmdeploy_figures_carry_the_host_harness():
    """mmdeploy times its Python wrapper from the host; trtexec, demoBERT and MLPerf figures do not get its
    harness cost (MLPerf's copies are its own ``io``)."""
    host = {p.source.split(" ")[0] for p in gp.PUBLISHED if p.host_timed}
    assert host == {"open-mmlab/mmdeploy"}
    spec = get_target("t4").spec
    cfgs = gp.kernels_of("t4", gp.build("resnet18", 64), "fp16")
    m = GpuCostModel(spec)
    assert gp.predict_ms(cfgs, m, harness_us=gp.MMDEPLOY_US) == pytest.approx(gp.predict_ms(cfgs, m)
                                                                             + gp.MMDEPLOY_US / 1000)
    assert gp.MMDEPLOY_US in gp.GRID["mmdeploy_us"]


def test_fit_terms_never_ends_worse_than_where_it_started():
    """Coordinate descent over the grid on two small figures: the loss it reports is the loss of the terms it
    returns, no worse than the declared terms', and every term is a grid value."""
    spec = dict(get_target("t4").spec)
    graph = gp.build("resnet18", 64)
    figs = [gp.Published("t4", "resnet18", 64, p, ms, "test", "fit") for p, ms in (("fp16", 0.5), ("int8", 0.45))]
    cfgs = {f: gp.kernels_of("t4", graph, f.precision) for f in figs}

    def loss(over):
        m = GpuCostModel(dict(spec, model=over))
        return sum(abs(math.log(gp.predict_ms(cfgs[f], m) / f.ms)) for f in figs) / len(figs)

    got, terms = gp.fit_terms(figs, cfgs, spec, starts=())
    assert got == pytest.approx(loss({k: v for k, v in terms.items() if k != "mmdeploy_us"}))
    assert got <= loss(spec["model"]) + 1e-12
    assert all(terms[k] in values for k, values in gp.GRID.items())


def _conv_gate_model(gate: str, gated_by_self: bool = True):
    """x -> Conv -> y; y * gate(y) (SiLU / decomposed HardSwish), or y * gate(z) of another tensor z."""
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    w = numpy_helper.from_array(np.full((16, 8, 3, 3), 0.01, np.float32), "w")
    attrs = {"alpha": 1.0 / 6, "beta": 0.5} if gate == "HardSigmoid" else {}
    nodes = [helper.make_node("Conv", ["x", "w"], ["y"], pads=[1, 1, 1, 1]),
             helper.make_node(gate, ["y" if gated_by_self else "z"], ["g"], **attrs),
             helper.make_node("Mul", ["y", "g"], ["out"])]
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8, 32, 32])]
    if not gated_by_self:
        inputs.append(helper.make_tensor_value_info("z", TensorProto.FLOAT, [1, 16, 1, 1]))
    g = helper.make_graph(nodes, "m", inputs, [helper.make_tensor_value_info("out", TensorProto.FLOAT, None)], [w])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    return m


@pytest.mark.parametrize("gate,act", [("Sigmoid", "Swish"), ("HardSigmoid", "HardSwish")])
def test_trt_conv_pointwise_fuses_silu_and_hardswish_into_the_conv(gate, act):
    from latency.fusion import fuse
    from latency.graph import load_graph

    for precision in ("fp32", "fp16"):
        rules = get_target("t4").fusion_rules().with_precision(precision)
        ks, unc = fuse(load_graph(_conv_gate_model(gate)), rules)
        real = [k for k in ks if k.kind != "Free" and not k.config.params.get("op") == "Cast"]
        convs = [k for k in real if k.kind == "Conv"]
        assert not unc and len(convs) == 1 and convs[0].config.params["act"] == act
        assert not [k for k in real if k.kind in ("Elementwise", "Activation")], [k.kind for k in real]


def test_trt_conv_pointwise_leaves_a_gate_of_another_tensor_alone():
    """Squeeze-and-excitation's y * Sigmoid(z) reads a second tensor: it stays a pointwise kernel of its own."""
    from latency.fusion import fuse
    from latency.graph import load_graph

    ks, _ = fuse(load_graph(_conv_gate_model("Sigmoid", gated_by_self=False)),
                 get_target("t4").fusion_rules().with_precision("fp16"))
    conv = [k for k in ks if k.kind == "Conv"]
    assert len(conv) == 1 and conv[0].config.params["act"] == "none"
    assert any(k.kind in ("Elementwise", "PointWise") for k in ks)


def _parameters(name) -> int:
    """Parameters of a builder's network (conv weights and biases, BN scale and shift; not BN statistics or
    constants)."""
    import numpy as np

    from profilers import zoo

    proto = gp.BUILDERS[name](zoo._Net(name, seed=0, batch=1), 640)
    return sum(int(np.prod(t.dims)) for t in proto.graph.initializer
               if "running" not in t.name and "Constant" not in t.name)


def test_yolov5_builders_have_the_published_parameter_counts():
    """The YOLOv5 v6.1 networks the detection figures ran: parameters (conv weights and biases, BN scale and
    shift) as mmyolo's model zoo lists them (1.87 / 7.24 / 21.19 / 46.56 M), so the layers are the real ones."""
    for name, millions in (("yolov5n", 1.87), ("yolov5s", 7.24), ("yolov5m", 21.19), ("yolov5l", 46.56)):
        assert round(_parameters(name) / 1e6, 2) == millions, name
    # ultralytics YOLOv8 (original head) and YOLO11: the parameter counts their model summaries print (unfused),
    # less the DFL's fixed 16-weight conv, a constant here
    for name, count in (("yolov8n", 3157200), ("yolov8s", 11166560), ("yolov8m", 25902640), ("yolov8l", 43691520),
                        ("yolov8x", 68229648), ("yolo11n", 2624080), ("yolo11s", 9458752), ("yolo11m", 20114688),
                        ("yolo11l", 25372160), ("yolo11x", 56966176)):
        assert _parameters(name) + 16 == count, name
    raw = gp.build("yolov5n_raw", 640)
    assert len(raw.outputs) == 3  # the model forward alone: the three heads' convs, no box decode
