"""onnxruntime's CUDA execution provider as the second GPU runtime (``t4-ort-cuda``, ...): the targets,
its pass list with the source of each rule, and each rule on a small model. Nothing here needs a GPU:
every number is derived."""

import json

import pytest
from click.testing import CliRunner

from latency import Estimator
from latency.cli import main
from latency.fusion import fuse
from latency.fusion.ort_cuda import ORT_CUDA_PASSES, ORT_CUDA_SOURCES, ORT_SOURCE
from latency.graph import load_graph
from latency.targets import get_target
from models import small_cnn
from test_gpu import F, _attention, _conv, _ffn, _model, _qdq_block, _skip_layernorm, helper, np, numpy_helper

CARDS = ("t4", "a10", "l4", "a100", "h100")


def _kernels(model, precision="fp32", target="t4-ort-cuda"):
    rules = get_target(target).fusion_rules().with_precision(precision)
    ks, unc = fuse(load_graph(model), rules)
    return [k for k in ks if k.kind != "Free"], unc


def test_each_card_has_an_ort_cuda_variant_listed_as_derived_onnxruntime_cuda():
    r = CliRunner().invoke(main, ["targets", "--json"])
    assert r.exit_code == 0, r.output
    by = {t["name"]: t for t in json.loads(r.output)["targets"]}
    for card in CARDS:
        t = get_target(f"{card}-ort-cuda")
        assert (t.runtime, t.provider, t.device) == ("onnxruntime", "CUDAExecutionProvider", "gpu")
        assert t.spec is get_target(card).spec  # same spec sheet, same cost model
        assert "derived" in by[f"{card}-ort-cuda"]["description"]
        assert get_target(card).runtime == "tensorrt"  # TensorRT stays the default runtime of the card


def test_pass_list_cites_graph_transformer_utils_for_every_pass():
    assert "graph_transformer_utils.cc" in ORT_SOURCE
    names = [p.name for p in ORT_CUDA_PASSES]
    assert set(names) == set(ORT_CUDA_SOURCES)
    # registered for the CPU EP only in GenerateTransformers: not on the CUDA EP
    assert not {"conv_activation", "gemm_activation", "conv_add", "qdq", "dynamic_quant", "nchwc", "nhwc_int8"} & set(names)
    rules = get_target("t4-ort-cuda").fusion_rules()
    assert rules.conv_act == () and rules.gemm_act == () and not rules.qdq and not rules.conv_add


def test_conv_relu_stays_two_kernels_but_batchnorm_and_pad_fold_into_the_conv():
    """ConvActivationFusion is not registered for the CUDA EP; ConvBNFusion / PadFusion (Level 1) are."""
    conv, inits = _conv("conv", "p", "c", 8, 8)
    bn = helper.make_node("BatchNormalization", ["c", "g", "b", "m", "v"], ["n"], name="bn")
    inits += [numpy_helper.from_array(np.ones(8, np.float32), k) for k in ("g", "v")]
    inits += [numpy_helper.from_array(np.zeros(8, np.float32), k) for k in ("b", "m")]
    inits += [numpy_helper.from_array(np.array([0, 0, 1, 1, 0, 0, 1, 1], np.int64), "pads")]
    nodes = [helper.make_node("Pad", ["x", "pads"], ["p"], name="pad"), conv, bn,
             helper.make_node("Relu", ["n"], ["y"], name="relu")]
    m = _model(nodes, [("x", F, [1, 8, 16, 16])], ["y"], inits)
    ks, unc = _kernels(m)
    assert not unc and [k.kind for k in ks] == ["Conv", "Activation"]
    assert {"pad", "conv", "bn"} <= set(ks[0].nodes) and ks[0].params["act"] in ("", None, "none")
    (one,), _ = _kernels(m, target="t4")  # TensorRT takes the Relu into the conv
    assert one.params["act"] == "Relu"


def test_residual_add_is_its_own_kernel():
    """ConvAddActivationFusion is a Level 3 CPU-only transformer."""
    c1, i1 = _conv("c1", "x", "a", 16, 16)
    nodes = [c1, helper.make_node("Add", ["a", "x"], ["s"], name="add"), helper.make_node("Relu", ["s"], ["y"], name="r")]
    ks, _ = _kernels(_model(nodes, [("x", F, [1, 16, 8, 8])], ["y"], i1))
    assert [k.kind for k in ks] == ["Conv", "Elementwise", "Activation"]


def test_matmul_add_gives_a_gemm_but_no_activation_epilogue():
    """MatMulAddFusion (Level 1, every EP) fuses the bias; GemmActivationFusion is CPU-only."""
    nodes = [helper.make_node("MatMul", ["x", "w"], ["m"], name="mm"), helper.make_node("Add", ["m", "b"], ["a"], name="bias"),
             helper.make_node("Relu", ["a"], ["y"], name="relu")]
    inits = [numpy_helper.from_array(np.ones((32, 64), np.float32), "w"), numpy_helper.from_array(np.ones(64, np.float32), "b")]
    ks, _ = _kernels(_model(nodes, [("x", F, [4, 32])], ["y"], inits))
    assert [k.kind for k in ks] == ["MatMul", "Activation"]
    assert {"mm", "bias"} <= set(ks[0].nodes) and ks[0].params["bias"] == 1


def test_gelu_fuses_the_erf_pattern_into_one_kernel_after_the_gemm_took_the_bias():
    """MatMulAddFusion (Level 1) takes the bias first, then GeluFusion gives one Gelu kernel; TensorRT
    would take the Gelu into the GEMM's epilogue as well."""
    ks, unc = _kernels(_ffn())
    assert not unc and [k.kind for k in ks] == ["MatMul", "Activation"]
    assert "bias" in ks[0].nodes and {"div", "erf", "mulhalf"} <= set(ks[1].nodes) and "Gelu" in ks[1].params["op"]
    assert len(_kernels(_ffn(), target="t4")[0]) == 1


def test_layernorm_and_skip_layernorm_give_one_normalization_kernel():
    ks, _ = _kernels(_skip_layernorm())
    assert [(k.kind, k.params["skip"]) for k in ks] == [("LayerNorm", 1)] and "res" in ks[0].nodes


def test_matmul_transpose_and_scale_fuse_into_one_fused_matmul():
    """MatmulTransposeFusion and MatMulScaleFusion are registered with the CUDA EP."""
    inits = [numpy_helper.from_array(np.float32(0.125), "sc")]
    nodes = [helper.make_node("Transpose", ["b"], ["bt"], perm=[0, 1, 3, 2], name="tr"),
             helper.make_node("MatMul", ["a", "bt"], ["m"], name="mm"),
             helper.make_node("Mul", ["m", "sc"], ["y"], name="scale")]
    (k,), _ = _kernels(_model(nodes, [("a", F, [1, 2, 8, 16]), ("b", F, [1, 2, 8, 16])], ["y"], inits))
    assert k.kind == "MatMul" and k.params["trans_b"] == 1 and set(k.nodes) == {"tr", "mm", "scale"}


def test_attention_is_not_one_fused_kernel():
    """The CUDA EP's AttentionFusion matches only exported BERT subgraphs: not modelled, Softmax stays."""
    ks, unc = _kernels(_attention(), "fp16")
    assert not unc and not any(k.kind == "Attention" for k in ks) and any(k.kind == "Softmax" for k in ks)


def test_qdq_stays_separate_kernels_around_float_convs():
    """No QDQ selector/action runs on the CUDA EP: Quantize / Dequantize kernels, float convolutions."""
    ks, unc = _kernels(_qdq_block())
    assert not unc
    assert {k.precision for k in ks if k.kind == "Conv"} == {"fp32"}
    assert len([k for k in ks if k.kind == "Quant"]) >= 4
    trt, _ = _kernels(_qdq_block(), target="t4")
    assert len([k for k in trt if k.kind == "Quant"]) == 1  # TensorRT fuses them into its int8 convs


def test_fp16_runs_fp16_kernels_and_int8_has_no_rule():
    ks, _ = _kernels(small_cnn(c=32, h=32), "fp16")
    assert {k.precision for k in ks if k.kind == "Conv"} == {"fp16"}
    est = Estimator("t4-ort-cuda")
    m = small_cnn(c=64, h=64)
    assert est.estimate(m, precision="fp16").total_ms < est.estimate(m, precision="fp32").total_ms


def test_cli_int8_on_ort_cuda_is_one_line_listing_the_valid_precisions(tmp_path):
    import onnx

    p = tmp_path / "m.onnx"
    onnx.save(small_cnn(c=8, h=16), p)
    r = CliRunner().invoke(main, ["estimate", str(p), "--target", "t4-ort-cuda", "--precision", "int8"])
    assert r.exit_code != 0 and "fp32, fp16" in r.output and "Traceback" not in r.output
    r = CliRunner().invoke(main, ["estimate", str(p), "--target", "t4-ort-cuda", "--precision", "fp16", "--json"])
    assert r.exit_code == 0, r.output
    assert "derived" in r.output


@pytest.mark.parametrize("card", ["t4", "a100"])
def test_ort_cuda_is_slower_than_tensorrt_on_a_cnn(card):
    """Fewer fusions (no conv epilogues) than TensorRT: more kernels, more time, same cost model."""
    m = small_cnn(c=64, h=64)
    trt = Estimator(card).estimate(m, precision="fp16")
    ort = Estimator(f"{card}-ort-cuda").estimate(m, precision="fp16")
    assert len(ort.kernels) > len(trt.kernels) and ort.total_ms > trt.total_ms
    assert {k.source for k in ort.kernels if k.kind != "Free"} <= {"derived:gpu-model"}


def test_a_stored_fp16_model_runs_fp16_kernels_on_the_cuda_ep_and_tensorrt_says_how_to_get_them():
    pytest.importorskip("onnxconverter_common")
    from onnxconverter_common import float16

    from profilers import zoo

    m = zoo.build("resnet20_cifar")
    h = float16.convert_float_to_float16(m, keep_io_types=True)
    del h.graph.value_info[:]
    cuda = Estimator("t4-ort-cuda")
    fp32, fp16 = cuda.estimate(load_graph(m)), cuda.estimate(load_graph(h))
    convs = [k for k in fp16.kernels if k.kind == "Conv"]
    assert convs and all(k.precision == "fp16" for k in convs) and fp16.total_ms != fp32.total_ms
    assert all(k.precision == "fp32" for k in fp32.kernels if k.kind == "Conv")
    # an explicit fp32 on the CUDA EP still means fp32
    assert all(k.precision == "fp32" for k in cuda.estimate(load_graph(h), precision="fp32").kernels
               if k.kind == "Conv")
    trt = Estimator("t4")
    plain = trt.estimate(load_graph(h))
    assert any("--precision fp16" in w for w in plain.warnings)
    assert not any("--precision fp16" in w for w in trt.estimate(load_graph(h), precision="fp16").warnings)
    assert not any("stores fp16" in w for w in trt.estimate(load_graph(m)).warnings)
