"""QDQ models as onnxruntime's x86 CPU provider really builds them, checked against the runtime's own
optimized graph of files written by the real ``onnxruntime.quantization.quantize_static``."""

from __future__ import annotations

import numpy as np
import onnx
import pytest

from latency.fusion import ORT_CPU_ARM64_RULES, ORT_CPU_X86_RULES, fuse
from latency.graph import load_graph
from latency.profiles import read_cpu
from profilers import zoo
from profilers.runtime_graph import check_fusion

# the rules of this host's x86 target (NCHWc16 with AVX-512, NCHWc8 without): the checks below compare them with
# the graph onnxruntime optimizes here
X86 = ORT_CPU_X86_RULES(16 if "avx512f" in read_cpu()["cpu_flags"] else 8)


def _quantized(tmp_path, name, size=None, exclude=(), extra_options=None):
    """(fp32 path, QDQ path): quant_pre_process then quantize_static with its defaults (and ``extra_options``)."""
    import onnxruntime as ort
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from profilers.e2e import make_inputs

    src, pre, dst = tmp_path / f"{name}.onnx", tmp_path / f"{name}.pre.onnx", tmp_path / f"{name}.int8.onnx"
    onnx.save(zoo.build(name, size=size), src)
    quant_pre_process(str(src), str(pre))
    sess = ort.InferenceSession(str(pre), providers=["CPUExecutionProvider"])
    feeds = iter([make_inputs(sess, onnx.load(str(pre)), seed=i) for i in range(2)])

    class Reader(CalibrationDataReader):
        def get_next(self):
            return next(feeds, None)

    quantize_static(str(pre), str(dst), Reader(), quant_format=QuantFormat.QDQ, nodes_to_exclude=list(exclude),
                    extra_options=extra_options)
    return src, dst


@pytest.fixture(scope="module")
def resnet20_qdq(tmp_path_factory):
    return _quantized(tmp_path_factory.mktemp("qdq"), "resnet20_cifar")[1]


def test_resnet_qdq_kernels_are_the_runtimes(resnet20_qdq):
    # the Q after each residual Add feeds two DQs, so it stays int8 and the convs reading it cannot
    # run int8 on x86: onnxruntime runs them in float on DQ'd weights; ours must be the same graph
    assert check_fusion(str(resnet20_qdq), X86) == {}


def test_refused_units_run_float_convs_on_runtime_weights(resnet20_qdq):
    ks, unc = fuse(load_graph(str(resnet20_qdq)), X86)
    assert not unc
    convs = [k for k in ks if k.kind == "Conv"]
    fallback = [k for k in convs if k.precision == "fp32"]
    assert fallback and len(fallback) < len(convs)
    assert all(k.params.get("runtime_w") == 1 for k in fallback)
    assert all("runtime_w" not in k.params for k in convs if k.precision == "int8")
    # their weights are dequantized every run: one DQ kernel per fallback conv weight at least
    dq = [k for k in ks if k.kind == "Quant" and k.params.get("op") == "DequantizeLinear"]
    assert len(dq) >= 2 * len(fallback)


def test_arm64_runs_int8_activations_so_every_conv_is_int8(resnet20_qdq):
    ks, _ = fuse(load_graph(str(resnet20_qdq)), ORT_CPU_ARM64_RULES)
    assert all(k.precision == "int8" for k in ks if k.kind == "Conv")


def test_transformer_qdq_kernels_are_the_runtimes(tmp_path):
    # the int8 embedding table stays int8 while its Gather's output Q turns uint8: the whole table
    # is dequantized every run; Split with a Q per output runs int8
    _, dst = _quantized(tmp_path, "bert_tiny")
    assert check_fusion(str(dst), X86) == {}


def test_runtime_weight_conv_builds_and_runs():
    import onnxruntime as ort

    from latency.ops import Config
    from profilers.builders import build

    p = {"x": [1, 8, 12, 12], "cout": 16, "kernel": [3, 3], "strides": [1, 1], "pads": [1, 1, 1, 1],
         "dilations": [1, 1], "group": 1, "act": "none", "sum": 0, "runtime_w": 1}
    model = build(Config("Conv", p, "fp32"))
    m = model if isinstance(model, onnx.ModelProto) else model[0]
    names = [i.name for i in m.graph.input]
    assert "w_runtime" in names and not any(t.name == "W" for t in m.graph.initializer)
    s = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
    feeds = {i.name: np.random.default_rng(0).standard_normal([d.dim_value for d in i.type.tensor_type.shape.dim])
             .astype(np.float32) for i in m.graph.input}
    assert s.run(None, feeds)[0].shape == (1, 16, 12, 12)
    assert Config("Conv", p, "fp32").key != Config("Conv", {k: v for k, v in p.items() if k != "runtime_w"}).key


def test_nhwc_int8_maxpool_builds_and_runs():
    import onnxruntime as ort

    from latency.ops import Config
    from profilers.builders import build, feeds

    p = {"op": "MaxPool", "x": [1, 16, 12, 12], "kernel": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1],
         "ceil": 0, "layout": "nhwc"}
    m = build(Config("Pool", p, "int8"))
    assert [n.op_type for n in m.graph.node] == ["NhwcMaxPool"]
    s = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
    assert s.run(None, feeds(m))[0].shape == (1, 6, 6, 16)


def test_maxpool_after_an_int8_conv_is_priced_as_the_nhwc_kernel(tmp_path):
    _, dst = _quantized(tmp_path, "squeezenet1_1", size=64)
    ks, _ = fuse(load_graph(str(dst)), X86)
    pools = [k for k in ks if k.kind == "Pool" and k.params["op"] == "MaxPool"]
    # the stem's pool reads the NHWC int8 conv (NhwcMaxPool); the later ones read a QLinearConcat in NCHW
    assert pools[0].params.get("layout") == "nhwc" and all("layout" not in k.params for k in pools[1:])
    assert check_fusion(str(dst), X86) == {}


def test_mobilenet_residual_adds_requantize_their_nhwc_operand(tmp_path):
    # the residual chain leads on to the next block's int8 expansion conv: onnxruntime's transpose optimizer
    # moves the NHWC int8 conv's transpose through the DQ of the residual Add's NHWC operand, the Add refuses
    # it (its other operand is NCHW), and a Q -> DQ pair follows the float transpose
    _, dst = _quantized(tmp_path, "mobilenet_v2_050", size=64)
    ks, _ = fuse(load_graph(str(dst)), X86)
    assert any(k.kind == "Transpose" and k.precision == "fp32" for k in ks)
    assert any(k.kind == "Quant" and not k.nodes for k in ks)
    assert check_fusion(str(dst), X86) == {}


@pytest.mark.parametrize("name,size,pairs", [("mnasnet1_0", 64, 10), ("mobilenet_v3_small", 64, 6),
                                             ("googlenet", 64, 0), ("efficientnet_b0", 64, 11)])
def test_requantized_transposes_follow_where_the_branch_leads(tmp_path, name, size, pairs):
    # which float transposes get a new Q -> DQ pair does not depend on the operand position but on whether the
    # DQ's output leads on, through ops the transpose optimizer pushes transposes through, to another int8
    # conv: MnasNet's residual Adds (NHWC branch first) and MobileNetV3's squeeze-excitation Muls (after a
    # float HardSigmoid) do, ResNet's do not (above), EfficientNet's squeeze-excitation Muls do in 11 of its 16
    # blocks (not in the first of stages 2-6, whose projection conv stays float); GoogLeNet's last two Inception concats run NHWC with
    # three NHWC branches of four (the fourth transposed to them)
    _, dst = _quantized(tmp_path, name, size=size)
    ks, _ = fuse(load_graph(str(dst)), X86)
    assert sum(1 for k in ks if k.kind == "Transpose" and k.precision == "fp32") == pairs
    assert check_fusion(str(dst), X86) == {}


def test_shufflenet_first_blocks_merge_the_layout_transpose_into_the_channel_shuffle(tmp_path):
    # each stage's first block concatenates two NHWC int8 branches: the QLinearConcat runs NHWC and the
    # transpose back to NCHW is pushed through the shuffle's Reshape into its Transpose, one 5-D perm
    # [0, 4, 3, 1, 2] (onnxruntime 1.32's optimized graph); the later blocks keep [0, 2, 1, 3, 4]
    _, dst = _quantized(tmp_path, "shufflenet_v2_x0_5", size=64)
    ks, _ = fuse(load_graph(str(dst)), X86)
    shuffles = [k for k in ks if k.kind == "Transpose" and len(k.params["perm"]) == 5]
    merged = [k for k in shuffles if k.params["perm"] == [0, 4, 3, 1, 2]]
    assert len(merged) == 3 and len(shuffles) == 16
    assert all(k.params["x"][3] == 2 for k in merged)  # [N, H, W, groups, C / groups]
    concats = [k for k in ks if k.kind == "Concat" and k.params["axis"] == 3]
    assert len(concats) == 3
    assert check_fusion(str(dst), X86) == {}
    # priced: the Xeon profile measured such transposes (element by element in the runtime, 12-164 us alone
    # where the shuffle's own takes 3-4 us); a profile measured before they were planned says it lacks them
    from latency import Estimator
    from latency.profiles import shipped_dir

    e = Estimator("x86-avx512-ort", profile=str(shipped_dir() / "x86-avx512-ort.xeon-amx.db")).estimate(str(dst))
    merged_us = [k.isolated_us for k in e.kernels if k.kind == "Transpose" and '"perm":[0,4,3,1,2]' in k.key]
    plain_us = [k.isolated_us for k in e.kernels if k.kind == "Transpose" and '"perm":[0,2,1,3,4]' in k.key]
    assert len(merged_us) == 3 and min(merged_us) > max(plain_us) and max(merged_us) > 5 * max(plain_us)
    old = Estimator("x86-avx512-ort", profile=str(shipped_dir() / "x86-avx512-ort.epyc-zen5.db")).estimate(str(dst))
    flagged = [k for k in old.kernels if '"perm":[0,4,3,1,2]' in k.key]
    assert len(flagged) == 3 and all("no rows" in k.detail for k in flagged)
    assert any("element by element" in w for w in old.warnings)


def test_a_concat_of_nhwc_int8_branches_stays_nhwc_with_the_pools_after_it(tmp_path):
    # SqueezeNet quantized whole (per-channel weights, no pre-processing): every Fire module's QLinearConcat
    # reads two NHWC QLinearConvs and runs NHWC, so the MaxPools after them stay NHWC int8 pools and the
    # runtime's graph has 2 Transposes (the fusion had 26, and priced the pools as NCHW int8 MaxPools,
    # 2.4 ms alone at 128x55x55: the file's estimate 5.46 ms, measured 2.28 ms on the Xeon host)
    import onnxruntime as ort
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    from profilers.e2e import make_inputs

    m = zoo.build("squeezenet1_1", size=64)
    src, dst = tmp_path / "sq.onnx", tmp_path / "sq.int8.onnx"
    onnx.save(m, src)
    sess = ort.InferenceSession(str(src), providers=["CPUExecutionProvider"])
    feeds = iter([make_inputs(sess, m, seed=0)])

    class Reader(CalibrationDataReader):
        def get_next(self):
            return next(feeds, None)

    quantize_static(str(src), str(dst), Reader(), per_channel=True, activation_type=QuantType.QUInt8,
                    weight_type=QuantType.QInt8, quant_format=QuantFormat.QDQ)
    ks, _ = fuse(load_graph(str(dst)), X86)
    assert sum(k.kind == "Transpose" for k in ks) == 2
    assert all(k.params.get("layout") == "nhwc" or k.params["op"] != "MaxPool" for k in ks if k.kind == "Pool")
    assert check_fusion(str(dst), X86) == {}


def test_dynamic_quant_shared_input_is_one_quantization_and_unfused_matmuls(tmp_path):
    # quant_pre_process writes one input Reshape per projection; CommonSubexpressionElimination makes
    # them (and then their DynamicQuantizeLinears) one, and a shared DynamicQuantizeLinear leaves its
    # MatMulIntegers unfused
    from onnxruntime.quantization import quantize_dynamic
    from onnxruntime.quantization.shape_inference import quant_pre_process

    src, pre, dst = tmp_path / "b.onnx", tmp_path / "b.pre.onnx", tmp_path / "b.dyn.onnx"
    onnx.save(zoo.build("bert_tiny"), src)
    quant_pre_process(str(src), str(pre))
    quantize_dynamic(str(pre), str(dst))
    ks, _ = fuse(load_graph(str(dst)), X86)
    assert any(k.kind == "MatMul" and k.precision == "int8" for k in ks)          # a bare MatMulInteger
    assert any(k.kind == "MatMul" and k.precision == "int8_dynamic" for k in ks)  # a fused one
    assert check_fusion(str(dst), X86) == {}


def test_cse_merges_equal_nodes_only():
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 8])
    shp = [helper.make_node("Constant", [], [f"s{i}"], value=helper.make_tensor(f"s{i}v", TensorProto.INT64, [2],
                                                                                  [4, 8])) for i in range(3)]
    shp[2] = helper.make_node("Constant", [], ["s2"], value=helper.make_tensor("s2v", TensorProto.INT64, [2], [8, 4]))
    nodes = shp + [helper.make_node("Reshape", ["x", f"s{i}"], [f"r{i}"], name=f"r{i}") for i in range(3)]
    nodes += [helper.make_node("Relu", [f"r{i}"], [f"y{i}"], name=f"relu{i}") for i in range(3)]
    outs = [helper.make_tensor_value_info(f"y{i}", TensorProto.FLOAT, None) for i in range(3)]
    m = helper.make_model(helper.make_graph(nodes, "g", [x], outs), opset_imports=[helper.make_opsetid("", 17)])
    ks, _ = fuse(load_graph(m), X86)
    # r0 and r1 reshape alike (equal constants): one Reshape and, reading it, one Relu... but the Relus
    # produce graph outputs, so they stay; r2 reshapes differently
    relus = [k for k in ks if "Relu" in k.op_types]
    assert len(relus) == 3
    assert sum("r0" in k.nodes or "r1" in k.nodes for k in ks) == 1


def test_a_profile_without_runtime_weight_rows_says_so(resnet20_qdq):
    # the AVX2 EPYC profile was measured before float convs on run-time weights had their own rows:
    # its regressor prices them as plain convs, and the estimate says so
    from latency import Estimator
    from latency.profiles import shipped_dir

    est = Estimator("x86-avx2-ort", profile=str(shipped_dir() / "x86-avx2-ort.db"))
    e = est.estimate(str(resnet20_qdq))
    flagged = [k for k in e.kernels if '"runtime_w":1' in k.key]
    assert flagged and all("no rows" in k.detail for k in flagged)
    assert any("no rows for" in w for w in e.warnings)


def test_an_excluded_conv_between_a_dq_and_a_q_is_quantized_by_the_runtime(tmp_path):
    # WeightBiasQuantization: onnxruntime quantizes the float weight of a Conv/Gemm whose input is
    # dequantized and whose output is quantized, so nodes_to_exclude does not keep it float there
    _, dst = _quantized(tmp_path, "resnet20_cifar", exclude=["/layer2.1/Conv_1"])
    m = onnx.load(str(dst))
    conv = next(n for n in m.graph.node if n.name == "/layer2.1/Conv_1")
    assert conv.input[1] in {t.name for t in m.graph.initializer}  # the file left its weight float
    ks, _ = fuse(load_graph(str(dst)), X86)
    k = next(k for k in ks if "/layer2.1/Conv_1" in k.nodes)
    assert k.precision == "int8"
    assert check_fusion(str(dst), X86) == {}


def test_q_after_a_maxpool_of_a_float_conv_moves_before_it(tmp_path):
    # the first conv left float: quantize_static quantizes after the MaxPool; onnxruntime moves the Q
    # before it (QDQPropagation), so the MaxPool runs on uint8 in NCHW (a slow generic kernel)
    src, _ = _quantized(tmp_path, "squeezenet1_1", size=64)
    first = next(n.name for n in onnx.load(str(tmp_path / "squeezenet1_1.pre.onnx")).graph.node if n.op_type == "Conv")
    _, dst = _quantized(tmp_path, "squeezenet1_1", size=64, exclude=[first])
    ks, _ = fuse(load_graph(str(dst)), X86)
    pool = next(k for k in ks if k.kind == "Pool" and k.params["op"] == "MaxPool")
    assert pool.precision == "int8" and "layout" not in pool.params
    assert any(k.kind == "Quant" and not k.nodes and k.params["op"] == "QuantizeLinear" for k in ks)


@pytest.mark.parametrize("name", ["vit_tiny_64", "mobilenet_v2_050"])
def test_fp16_kernels_are_the_runtimes(name):
    """onnxconverter-common's fp16 file on x86: onnxruntime runs it as fp32 kernels, leaves data movement
    and LayerNormalization in fp16 with Casts around them, fuses no Gelu / FusedMatMul / SkipLayerNorm and
    inlines the Softmax; our kernels match its optimized graph within two Casts."""
    pytest.importorskip("onnxconverter_common")
    from onnxconverter_common import float16

    m = float16.convert_float_to_float16(zoo.build(name), keep_io_types=True)
    diff = check_fusion(m, X86)
    cast = diff.pop("cast", (0, 0))
    kernels = diff.pop("kernels", (0, 0))
    assert not {k: v for k, v in diff.items() if not (isinstance(k, tuple) and k[0] == "conv")}, diff
    assert abs(cast[0] - cast[1]) <= 2 and abs(kernels[0] - kernels[1]) <= 2, (cast, kernels)


def test_excluded_conv_between_quantized_neighbours_runs_on_dequantized_weights(tmp_path):
    # every 2nd conv of a resnet left out of quantize_static: WeightBiasQuantization quantizes the float
    # weights of those between a DQ and a Q all the same; where the selectors then refuse the unit (its
    # input is the int8 Q after a residual Add) the conv runs in float on weights and bias dequantized
    # every run: no NCHWc reorders around it, and its kernels are the runtime's
    g = load_graph(zoo.build("resnet20_cifar"))
    convs = [r.name for r in g.ops if r.op_type == "Conv"]
    _, dst = _quantized(tmp_path, "resnet20_cifar", exclude=convs[1::2])
    ks, unc = fuse(load_graph(str(dst)), X86)
    assert not unc
    runtime_w = [k for k in ks if k.kind == "Conv" and k.params.get("runtime_w") == 1]
    assert any(set(k.nodes) & set(convs[1::2]) for k in runtime_w)
    assert check_fusion(str(dst), X86) == {}


def test_a_weight_the_runtime_quantizes_has_a_zero_point_and_its_kernel_says_so(tmp_path):
    # WeightBiasQuantization quantizes the excluded conv's float weight per tensor with a non-zero zero
    # point (the quantizer's own weights are symmetric): its QLinearConv takes the zero-point path, a
    # kernel of its own (wzp=1); the quantizer's convs stay without it
    from onnx import numpy_helper

    excluded = "/layer2.1/Conv_1"
    _, dst = _quantized(tmp_path, "resnet20_cifar", exclude=[excluded])
    from profilers.runtime_graph import runtime_kernel_summary

    runtime_kernel_summary(str(dst), optimized_path=str(tmp_path / "ort_optimized.onnx"))
    opt = onnx.load(str(tmp_path / "ort_optimized.onnx"))
    inits = {t.name: numpy_helper.to_array(t) for t in opt.graph.initializer}
    zps = {}
    for n in opt.graph.node:
        if n.op_type == "QLinearConv" and len(n.input) > 5 and n.input[5] in inits:
            zps[n.input[3]] = bool((inits[n.input[5]] != 0).any())
    runtime_q = [w for w in zps if w.startswith(excluded)]
    assert runtime_q and all(zps[w] for w in runtime_q)  # the runtime's own weight: a zero point
    assert any(not v for w, v in zps.items() if w not in runtime_q)  # the quantizer's: none
    ks, _ = fuse(load_graph(str(dst)), X86)
    convs = [k for k in ks if k.kind == "Conv" and k.precision == "int8"]
    mine = [k for k in convs if excluded in k.nodes]
    assert len(mine) == 1 and mine[0].params.get("wzp") == 1
    assert all("wzp" not in k.params for k in convs if k not in mine)


def test_a_file_with_asymmetric_weights_runs_every_int8_conv_on_the_zero_point_path(tmp_path):
    _, dst = _quantized(tmp_path, "resnet20_cifar", extra_options={"WeightSymmetric": False})
    ks, _ = fuse(load_graph(str(dst)), X86)
    convs = [k for k in ks if k.kind == "Conv" and k.precision == "int8"]
    assert convs and all(k.params.get("wzp") == 1 for k in convs)


def test_asymmetric_weight_conv_builds_runs_and_is_int8_only():
    import onnxruntime as ort
    from onnx import numpy_helper

    from latency.ops import Config
    from profilers.builders import NotBuildable, build, feeds

    p = {"x": [1, 16, 10, 10], "cout": 16, "kernel": [3, 3], "strides": [1, 1], "pads": [1, 1, 1, 1],
         "dilations": [1, 1], "group": 1, "act": "none", "sum": 0, "wzp": 1}
    m = build(Config("Conv", p, "int8"))
    dq = next(n for n in m.graph.node if n.name == "w_dq")
    zero = {t.name: numpy_helper.to_array(t) for t in m.graph.initializer}[dq.input[2]]
    assert zero.dtype == np.int8 and zero.size == 1 and int(zero) != 0
    s = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
    assert s.run(None, feeds(m))[0].shape == (1, 16, 10, 10)
    assert Config("Conv", p, "int8").key != Config("Conv", {k: v for k, v in p.items() if k != "wzp"}, "int8").key
    with pytest.raises(NotBuildable, match="int8 only"):
        build(Config("Conv", p, "fp32"))


def test_a_profile_without_asymmetric_weight_rows_prices_them_as_symmetric_and_says_so(tmp_path):
    # the Zen 5 profile was measured before the zero-point kernels had rows of their own
    from latency import Estimator
    from latency.profiles import shipped_dir

    excluded = "/layer2.1/Conv_1"
    _, dst = _quantized(tmp_path, "resnet20_cifar", exclude=[excluded])
    e = Estimator("x86-avx512-ort", profile=str(shipped_dir() / "x86-avx512-ort.epyc-zen5.db")).estimate(str(dst))
    k = next(k for k in e.kernels if excluded in k.nodes)
    assert '"wzp":1' in k.key and k.source == "regressor" and "before wzp existed" in k.detail
