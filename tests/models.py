"""Tiny models built in code for tests (onnx.helper), each a named pattern."""

import numpy as np
from onnx import TensorProto, helper, numpy_helper


def _w(name, shape, seed=0):
    rng = np.random.default_rng(seed)
    return numpy_helper.from_array((rng.standard_normal(shape) * 0.1).astype(np.float32), name)


def small_cnn(extra_nodes=(), extra_inits=(), out="y", c=8, h=16):
    """conv -> bn -> relu -> conv(+residual add) -> relu -> global pool -> flatten -> gemm."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, h, h])
    y = helper.make_tensor_value_info(out, TensorProto.FLOAT, None)
    inits = [_w("w1", [c, 3, 3, 3]), _w("b1", [c]), _w("w2", [c, c, 3, 3], 1), _w("b2", [c]),
             numpy_helper.from_array(np.ones(c, np.float32), "g"), numpy_helper.from_array(np.zeros(c, np.float32), "be"),
             numpy_helper.from_array(np.zeros(c, np.float32), "mu"), numpy_helper.from_array(np.ones(c, np.float32), "var"),
             _w("fc", [10, c], 2), _w("fcb", [10])] + list(extra_inits)
    nodes = [
        helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], name="conv1", pads=[1, 1, 1, 1]),
        helper.make_node("BatchNormalization", ["c1", "g", "be", "mu", "var"], ["n1"], name="bn1"),
        helper.make_node("Relu", ["n1"], ["r1"], name="relu1"),
        helper.make_node("Conv", ["r1", "w2", "b2"], ["c2"], name="conv2", pads=[1, 1, 1, 1]),
        helper.make_node("Add", ["c2", "r1"], ["a2"], name="add2"),
        helper.make_node("Relu", ["a2"], ["r2"], name="relu2"),
        helper.make_node("GlobalAveragePool", ["r2"], ["p"], name="gap"),
        helper.make_node("Flatten", ["p"], ["f"], name="flatten"),
        helper.make_node("Gemm", ["f", "fc", "fcb"], ["y" if not extra_nodes else "g1"], name="fc", transB=1),
    ] + list(extra_nodes)
    g = helper.make_graph(nodes, "small_cnn", [x], [y], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("custom.ns", 1)])
    m.ir_version = 8
    return m


def with_unknown_op():
    """small_cnn followed by an op of a custom domain that nothing prices."""
    return small_cnn(extra_nodes=[helper.make_node("Frobnicate", ["g1"], ["z"], name="mystery", domain="custom.ns")],
                     out="z")


def dynamic_batch():
    m = small_cnn()
    m.graph.input[0].type.tensor_type.shape.dim[0].dim_param = "N"
    return m
