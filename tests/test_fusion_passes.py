"""Fusion as data: each target's pass list is well formed, a target can bring its own list, and the op
registry knows every op type the passes and the fused graphs produce."""

import dataclasses

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

import latency.targets as T
from latency import ops
from latency.fusion import (ARM64_PASSES, GENERIC_GPU_PASSES, GENERIC_GPU_RULES, ORT_CPU_ARM64_RULES,
                            ORT_CPU_X86_RULES, ORT_ORDER, SHIPPED_PASS_LISTS, X86_PASSES, FusionRules, Pass, fuse,
                            fused_graph, used_by)
from latency.fusion.passes import CONV_ACTIVATION, NCHWC
from latency.graph import load_graph
from latency.targets.base import Target
from profilers import zoo

RULE_FIELDS = {f.name for f in dataclasses.fields(FusionRules)}


@pytest.mark.parametrize("list_name", sorted(SHIPPED_PASS_LISTS))
def test_shipped_pass_lists_are_well_formed(list_name):
    passes = SHIPPED_PASS_LISTS[list_name]
    names = [p.name for p in passes]
    assert all(isinstance(p, Pass) for p in passes)
    assert len(names) == len(set(names)), names
    runtime = "TensorRT" if list_name == "tensorrt" else "onnxruntime"
    if runtime == "onnxruntime":  # a subsequence of onnxruntime's transformer order
        order = [p.name for p in ORT_ORDER]
        assert [order.index(n) for n in names] == sorted(order.index(n) for n in names)
    for p in passes:
        assert p.matches and p.mirrors and callable(p.apply), p.name
        assert f"Mirrors {runtime}'s" in p.doc, f"{p.name}: the docstring says which transformer it mirrors"
        assert set(p.switches) <= RULE_FIELDS, p.name
        assert list_name in used_by(p)


def test_every_pass_has_a_unique_name_and_targets_run_their_declared_lists():
    assert len({p.name for p in ORT_ORDER}) == len(ORT_ORDER) == 26
    avx2, avx512 = T.get_target("x86-avx2-ort").fusion_rules(), T.get_target("x86-avx512-ort").fusion_rules()
    assert avx2.passes == avx512.passes == X86_PASSES
    assert (avx2.nchwc_block, avx512.nchwc_block) == (8, 16)
    assert T.get_target("arm64-ort").fusion_rules().passes == ORT_CPU_ARM64_RULES.passes == ARM64_PASSES
    from latency.fusion import TENSORRT_PASSES

    assert GENERIC_GPU_RULES.passes == GENERIC_GPU_PASSES
    assert all(T.get_target(g).fusion_rules().passes == TENSORRT_PASSES for g in ("t4", "a10", "l4", "a100", "h100"))
    assert NCHWC in X86_PASSES and NCHWC not in ARM64_PASSES and NCHWC not in GENERIC_GPU_PASSES


def _conv_relu(channels: int):
    rng = np.random.default_rng(0)
    w = numpy_helper.from_array((rng.standard_normal((channels, channels, 3, 3)) * 0.1).astype(np.float32), "w")
    b = numpy_helper.from_array(np.zeros(channels, np.float32), "b")
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["c"], name="conv", kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c"], ["y"], name="relu")]
    g = helper.make_graph(nodes, "conv_relu",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, channels, 8, 8])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], [w, b])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    return load_graph(m)


def test_a_target_brings_its_own_pass_list(monkeypatch):
    """A test target whose runtime lacks ConvActivationFusion: the x86 list minus that pass."""
    monkeypatch.setattr(T, "_TARGETS", dict(T.targets()))  # registrations stay inside this test
    rules = dataclasses.replace(ORT_CPU_X86_RULES(8), name="test-x86-no-conv-act",
                                passes=tuple(p for p in X86_PASSES if p is not CONV_ACTIVATION))
    T.register(Target("test-no-conv-act", "x86 whose runtime fuses no activation into an NCHW conv", "cpu",
                      "onnxruntime", "CPUExecutionProvider", "test", 1, fusion=lambda: rules))
    mine = T.get_target("test-no-conv-act").fusion_rules()
    assert mine.pass_names == tuple(p.name for p in X86_PASSES if p.name != "conv_activation")

    # 10 channels: not a multiple of the NCHWc alignment, so the conv stays NCHW and only
    # ConvActivationFusion could take the Relu
    graph = _conv_relu(10)
    x86, _ = fuse(graph, ORT_CPU_X86_RULES(8))
    ks, unc = fuse(graph, mine)
    assert not unc
    assert [(k.kind, k.params.get("act")) for k in x86] == [("Conv", "Relu")] and x86[0].nodes == ("conv", "relu")
    assert [(k.kind, k.params.get("act", k.params.get("op"))) for k in ks] == [("Conv", "none"), ("Activation", "Relu")]
    assert [k.nodes for k in ks] == [("conv",), ("relu",)]

    # 16 channels: the blocked conv folds the Relu itself (NchwcTransformer), with or without the pass
    graph = _conv_relu(16)
    assert [k.key for k in fuse(graph, mine)[0]] == [k.key for k in fuse(graph, ORT_CPU_X86_RULES(8))[0]]
    assert [k.kind for k in fuse(graph, mine)[0]] == ["Reorder", "Conv", "Reorder"]


def test_a_switched_off_pass_does_not_run():
    graph = _conv_relu(10)
    off = dataclasses.replace(ORT_CPU_X86_RULES(8), conv_act=())
    assert [k.kind for k in fuse(graph, off)[0]] == ["Conv", "Activation"]
    assert CONV_ACTIVATION.enabled(ORT_CPU_X86_RULES(8)) and not CONV_ACTIVATION.enabled(off)


def test_every_op_type_a_pass_produces_is_in_the_registry():
    for p in ORT_ORDER:
        for op in p.produces:
            assert ops.kind_of_op(op) is not None, f"{p.name} produces {op}, which no op kind prices"
    # the quantized and NHWC forms are priced by the kind of the op they run as
    for op, q in ops.QUANTIZED_OPS.items():
        assert ops.kind_of_op(op) == ops.kind_of_op(q.base) is not None, op
        assert q.precision in ops.get_kind(ops.kind_of_op(op)).precisions, op
    for op, base in ops.NHWC_OPS.items():
        assert ops.kind_of_op(op) == ops.kind_of_op(base) is not None, op
    assert ops.REORDERS == (ops.REORDER_INPUT, ops.REORDER_OUTPUT) == ops.get_kind("Reorder").onnx_ops


def test_the_registry_knows_every_op_type_of_the_zoos_fused_graphs():
    """Every op type left in the fused graph of every zoo model, on every shipped pass list, and every op
    type a kernel of it names, has an op kind."""
    rule_sets = (ORT_CPU_X86_RULES(16), ORT_CPU_X86_RULES(8), ORT_CPU_ARM64_RULES, GENERIC_GPU_RULES)
    unknown = {}
    for name in zoo.NAMES:
        graph = load_graph(zoo.build(name))
        for rules in rule_sets:
            state = fused_graph(graph, rules)
            seen = {w.op for w in state.live} | {i.what for i in state.inserted if i.what in ops.REORDERS}
            kernels, uncovered = fuse(graph, rules)
            assert not uncovered, (name, rules.name, uncovered[:3])
            for k in kernels:
                seen |= set(k.op_types) | ({k.params["op"]} if "op" in k.params else set())
            for op in seen:
                if ops.kind_of_op(op) is None:
                    unknown.setdefault(op, (name, rules.name))
    assert not unknown, unknown
