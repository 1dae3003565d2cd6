"""A corpus of real architectures built in code with ``onnx.helper``.

Every model is fp32, opset 17, IR version 8, with its real layer configuration and the node
patterns that the PyTorch exporter writes (Conv + BatchNormalization + Relu, Linear as Gemm with
``transB=1`` on 2-D inputs and as MatMul + Add on 3-D inputs, Flatten, GlobalAveragePool, residual
Add, exporter-style attention). Weights are random (a small random block tiled, He-style scale),
so the models are only meant for timing, never for accuracy. Initializers are not listed as graph
inputs, so the runtime may constant-fold and fuse them.

``build(name)`` returns one model; ``NAMES`` lists the corpus; ``light_models()`` converts the
light models shipped inside the onnx package into runnable models.
"""

from __future__ import annotations

import contextlib
import glob
import logging
import math
import os

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

log = logging.getLogger(__name__)

OPSET = 17
IR_VERSION = 8
_BLOCK = 4093  # length of the random block that is tiled into every weight (a prime)


def _make_divisible(v, divisor=8, min_value=None):
    if min_value is None:
        min_value = divisor
    new_v = max(min_value, int(v + divisor / 2) // divisor * divisor)
    if new_v < 0.9 * v:
        new_v += divisor
    return new_v


class _Net:
    """Graph under construction: nodes, initializers, inputs, and layer helpers."""

    def __init__(self, name, seed=0, batch=1):
        self.name = name
        self.batch = batch
        self.nodes = []
        self.inits = []
        self.inputs = []
        self.outputs = []
        self._rng = np.random.default_rng(seed)
        self._block = self._rng.standard_normal(_BLOCK).astype(np.float32)
        self._names = {}
        self._consts = {}
        self._scope = []

    # -- bookkeeping ------------------------------------------------------------------------------
    @contextlib.contextmanager
    def scope(self, name):
        self._scope.append(str(name))
        try:
            yield
        finally:
            self._scope.pop()

    def _unique(self, base):
        k = self._names.get(base, 0)
        self._names[base] = k + 1
        return base if k == 0 else f"{base}_{k}"

    def op(self, op_type, inputs, n_out=1, domain=None, **attrs):
        """Append a node; return its output name (or list of names when ``n_out > 1``)."""
        prefix = "/" + "/".join(self._scope) + "/" if self._scope else "/"
        name = self._unique(prefix + op_type)
        outs = [f"{name}_output_{i}" for i in range(n_out)]
        node = helper.make_node(op_type, list(inputs), outs, name=name, domain=domain, **attrs)
        self.nodes.append(node)
        return outs[0] if n_out == 1 else outs

    def const(self, value, dtype=np.int64):
        """A small constant initializer (deduplicated); returns its name."""
        arr = np.asarray(value, dtype=dtype)
        key = (arr.dtype.str, arr.shape, arr.tobytes())
        if key not in self._consts:
            name = self._unique("onnx::Constant")
            self.inits.append(numpy_helper.from_array(arr, name))
            self._consts[key] = name
        return self._consts[key]

    def param(self, shape, std=0.02, mean=0.0, positive=False, prefix="weight"):
        """A float32 weight of ``shape``: the random block tiled, times ``std``, plus ``mean``."""
        n = int(np.prod(shape)) if len(shape) else 1
        src = np.abs(self._block) if positive else self._block
        src = np.roll(src, int(self._rng.integers(_BLOCK)))
        arr = np.resize(src, n)
        arr *= np.float32(std)
        if mean:
            arr += np.float32(mean)
        arr = arr.reshape(shape)
        assert arr.dtype == np.float32
        prefix = ".".join(self._scope + [prefix]) if self._scope else prefix
        name = self._unique(prefix)
        self.inits.append(numpy_helper.from_array(arr, name))
        return name

    def input(self, name, elem_type, shape):
        self.inputs.append(helper.make_tensor_value_info(name, elem_type, shape))
        return name

    def output(self, tensor, name):
        """Make ``tensor`` a graph output called ``name`` (renames the producing node's output)."""
        for node in self.nodes:
            for i, o in enumerate(node.output):
                if o == tensor:
                    node.output[i] = name
            for i, o in enumerate(node.input):
                if o == tensor:
                    node.input[i] = name
        self.outputs.append(name)
        return name

    def finish(self):
        """The finished ModelProto, with output shapes filled by shape inference."""
        graph = helper.make_graph(
            self.nodes, self.name, self.inputs,
            [helper.make_tensor_value_info(o, TensorProto.FLOAT, None) for o in self.outputs],
            initializer=self.inits)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                                  producer_name="latency.zoo")
        model.ir_version = IR_VERSION
        shapes = _infer_output_types(model)
        del model.graph.output[:]
        model.graph.output.extend(shapes)
        return model

    # -- CNN layers -------------------------------------------------------------------------------
    def conv(self, x, cin, cout, k, s=1, p=None, g=1, d=1, bias=False, std=None):
        kh, kw = (k, k) if isinstance(k, int) else k
        if p is None:
            p = ((kh - 1) // 2 * d, (kw - 1) // 2 * d)
        ph, pw = (p, p) if isinstance(p, int) else p
        fan_in = cin // g * kh * kw
        w = self.param([cout, cin // g, kh, kw], std or math.sqrt(2.0 / fan_in))
        ins = [x, w]
        if bias:
            ins.append(self.param([cout], 0.01, prefix="bias"))
        return self.op("Conv", ins, dilations=[d, d], group=g, kernel_shape=[kh, kw],
                       pads=[ph, pw, ph, pw], strides=[s, s])

    def bn(self, x, c, gamma=1.0, eps=1e-5):
        scale = self.param([c], 0.1 * gamma, mean=gamma, prefix="bn.weight")
        bias = self.param([c], 0.02, prefix="bn.bias")
        mean = self.param([c], 0.02, prefix="bn.running_mean")
        var = self.param([c], 0.1, mean=1.0, positive=True, prefix="bn.running_var")
        return self.op("BatchNormalization", [x, scale, bias, mean, var], epsilon=eps, momentum=0.9)

    def act(self, x, kind):
        if kind is None:
            return x
        if kind == "relu":
            return self.op("Relu", [x])
        if kind == "relu6":
            return self.op("Clip", [x, self.const(0.0, np.float32), self.const(6.0, np.float32)])
        if kind == "hswish":
            return self.op("HardSwish", [x])
        if kind == "hsigmoid":
            return self.op("HardSigmoid", [x], alpha=1.0 / 6, beta=0.5)
        if kind == "sigmoid":
            return self.op("Sigmoid", [x])
        if kind == "swish":
            return self.op("Mul", [x, self.op("Sigmoid", [x])])
        if kind == "gelu":
            return self.gelu(x)
        if kind == "tanh":
            return self.op("Tanh", [x])
        raise ValueError(f"unknown activation {kind!r}")

    def cba(self, x, cin, cout, k, s=1, g=1, act="relu", gamma=1.0, eps=1e-5, d=1):
        """Conv (no bias) + BatchNormalization + activation."""
        return self.act(self.bn(self.conv(x, cin, cout, k, s, g=g, d=d), cout, gamma, eps), act)

    def maxpool(self, x, k, s, p=0, ceil=False):
        return self.op("MaxPool", [x], ceil_mode=int(ceil), kernel_shape=[k, k], pads=[p] * 4,
                       strides=[s, s])

    def avgpool(self, x, k, s, p=0, ceil=False):
        return self.op("AveragePool", [x], ceil_mode=int(ceil), kernel_shape=[k, k],
                       pads=[p] * 4, strides=[s, s])

    def gap(self, x):
        return self.op("GlobalAveragePool", [x])

    def flatten(self, x):
        return self.op("Flatten", [x], axis=1)

    def gemm(self, x, cin, cout, bias=True, std=None):
        """``nn.Linear`` on a 2-D input: Gemm with transB=1, weight [cout, cin]."""
        ins = [x, self.param([cout, cin], std or 1.0 / math.sqrt(cin))]
        if bias:
            ins.append(self.param([cout], 0.01, prefix="bias"))
        return self.op("Gemm", ins, alpha=1.0, beta=1.0, transB=1)

    def linear(self, x, cin, cout, bias=True, std=None):
        """``nn.Linear`` on an N-D input: MatMul with weight [cin, cout] + Add bias."""
        y = self.op("MatMul", [x, self.param([cin, cout], std or 1.0 / math.sqrt(cin))])
        if bias:
            y = self.op("Add", [y, self.param([cout], 0.01, prefix="bias")])
        return y

    def se(self, x, c, cs, act="relu", gate="sigmoid"):
        """Squeeze-and-excitation: GAP, 1x1 conv, act, 1x1 conv, gate, Mul."""
        with self.scope("se"):
            s = self.gap(x)
            s = self.act(self.conv(s, c, cs, 1, bias=True), act)
            s = self.act(self.conv(s, cs, c, 1, bias=True, std=math.sqrt(1.0 / cs)), gate)
            return self.op("Mul", [x, s])

    # -- transformer layers -----------------------------------------------------------------------
    def gelu(self, x):
        """Exact GELU as the exporter writes it: x * 0.5 * (1 + erf(x / sqrt(2)))."""
        e = self.op("Erf", [self.op("Div", [x, self.const(1.4142135381698608, np.float32)])])
        y = self.op("Mul", [x, self.op("Add", [e, self.const(1.0, np.float32)])])
        return self.op("Mul", [y, self.const(0.5, np.float32)])

    def gelu_tanh(self, x):
        """GPT-2's tanh GELU: 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))."""
        p = self.op("Pow", [x, self.const(3.0, np.float32)])
        p = self.op("Mul", [p, self.const(0.044715, np.float32)])
        p = self.op("Add", [x, p])
        p = self.op("Mul", [p, self.const(math.sqrt(2.0 / math.pi), np.float32)])
        t = self.op("Add", [self.op("Tanh", [p]), self.const(1.0, np.float32)])
        return self.op("Mul", [self.op("Mul", [x, self.const(0.5, np.float32)]), t])

    def layernorm(self, x, d, eps=1e-5, decomposed=False):
        gamma = self.param([d], 0.02, mean=1.0, prefix="LayerNorm.weight")
        beta = self.param([d], 0.02, prefix="LayerNorm.bias")
        if not decomposed:
            return self.op("LayerNormalization", [x, gamma, beta], axis=-1, epsilon=eps)
        mean = self.op("ReduceMean", [x], axes=[-1], keepdims=1)
        diff = self.op("Sub", [x, mean])
        var = self.op("ReduceMean", [self.op("Pow", [diff, self.const(2.0, np.float32)])],
                      axes=[-1], keepdims=1)
        std = self.op("Sqrt", [self.op("Add", [var, self.const(eps, np.float32)])])
        y = self.op("Div", [diff, std])
        return self.op("Add", [self.op("Mul", [y, gamma]), beta])

    def heads(self, x, seq, nh, hd, perm):
        """[B, S, nh*hd] -> Reshape [B, S, nh, hd] -> Transpose(perm)."""
        r = self.op("Reshape", [x, self.const([self.batch, seq, nh, hd])])
        return self.op("Transpose", [r], perm=perm)

    def merge_heads(self, x, seq, d):
        t = self.op("Transpose", [x], perm=[0, 2, 1, 3])
        return self.op("Reshape", [t, self.const([self.batch, seq, d])])


def _infer_output_types(model):
    """Output value infos of ``model`` from shape inference on a copy without big weights."""
    light = onnx.ModelProto()
    light.ir_version = model.ir_version
    light.opset_import.extend(model.opset_import)
    g = light.graph
    g.name = model.graph.name
    g.node.extend(model.graph.node)
    g.input.extend(model.graph.input)
    g.output.extend(model.graph.output)
    for t in model.graph.initializer:
        if t.data_type == TensorProto.FLOAT and np.prod(t.dims) > 64:
            g.input.append(helper.make_tensor_value_info(t.name, t.data_type, list(t.dims)))
        else:
            g.initializer.append(t)
    inferred = onnx.shape_inference.infer_shapes(light, strict_mode=True)
    return list(inferred.graph.output)


def _image_input(net, size, c=3):
    return net.input("input", TensorProto.FLOAT, [net.batch, c, size, size])


def _classifier_output(net, x):
    net.output(x, "logits")
    return net.finish()


# ------------------------------------------------------------------------------------------------
# small classic networks
def _lenet5(net, size=28):
    x = _image_input(net, size, 1)
    with net.scope("features"):
        x = net.maxpool(net.act(net.conv(x, 1, 6, 5, p=2, bias=True), "relu"), 2, 2)
        x = net.maxpool(net.act(net.conv(x, 6, 16, 5, p=0, bias=True), "relu"), 2, 2)
    s = ((size // 2) - 4) // 2
    with net.scope("classifier"):
        x = net.flatten(x)
        x = net.act(net.gemm(x, 16 * s * s, 120), "relu")
        x = net.act(net.gemm(x, 120, 84), "relu")
        x = net.gemm(x, 84, 10)
    return _classifier_output(net, x)


def _mlp_mnist(net, size=28):
    x = net.flatten(_image_input(net, size, 1))
    x = net.act(net.gemm(x, size * size, 512), "relu")
    x = net.act(net.gemm(x, 512, 256), "relu")
    return _classifier_output(net, net.gemm(x, 256, 10))


def _alexnet(net, size=224):
    x = _image_input(net, size)
    with net.scope("features"):
        x = net.maxpool(net.act(net.conv(x, 3, 64, 11, 4, p=2, bias=True), "relu"), 3, 2)
        x = net.maxpool(net.act(net.conv(x, 64, 192, 5, p=2, bias=True), "relu"), 3, 2)
        x = net.act(net.conv(x, 192, 384, 3, bias=True), "relu")
        x = net.act(net.conv(x, 384, 256, 3, bias=True), "relu")
        x = net.act(net.conv(x, 256, 256, 3, bias=True), "relu")
        x = net.maxpool(x, 3, 2)
    s = (size + 4 - 11) // 4 + 1
    for _ in range(3):
        s = (s - 3) // 2 + 1
    with net.scope("classifier"):
        x = net.flatten(x)
        x = net.act(net.gemm(x, 256 * s * s, 4096), "relu")
        x = net.act(net.gemm(x, 4096, 4096), "relu")
        x = net.gemm(x, 4096, 1000)
    return _classifier_output(net, x)


_VGG_CFG = {
    "vgg11": [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "vgg16": [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M",
              512, 512, 512, "M"],
}


def _vgg(net, size=224, cfg="vgg11"):
    x = _image_input(net, size)
    c, s = 3, size
    with net.scope("features"):
        for v in _VGG_CFG[cfg]:
            if v == "M":
                x, s = net.maxpool(x, 2, 2), s // 2
            else:
                x, c = net.act(net.conv(x, c, v, 3, bias=True), "relu"), v
    with net.scope("classifier"):
        x = net.flatten(x)
        x = net.act(net.gemm(x, c * s * s, 4096), "relu")
        x = net.act(net.gemm(x, 4096, 4096), "relu")
        x = net.gemm(x, 4096, 1000)
    return _classifier_output(net, x)


# ------------------------------------------------------------------------------------------------
# ResNets
def _basic_block(net, x, cin, cout, stride):
    y = net.cba(x, cin, cout, 3, stride)
    y = net.bn(net.conv(y, cout, cout, 3), cout, gamma=0.2)
    if stride != 1 or cin != cout:
        with net.scope("downsample"):
            x = net.bn(net.conv(x, cin, cout, 1, stride), cout)
    return net.act(net.op("Add", [y, x]), "relu")


def _bottleneck(net, x, cin, width, stride, expansion=4, groups=1):
    cout = width * expansion
    y = net.cba(x, cin, width, 1)
    y = net.cba(y, width, width, 3, stride, g=groups)
    y = net.bn(net.conv(y, width, cout, 1), cout, gamma=0.2)
    if stride != 1 or cin != cout:
        with net.scope("downsample"):
            x = net.bn(net.conv(x, cin, cout, 1, stride), cout)
    return net.act(net.op("Add", [y, x]), "relu")


def _resnet(net, size=224, layers=(2, 2, 2, 2), bottleneck=False, width=64):
    x = _image_input(net, size)
    x = net.maxpool(net.cba(x, 3, 64, 7, 2), 3, 2, p=1)
    cin = 64
    for i, (n, planes) in enumerate(zip(layers, (width, width * 2, width * 4, width * 8))):
        for j in range(n):
            stride = 2 if (i > 0 and j == 0) else 1
            with net.scope(f"layer{i + 1}.{j}"):
                if bottleneck:
                    x = _bottleneck(net, x, cin, planes, stride)
                    cin = planes * 4
                else:
                    x = _basic_block(net, x, cin, planes, stride)
                    cin = planes
    x = net.flatten(net.gap(x))
    return _classifier_output(net, net.gemm(x, cin, 1000))


def _resnet_cifar(net, size=32, n=3):
    x = _image_input(net, size)
    x = net.cba(x, 3, 16, 3)
    cin = 16
    for i, planes in enumerate((16, 32, 64)):
        for j in range(n):
            with net.scope(f"layer{i + 1}.{j}"):
                x = _basic_block(net, x, cin, planes, 2 if (i > 0 and j == 0) else 1)
            cin = planes
    x = net.flatten(net.gap(x))
    return _classifier_output(net, net.gemm(x, 64, 10))


def _regnet_x(net, size=224, widths=(32, 64, 160, 400), depths=(1, 2, 7, 12), group_width=16):
    x = _image_input(net, size)
    with net.scope("stem"):
        x = net.cba(x, 3, 32, 3, 2)
    cin = 32
    for i, (w, d) in enumerate(zip(widths, depths)):
        for j in range(d):
            stride = 2 if j == 0 else 1
            with net.scope(f"trunk_output.block{i + 1}.block{i + 1}-{j}"):
                y = net.cba(x, cin, w, 1)
                y = net.cba(y, w, w, 3, stride, g=w // group_width)
                y = net.bn(net.conv(y, w, w, 1), w, gamma=0.2)
                if stride != 1 or cin != w:
                    with net.scope("proj"):
                        x = net.bn(net.conv(x, cin, w, 1, stride), w)
                x = net.act(net.op("Add", [x, y]), "relu")
            cin = w
    x = net.flatten(net.gap(x))
    return _classifier_output(net, net.gemm(x, cin, 1000))


# ------------------------------------------------------------------------------------------------
# mobile networks
def _mobilenet_v2(net, size=224, width=1.0):
    x = _image_input(net, size)
    cin = _make_divisible(32 * width)
    last = _make_divisible(1280 * max(1.0, width))
    with net.scope("features.0"):
        x = net.cba(x, 3, cin, 3, 2, act="relu6")
    idx = 1
    for t, c, n, s in [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2),
                       (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1)]:
        cout = _make_divisible(c * width)
        for j in range(n):
            stride = s if j == 0 else 1
            hidden = int(round(cin * t))
            with net.scope(f"features.{idx}"):
                y = x
                if t != 1:
                    y = net.cba(y, cin, hidden, 1, act="relu6")
                y = net.cba(y, hidden, hidden, 3, stride, g=hidden, act="relu6")
                y = net.bn(net.conv(y, hidden, cout, 1), cout,
                           gamma=0.2 if (stride == 1 and cin == cout) else 1.0)
                x = net.op("Add", [x, y]) if (stride == 1 and cin == cout) else y
            cin = cout
            idx += 1
    with net.scope(f"features.{idx}"):
        x = net.cba(x, cin, last, 1, act="relu6")
    x = net.flatten(net.gap(x))
    return _classifier_output(net, net.gemm(x, last, 1000))


_MBV3 = {
    "large": ([(16, 3, 16, 16, False, "relu", 1), (16, 3, 64, 24, False, "relu", 2),
               (24, 3, 72, 24, False, "relu", 1), (24, 5, 72, 40, True, "relu", 2),
               (40, 5, 120, 40, True, "relu", 1), (40, 5, 120, 40, True, "relu", 1),
               (40, 3, 240, 80, False, "hswish", 2), (80, 3, 200, 80, False, "hswish", 1),
               (80, 3, 184, 80, False, "hswish", 1), (80, 3, 184, 80, False, "hswish", 1),
               (80, 3, 480, 112, True, "hswish", 1), (112, 3, 672, 112, True, "hswish", 1),
               (112, 5, 672, 160, True, "hswish", 2), (160, 5, 960, 160, True, "hswish", 1),
               (160, 5, 960, 160, True, "hswish", 1)], 1280),
    "small": ([(16, 3, 16, 16, True, "relu", 2), (16, 3, 72, 24, False, "relu", 2),
               (24, 3, 88, 24, False, "relu", 1), (24, 5, 96, 40, True, "hswish", 2),
               (40, 5, 240, 40, True, "hswish", 1), (40, 5, 240, 40, True, "hswish", 1),
               (40, 5, 120, 48, True, "hswish", 1), (48, 5, 144, 48, True, "hswish", 1),
               (48, 5, 288, 96, True, "hswish", 2), (96, 5, 576, 96, True, "hswish", 1),
               (96, 5, 576, 96, True, "hswish", 1)], 1024),
}


def _mobilenet_v3(net, size=224, variant="large"):
    cfg, last_channel = _MBV3[variant]
    x = _image_input(net, size)
    with net.scope("features.0"):
        x = net.cba(x, 3, 16, 3, 2, act="hswish", eps=0.001)
    for i, (cin, k, exp, cout, use_se, act, stride) in enumerate(cfg):
        with net.scope(f"features.{i + 1}"):
            y = x
            if exp != cin:
                y = net.cba(y, cin, exp, 1, act=act, eps=0.001)
            y = net.cba(y, exp, exp, k, stride, g=exp, act=act, eps=0.001)
            if use_se:
                y = net.se(y, exp, _make_divisible(exp // 4), "relu", "hsigmoid")
            res = stride == 1 and cin == cout
            y = net.bn(net.conv(y, exp, cout, 1), cout, gamma=0.2 if res else 1.0, eps=0.001)
            x = net.op("Add", [y, x]) if res else y
    cl = cfg[-1][3]
    with net.scope(f"features.{len(cfg) + 1}"):
        x = net.cba(x, cl, 6 * cl, 1, act="hswish", eps=0.001)
    with net.scope("classifier"):
        x = net.flatten(net.gap(x))
        x = net.act(net.gemm(x, 6 * cl, last_channel), "hswish")
        x = net.gemm(x, last_channel, 1000)
    return _classifier_output(net, x)


def _efficientnet_b0(net, size=224):
    x = _image_input(net, size)
    with net.scope("features.0"):
        x = net.cba(x, 3, 32, 3, 2, act="swish", eps=0.001)
    cin = 32
    stage = 1
    for e, k, s, _cin, cout, n in [(1, 3, 1, 32, 16, 1), (6, 3, 2, 16, 24, 2),
                                    (6, 5, 2, 24, 40, 2), (6, 3, 2, 40, 80, 3),
                                    (6, 5, 1, 80, 112, 3), (6, 5, 2, 112, 192, 4),
                                    (6, 3, 1, 192, 320, 1)]:
        for j in range(n):
            stride = s if j == 0 else 1
            exp = _make_divisible(cin * e)
            with net.scope(f"features.{stage}.{j}"):
                y = x
                if exp != cin:
                    y = net.cba(y, cin, exp, 1, act="swish", eps=0.001)
                y = net.cba(y, exp, exp, k, stride, g=exp, act="swish", eps=0.001)
                y = net.se(y, exp, max(1, cin // 4), "swish", "sigmoid")
                res = stride == 1 and cin == cout
                y = net.bn(net.conv(y, exp, cout, 1), cout, gamma=0.2 if res else 1.0, eps=0.001)
                x = net.op("Add", [y, x]) if res else y
            cin = cout
        stage += 1
    with net.scope(f"features.{stage}"):
        x = net.cba(x, cin, 1280, 1, act="swish", eps=0.001)
    x = net.flatten(net.gap(x))
    return _classifier_output(net, net.gemm(x, 1280, 1000))


def _mnasnet(net, size=224, alpha=1.0):
    d = [_make_divisible(c * alpha, 8) for c in (32, 16, 24, 40, 80, 96, 192, 320)]
    x = _image_input(net, size)
    with net.scope("layers"):
        x = net.cba(x, 3, d[0], 3, 2, eps=1e-5)
        x = net.cba(x, d[0], d[0], 3, g=d[0])
        x = net.bn(net.conv(x, d[0], d[1], 1), d[1])
    cin = d[1]
    for i, (cout, k, s, e, n) in enumerate([(d[2], 3, 2, 3, 3), (d[3], 5, 2, 3, 3),
                                             (d[4], 5, 2, 6, 3), (d[5], 3, 1, 6, 2),
                                             (d[6], 5, 2, 6, 4), (d[7], 3, 1, 6, 1)]):
        for j in range(n):
            stride = s if j == 0 else 1
            with net.scope(f"layers.{8 + i}.{j}"):
                y = net.cba(x, cin, cin * e, 1)
                y = net.cba(y, cin * e, cin * e, k, stride, g=cin * e)
                res = stride == 1 and cin == cout
                y = net.bn(net.conv(y, cin * e, cout, 1), cout, gamma=0.2 if res else 1.0)
                x = net.op("Add", [y, x]) if res else y
            cin = cout
    x = net.cba(x, cin, 1280, 1)
    x = net.op("ReduceMean", [x], axes=[2, 3], keepdims=0)
    return _classifier_output(net, net.gemm(x, 1280, 1000))


def _channel_shuffle(net, x, c, s):
    r = net.op("Reshape", [x, net.const([net.batch, 2, c // 2, s, s])])
    t = net.op("Transpose", [r], perm=[0, 2, 1, 3, 4])
    return net.op("Reshape", [t, net.const([net.batch, c, s, s])])


def _shufflenet_v2(net, size=224, channels=(24, 116, 232, 464, 1024)):
    x = _image_input(net, size)
    with net.scope("conv1"):
        x = net.cba(x, 3, channels[0], 3, 2)
    x = net.maxpool(x, 3, 2, p=1)
    s = -(-size // 2)
    s = (s + 2 - 3) // 2 + 1
    cin = channels[0]
    for i, (n, cout) in enumerate(zip((4, 8, 4), channels[1:4])):
        bf = cout // 2
        for j in range(n):
            with net.scope(f"stage{i + 2}.{j}"):
                if j == 0:
                    s = (s + 2 - 3) // 2 + 1
                    with net.scope("branch1"):
                        b1 = net.bn(net.conv(x, cin, cin, 3, 2, g=cin), cin)
                        b1 = net.cba(b1, cin, bf, 1)
                    with net.scope("branch2"):
                        b2 = net.cba(x, cin, bf, 1)
                        b2 = net.bn(net.conv(b2, bf, bf, 3, 2, g=bf), bf)
                        b2 = net.cba(b2, bf, bf, 1)
                else:
                    x1, x2 = net.op("Split", [x, net.const([bf, bf])], n_out=2, axis=1)
                    b1 = x1
                    with net.scope("branch2"):
                        b2 = net.cba(x2, bf, bf, 1)
                        b2 = net.bn(net.conv(b2, bf, bf, 3, 1, g=bf), bf)
                        b2 = net.cba(b2, bf, bf, 1)
                x = _channel_shuffle(net, net.op("Concat", [b1, b2], axis=1), cout, s)
            cin = cout
    with net.scope("conv5"):
        x = net.cba(x, cin, channels[4], 1)
    x = net.op("ReduceMean", [x], axes=[2, 3], keepdims=0)
    return _classifier_output(net, net.gemm(x, channels[4], 1000))


def _squeezenet1_1(net, size=224):
    x = _image_input(net, size)

    def fire(x, cin, sq, e1, e3):
        s = net.act(net.conv(x, cin, sq, 1, bias=True), "relu")
        a = net.act(net.conv(s, sq, e1, 1, bias=True), "relu")
        b = net.act(net.conv(s, sq, e3, 3, bias=True), "relu")
        return net.op("Concat", [a, b], axis=1)

    with net.scope("features"):
        x = net.act(net.conv(x, 3, 64, 3, 2, p=0, bias=True), "relu")
        x = net.maxpool(x, 3, 2, ceil=True)
        x = fire(x, 64, 16, 64, 64)
        x = fire(x, 128, 16, 64, 64)
        x = net.maxpool(x, 3, 2, ceil=True)
        x = fire(x, 128, 32, 128, 128)
        x = fire(x, 256, 32, 128, 128)
        x = net.maxpool(x, 3, 2, ceil=True)
        x = fire(x, 256, 48, 192, 192)
        x = fire(x, 384, 48, 192, 192)
        x = fire(x, 384, 64, 256, 256)
        x = fire(x, 512, 64, 256, 256)
    with net.scope("classifier"):
        x = net.act(net.conv(x, 512, 1000, 1, bias=True), "relu")
        x = net.flatten(net.gap(x))
    return _classifier_output(net, x)


def _densenet(net, size=224, blocks=(6, 12, 24, 16), growth=32, init=64, bn_size=4):
    x = _image_input(net, size)
    with net.scope("features"):
        x = net.maxpool(net.cba(x, 3, init, 7, 2), 3, 2, p=1)
        c = init
        for b, n in enumerate(blocks):
            feats = [x]
            for j in range(n):
                with net.scope(f"denseblock{b + 1}.denselayer{j + 1}"):
                    cat = feats[0] if len(feats) == 1 else net.op("Concat", feats, axis=1)
                    cc = c + j * growth
                    y = net.conv(net.act(net.bn(cat, cc), "relu"), cc, bn_size * growth, 1)
                    y = net.act(net.bn(y, bn_size * growth), "relu")
                    feats.append(net.conv(y, bn_size * growth, growth, 3))
            x = net.op("Concat", feats, axis=1)
            c = c + n * growth
            if b != len(blocks) - 1:
                with net.scope(f"transition{b + 1}"):
                    x = net.conv(net.act(net.bn(x, c), "relu"), c, c // 2, 1)
                    x = net.avgpool(x, 2, 2)
                c //= 2
        x = net.act(net.bn(x, c), "relu")
    x = net.flatten(net.gap(x))
    return _classifier_output(net, net.gemm(x, c, 1000))


def _googlenet(net, size=224):
    x = _image_input(net, size)

    def bc(x, cin, cout, k, s=1):
        return net.cba(x, cin, cout, k, s, eps=0.001)

    def inception(name, x, cin, c1, c3r, c3, c5r, c5, pp):
        with net.scope(name):
            b1 = bc(x, cin, c1, 1)
            b2 = bc(bc(x, cin, c3r, 1), c3r, c3, 3)
            b3 = bc(bc(x, cin, c5r, 1), c5r, c5, 3)
            b4 = bc(net.maxpool(x, 3, 1, p=1, ceil=True), cin, pp, 1)
            return net.op("Concat", [b1, b2, b3, b4], axis=1), c1 + c3 + c5 + pp

    x = net.maxpool(bc(x, 3, 64, 7, 2), 3, 2, ceil=True)
    x = bc(x, 64, 64, 1)
    x = net.maxpool(bc(x, 64, 192, 3), 3, 2, ceil=True)
    x, c = inception("inception3a", x, 192, 64, 96, 128, 16, 32, 32)
    x, c = inception("inception3b", x, c, 128, 128, 192, 32, 96, 64)
    x = net.maxpool(x, 3, 2, ceil=True)
    x, c = inception("inception4a", x, c, 192, 96, 208, 16, 48, 64)
    x, c = inception("inception4b", x, c, 160, 112, 224, 24, 64, 64)
    x, c = inception("inception4c", x, c, 128, 128, 256, 24, 64, 64)
    x, c = inception("inception4d", x, c, 112, 144, 288, 32, 64, 64)
    x, c = inception("inception4e", x, c, 256, 160, 320, 32, 128, 128)
    x = net.maxpool(x, 2, 2, ceil=True)
    x, c = inception("inception5a", x, c, 256, 160, 320, 32, 128, 128)
    x, c = inception("inception5b", x, c, 384, 192, 384, 48, 128, 128)
    x = net.flatten(net.gap(x))
    return _classifier_output(net, net.gemm(x, c, 1000))


def _unet(net, size=128, base=16, depth=4, n_classes=2):
    x = _image_input(net, size)

    def double(x, cin, cout):
        return net.cba(net.cba(x, cin, cout, 3), cout, cout, 3)

    skips = []
    c = 3
    for i in range(depth):
        with net.scope(f"down{i}"):
            x = double(x, c, base << i)
            c = base << i
            skips.append((x, c))
            x = net.maxpool(x, 2, 2)
    with net.scope("bottleneck"):
        x = double(x, c, base << depth)
        c = base << depth
    for i in reversed(range(depth)):
        skip, sc = skips[i]
        with net.scope(f"up{i}"):
            if i % 2 == 0:
                w = net.param([c, c // 2, 2, 2], math.sqrt(2.0 / (c * 4)))
                x = net.op("ConvTranspose", [x, w, net.param([c // 2], 0.01, prefix="bias")],
                           dilations=[1, 1], group=1, kernel_shape=[2, 2], pads=[0, 0, 0, 0],
                           strides=[2, 2])
            else:
                x = net.op("Resize", [x, "", net.const([1.0, 1.0, 2.0, 2.0], np.float32)],
                           coordinate_transformation_mode="pytorch_half_pixel",
                           cubic_coeff_a=-0.75, mode="linear", nearest_mode="floor")
                x = net.cba(x, c, c // 2, 1)
            x = net.op("Concat", [skip, x], axis=1)
            x = double(x, sc + c // 2, sc)
            c = sc
    x = net.conv(x, c, n_classes, 1, bias=True)
    net.output(x, "mask")
    return net.finish()


def _convnext(net, size=224, depths=(1, 1, 3, 1), dims=(96, 192, 384, 768)):
    x = _image_input(net, size)

    def ln2d(x, c):
        t = net.op("Transpose", [x], perm=[0, 2, 3, 1])
        t = net.layernorm(t, c, eps=1e-6)
        return net.op("Transpose", [t], perm=[0, 3, 1, 2])

    with net.scope("features.0"):
        x = ln2d(net.conv(x, 3, dims[0], 4, 4, p=0, bias=True), dims[0])
    for i, (d, c) in enumerate(zip(depths, dims)):
        if i > 0:
            with net.scope(f"features.{2 * i}"):
                x = net.conv(ln2d(x, dims[i - 1]), dims[i - 1], c, 2, 2, p=0, bias=True)
        for j in range(d):
            with net.scope(f"features.{2 * i + 1}.{j}"):
                y = net.conv(x, c, c, 7, g=c, bias=True)
                y = net.op("Transpose", [y], perm=[0, 2, 3, 1])
                y = net.layernorm(y, c, eps=1e-6)
                y = net.gelu(net.linear(y, c, 4 * c))
                y = net.linear(y, 4 * c, c)
                y = net.op("Transpose", [y], perm=[0, 3, 1, 2])
                y = net.op("Mul", [net.param([c, 1, 1], 0.01, mean=0.1, prefix="layer_scale"), y])
                x = net.op("Add", [y, x])
    with net.scope("classifier"):
        x = ln2d(net.gap(x), dims[-1])
        x = net.gemm(net.flatten(x), dims[-1], 1000)
    return _classifier_output(net, x)


# ------------------------------------------------------------------------------------------------
# transformers
def _bert(net, size=128, layers=2, hidden=128, heads=2, ffn=None, vocab=30522,
          token_types=True, distil=False):
    seq, hd, ffn = size, hidden // heads, ffn or 4 * hidden
    if seq > 512:
        raise ValueError(f"a BERT reads at most 512 tokens (its position table), not {seq}: give --size 512 or less")
    b = net.batch
    ids = net.input("input_ids", TensorProto.INT64, [b, seq])
    mask = net.input("attention_mask", TensorProto.INT64, [b, seq])
    with net.scope("embeddings"):
        x = net.op("Gather", [net.param([vocab, hidden], prefix="word_embeddings.weight"), ids])
        if token_types:
            tt = net.input("token_type_ids", TensorProto.INT64, [b, seq])
            t = net.op("Gather", [net.param([2, hidden], prefix="token_type_embeddings.weight"),
                                  tt])
            x = net.op("Add", [x, t])
        pos = net.op("Gather", [net.param([512, hidden], prefix="position_embeddings.weight"),
                                net.const([list(range(seq))])])
        x = net.op("Add", [x, pos])
        x = net.layernorm(x, hidden, eps=1e-12, decomposed=not distil)
    if distil:
        cond = net.op("Equal", [mask, net.const(0)])
        cond = net.op("Reshape", [cond, net.const([b, 1, 1, seq])])
        cond = net.op("Expand", [cond, net.const([b, heads, seq, seq])])
    else:
        m = net.op("Unsqueeze", [mask, net.const([1])])
        m = net.op("Unsqueeze", [m, net.const([2])])
        m = net.op("Cast", [m], to=TensorProto.FLOAT)
        m = net.op("Sub", [net.const(1.0, np.float32), m])
        m = net.op("Mul", [m, net.const(-10000.0, np.float32)])
    scale = net.const(math.sqrt(hd), np.float32)
    for i in range(layers):
        with net.scope(f"encoder.layer.{i}"):
            with net.scope("attention"):
                q = net.heads(net.linear(x, hidden, hidden), seq, heads, hd, [0, 2, 1, 3])
                k = net.heads(net.linear(x, hidden, hidden), seq, heads, hd, [0, 2, 3, 1])
                v = net.heads(net.linear(x, hidden, hidden), seq, heads, hd, [0, 2, 1, 3])
                if distil:
                    q = net.op("Div", [q, scale])
                    s = net.op("MatMul", [q, k])
                    s = net.op("Where", [cond, net.const(np.finfo(np.float32).min, np.float32), s])
                else:
                    s = net.op("Div", [net.op("MatMul", [q, k]), scale])
                    s = net.op("Add", [s, m])
                p = net.op("Softmax", [s], axis=-1)
                a = net.merge_heads(net.op("MatMul", [p, v]), seq, hidden)
                a = net.linear(a, hidden, hidden)
                x = net.layernorm(net.op("Add", [a, x]), hidden, 1e-12, decomposed=not distil)
            with net.scope("ffn"):
                h = net.gelu(net.linear(x, hidden, ffn))
                h = net.linear(h, ffn, hidden)
                x = net.layernorm(net.op("Add", [h, x]), hidden, 1e-12, decomposed=not distil)
    x = net.output(x, "last_hidden_state")
    if not distil:
        with net.scope("pooler"):
            first = net.op("Gather", [x, net.const(0)], axis=1)
            pooled = net.act(net.gemm(first, hidden, hidden), "tanh")
        net.output(pooled, "pooler_output")
    return net.finish()


def _vit(net, size=224, patch=16, dim=192, depth=12, heads=3, mlp=None):
    x = _image_input(net, size)
    n, hd, mlp, b = (size // patch) ** 2, dim // heads, mlp or 4 * dim, net.batch
    with net.scope("patch_embed"):
        x = net.conv(x, 3, dim, patch, patch, p=0, bias=True, std=0.02)
        x = net.op("Reshape", [x, net.const([b, dim, n])])
        x = net.op("Transpose", [x], perm=[0, 2, 1])
    cls = net.op("Expand", [net.param([1, 1, dim], prefix="cls_token"), net.const([b, 1, dim])])
    x = net.op("Concat", [cls, x], axis=1)
    x = net.op("Add", [x, net.param([1, n + 1, dim], prefix="pos_embed")])
    t = n + 1
    for i in range(depth):
        with net.scope(f"blocks.{i}"):
            with net.scope("attn"):
                y = net.layernorm(x, dim, eps=1e-6)
                qkv = net.op("Reshape", [net.linear(y, dim, 3 * dim),
                                         net.const([b, t, 3, heads, hd])])
                qkv = net.op("Transpose", [qkv], perm=[2, 0, 3, 1, 4])
                q, k, v = [net.op("Squeeze", [s, net.const([0])]) for s in
                           net.op("Split", [qkv, net.const([1, 1, 1])], n_out=3, axis=0)]
                q = net.op("Mul", [q, net.const(hd ** -0.5, np.float32)])
                s = net.op("MatMul", [q, net.op("Transpose", [k], perm=[0, 1, 3, 2])])
                p = net.op("Softmax", [s], axis=-1)
                a = net.merge_heads(net.op("MatMul", [p, v]), t, dim)
                x = net.op("Add", [x, net.linear(a, dim, dim)])
            with net.scope("mlp"):
                y = net.layernorm(x, dim, eps=1e-6)
                y = net.linear(net.gelu(net.linear(y, dim, mlp)), mlp, dim)
                x = net.op("Add", [x, y])
    x = net.layernorm(x, dim, eps=1e-6)
    x = net.op("Gather", [x, net.const(0)], axis=1)
    return _classifier_output(net, net.gemm(x, dim, 1000))


def _gpt2(net, size=128, layers=6, dim=768, heads=12, vocab=50257):
    seq, hd, b = size, dim // heads, net.batch
    if seq > 1024:
        raise ValueError(f"a GPT-2 reads at most 1024 tokens (its position table), not {seq}: give --size 1024 or less")
    ids = net.input("input_ids", TensorProto.INT64, [b, seq])
    x = net.op("Gather", [net.param([vocab, dim], prefix="wte.weight"), ids])
    pos = net.op("Gather", [net.param([1024, dim], 0.01, prefix="wpe.weight"),
                            net.const([list(range(seq))])])
    x = net.op("Add", [x, pos])
    causal = net.const(np.tril(np.ones((seq, seq), dtype=bool))[None, None], bool)
    neg = net.const(np.finfo(np.float32).min, np.float32)
    scale = net.const(math.sqrt(hd), np.float32)
    for i in range(layers):
        with net.scope(f"h.{i}"):
            with net.scope("attn"):
                y = net.layernorm(x, dim)
                qkv = net.linear(y, dim, 3 * dim)
                q, k, v = net.op("Split", [qkv, net.const([dim] * 3)], n_out=3, axis=2)
                q = net.heads(q, seq, heads, hd, [0, 2, 1, 3])
                k = net.heads(k, seq, heads, hd, [0, 2, 3, 1])
                v = net.heads(v, seq, heads, hd, [0, 2, 1, 3])
                s = net.op("Div", [net.op("MatMul", [q, k]), scale])
                s = net.op("Where", [causal, s, neg])
                p = net.op("Softmax", [s], axis=-1)
                a = net.merge_heads(net.op("MatMul", [p, v]), seq, dim)
                x = net.op("Add", [net.linear(a, dim, dim), x])
            with net.scope("mlp"):
                y = net.layernorm(x, dim)
                y = net.linear(net.gelu_tanh(net.linear(y, dim, 4 * dim)), 4 * dim, dim)
                x = net.op("Add", [x, y])
    x = net.layernorm(x, dim)
    x = net.op("MatMul", [x, net.param([dim, vocab], prefix="lm_head.weight")])
    net.output(x, "logits")
    return net.finish()


def _mixer(net, size=224, patch=16, dim=512, depth=8, tokens_mlp=256, channels_mlp=2048):
    x = _image_input(net, size)
    n, b = (size // patch) ** 2, net.batch
    with net.scope("stem"):
        x = net.conv(x, 3, dim, patch, patch, p=0, bias=True, std=0.02)
        x = net.op("Transpose", [net.op("Reshape", [x, net.const([b, dim, n])])], perm=[0, 2, 1])
    for i in range(depth):
        with net.scope(f"blocks.{i}"):
            with net.scope("mlp_tokens"):
                y = net.op("Transpose", [net.layernorm(x, dim, 1e-6)], perm=[0, 2, 1])
                y = net.linear(net.gelu(net.linear(y, n, tokens_mlp)), tokens_mlp, n)
                x = net.op("Add", [x, net.op("Transpose", [y], perm=[0, 2, 1])])
            with net.scope("mlp_channels"):
                y = net.layernorm(x, dim, 1e-6)
                y = net.linear(net.gelu(net.linear(y, dim, channels_mlp)), channels_mlp, dim)
                x = net.op("Add", [x, y])
    x = net.op("ReduceMean", [net.layernorm(x, dim, 1e-6)], axes=[1], keepdims=0)
    return _classifier_output(net, net.gemm(x, dim, 1000))


# ------------------------------------------------------------------------------------------------
# calibration-only networks: they cover the regime of little compute per megabyte of weights
# (late stages at low resolution, batch-1 fully connected layers), where a model that spills out of
# the last-level cache pays most for reading its weights from memory; as `small_convnet(_w)` (the
# same plain stages at 32 px, 1.6 and 3.2 MB working sets), the small models that fix where the
# in-model curves start (the private-cache gate); and, as `mid_convnet(_s)`, `mobilenet_v2_035(_128)`
# and `mnasnet0_5` (8.4 to 22 MB), the mid-sized models whose weights start to leave the cache a
# process gets, which fix the last-level gate's working-set scale
def _lowres_convnet(net, size=48, widths=(96, 192, 384, 576)):
    """Plain conv stages (two 3x3 conv+BN+ReLU each, the first strided) on a small input: the last
    stages run at 6 and 3 px, so their multi-megabyte weights get ~50-200 us of compute per MB."""
    x = _image_input(net, size)
    x = net.maxpool(net.cba(x, 3, 48, 3), 2, 2)
    cin = 48
    for i, c in enumerate(widths):
        with net.scope(f"stage{i + 1}"):
            x = net.cba(x, cin, c, 3, 2 if i else 1)
            x = net.cba(x, c, c, 3)
        cin = c
    x = net.flatten(net.gap(x))
    return _classifier_output(net, net.gemm(x, cin, 100))


def _wide_mlp(net, size=1024, hidden=(2048, 2048, 2048, 1024)):
    """Batch-1 fully connected stack (50 MB of weights): every layer is a matrix-vector product."""
    x = net.input("input", TensorProto.FLOAT, [net.batch, size])
    cin = size
    for i, h in enumerate(hidden):
        x = net.act(net.gemm(x, cin, h), "relu")
        cin = h
    return _classifier_output(net, net.gemm(x, cin, 10))


# ------------------------------------------------------------------------------------------------
# the corpus: name -> (builder, keyword arguments); "size" is the image side or sequence length
_ZOO = {
    "lenet5": (_lenet5, {}),
    "mlp_mnist": (_mlp_mnist, {}),
    "resnet20_cifar": (_resnet_cifar, {}),
    "resnet18": (_resnet, dict(layers=(2, 2, 2, 2))),
    "resnet18_160": (_resnet, dict(size=160, layers=(2, 2, 2, 2))),
    "resnet18_128": (_resnet, dict(size=128, layers=(2, 2, 2, 2))),
    "resnet34": (_resnet, dict(layers=(3, 4, 6, 3))),
    "resnet50": (_resnet, dict(layers=(3, 4, 6, 3), bottleneck=True)),
    "resnet50_160": (_resnet, dict(size=160, layers=(3, 4, 6, 3), bottleneck=True)),
    "resnet101": (_resnet, dict(layers=(3, 4, 23, 3), bottleneck=True)),
    "regnet_x_400mf": (_regnet_x, {}),
    "mobilenet_v2": (_mobilenet_v2, {}),
    "mobilenet_v2_075": (_mobilenet_v2, dict(width=0.75)),
    "mobilenet_v2_050": (_mobilenet_v2, dict(width=0.5)),
    "mobilenet_v2_050_128": (_mobilenet_v2, dict(size=128, width=0.5)),
    "mobilenet_v3_small": (_mobilenet_v3, dict(variant="small")),
    "mobilenet_v3_large": (_mobilenet_v3, dict(variant="large")),
    "efficientnet_b0": (_efficientnet_b0, {}),
    "mnasnet1_0": (_mnasnet, {}),
    "shufflenet_v2_x1_0": (_shufflenet_v2, {}),
    "shufflenet_v2_x0_5": (_shufflenet_v2, dict(channels=(24, 48, 96, 192, 1024))),
    "squeezenet1_1": (_squeezenet1_1, {}),
    "densenet121": (_densenet, {}),
    "googlenet": (_googlenet, {}),
    "alexnet": (_alexnet, {}),
    "vgg11_160": (_vgg, dict(size=160, cfg="vgg11")),
    "vgg16_128": (_vgg, dict(size=128, cfg="vgg16")),
    "unet_small": (_unet, {}),
    "convnext_tiny_d6": (_convnext, {}),
    "bert_tiny": (_bert, dict(layers=2, hidden=128, heads=2)),
    "bert_tiny_s256": (_bert, dict(size=256, layers=2, hidden=128, heads=2)),
    "bert_mini": (_bert, dict(layers=4, hidden=256, heads=4)),
    "bert_mini_s256": (_bert, dict(size=256, layers=4, hidden=256, heads=4)),
    "bert_small": (_bert, dict(layers=4, hidden=512, heads=8)),
    "bert_small_s64": (_bert, dict(size=64, layers=4, hidden=512, heads=8)),
    "bert_base": (_bert, dict(layers=12, hidden=768, heads=12)),
    "distilbert": (_bert, dict(layers=6, hidden=768, heads=12, token_types=False, distil=True)),
    "vit_tiny": (_vit, dict(dim=192, heads=3)),
    "vit_small": (_vit, dict(dim=384, heads=6)),
    "distilgpt2": (_gpt2, {}),
    "mixer_s16": (_mixer, {}),
    "lowres_convnet": (_lowres_convnet, {}),
    "small_convnet": (_lowres_convnet, {"size": 32, "widths": (32, 64, 128)}),
    "small_convnet_w": (_lowres_convnet, {"size": 32, "widths": (48, 96, 192)}),
    "mid_convnet": (_lowres_convnet, {"size": 40, "widths": (64, 128, 256, 384)}),
    "mobilenet_v2_035": (_mobilenet_v2, dict(width=0.35)),
    "mnasnet0_5": (_mnasnet, dict(alpha=0.5)),
    "mobilenet_v2_035_128": (_mobilenet_v2, dict(size=128, width=0.35)),
    "mid_convnet_s": (_lowres_convnet, {"size": 40, "widths": (48, 96, 192, 288)}),
    "wide_mlp": (_wide_mlp, {}),
    # low-resolution variants of FIT architectures: big weights against little compute per run, the
    # regime of 48-96 px inputs the architectures above at their default sizes do not cover
    "resnet18_80": (_resnet, dict(size=80, layers=(2, 2, 2, 2))),
    "shufflenet_v2_x1_0_96": (_shufflenet_v2, dict(size=96)),
    "mobilenet_v2_96": (_mobilenet_v2, dict(size=96)),
    "vit_tiny_64": (_vit, dict(size=64, dim=192, heads=3)),
    "efficientnet_b0_64": (_efficientnet_b0, dict(size=64)),
    "unet_small_48": (_unet, dict(size=48)),
}

#: names accepted by :func:`build`
NAMES = list(_ZOO)

#: the models anything is fitted on (context and overhead models; exact kernel shapes added to sweep
#: plans); every other zoo model and every light model is held out from fitting. The first twelve are
#: architectures; the rest exist for calibration only (little compute per MB of weights, small and
#: mid-sized working sets, low input resolutions: regimes the twelve lack)
FIT = ("lenet5", "resnet18", "resnet50", "mobilenet_v2", "mobilenet_v3_large", "efficientnet_b0", "squeezenet1_1",
       "shufflenet_v2_x1_0", "unet_small", "bert_mini", "bert_small", "vit_tiny", "lowres_convnet", "wide_mlp",
       "small_convnet", "small_convnet_w", "mid_convnet_s", "mid_convnet", "mobilenet_v2_035_128",
       "mobilenet_v2_035", "mnasnet0_5", "resnet18_80", "shufflenet_v2_x1_0_96", "mobilenet_v2_96", "vit_tiny_64",
       "efficientnet_b0_64", "unet_small_48")


def build(name, batch=1, seed=0, size=None):
    """Build zoo model ``name`` as an fp32 opset-17 ModelProto with random weights.

    ``batch`` is the leading input dimension; ``size`` overrides the model's default input
    resolution (pixels per side) or sequence length (tokens); ``seed`` picks the weights.
    """
    if name not in _ZOO:
        raise KeyError(f"unknown zoo model {name!r}; valid names: {', '.join(NAMES)}")
    fn, kwargs = _ZOO[name]
    kwargs = dict(kwargs)
    if size is not None:
        kwargs["size"] = size
    return fn(_Net(name, seed=seed, batch=batch), **kwargs)


# ------------------------------------------------------------------------------------------------
# onnx's shipped light models
def light_dir():
    """The folder with onnx's ``light_*.onnx`` test models (inside the installed onnx package)."""
    return os.path.join(os.path.dirname(onnx.__file__), "backend", "test", "data", "light")


def _weight_role(model):
    """Map a tensor name -> (op_type, input index, node) of its first consumer."""
    role = {}
    for node in model.graph.node:
        for i, name in enumerate(node.input):
            role.setdefault(name, (node.op_type, i, node))
    return role


def _random_weight(rng, block, shape, consumer, consumers_of):
    n = int(np.prod(shape)) if len(shape) else 1
    z = np.resize(np.roll(block, int(rng.integers(_BLOCK))), n).reshape(shape)
    op, idx, node = consumer if consumer else (None, None, None)
    # BatchNormalization inputs: 1 scale, 2 bias, 3 mean, 4 var
    if op == "BatchNormalization":
        if idx == 1:
            return (1.0 + 0.1 * z).astype(np.float32)
        if idx == 4:
            return (1.0 + 0.1 * np.abs(z)).astype(np.float32)
        return (0.02 * z).astype(np.float32)
    if op in ("Conv", "ConvTranspose") and idx == 1 and len(shape) >= 2:
        fan_in = int(np.prod(shape[1:]))
        return (z * np.float32(math.sqrt(2.0 / fan_in))).astype(np.float32)
    if op == "Gemm" and idx == 1 and len(shape) == 2:
        trans_b = any(a.name == "transB" and a.i for a in node.attribute)
        fan_in = shape[1] if trans_b else shape[0]
        return (z * np.float32(1.0 / math.sqrt(fan_in))).astype(np.float32)
    if op == "Unsqueeze":
        # per-channel scale/shift written as Unsqueeze -> Mul / Add
        nxt = consumers_of.get(node.output[0])
        if nxt and nxt[0] == "Mul":
            return (1.0 + 0.1 * z).astype(np.float32)
    if op == "Mul":
        return (1.0 + 0.1 * z).astype(np.float32)
    return (0.01 * z).astype(np.float32)


def convert_light(model, seed=0):
    """Make one light model runnable: ConstantOfShape weights become random initializers.

    The ``*__SHAPE`` inputs are dropped, initializers are removed from the graph inputs, the IR
    version is set to 8; the opset stays as shipped.
    """
    rng = np.random.default_rng(seed)
    block = rng.standard_normal(_BLOCK).astype(np.float32)
    g = model.graph
    inits = {t.name: t for t in g.initializer}
    consumers = _weight_role(model)
    keep_nodes, new_inits = [], []
    for node in g.node:
        if node.op_type == "ConstantOfShape" and node.input and node.input[0] in inits:
            shape = [int(v) for v in numpy_helper.to_array(inits[node.input[0]]).ravel()]
            out = node.output[0]
            arr = _random_weight(rng, block, shape, consumers.get(out), consumers)
            new_inits.append(numpy_helper.from_array(arr, out))
        else:
            keep_nodes.append(node)
    used = {i for n in keep_nodes for i in n.input} | {o.name for o in g.output}
    kept_inits = [t for n, t in inits.items() if n in used]
    init_names = {t.name for t in kept_inits} | {t.name for t in new_inits}
    inputs = [i for i in g.input if i.name not in init_names and i.name in used]
    out = onnx.ModelProto()
    out.CopyFrom(model)
    del out.graph.node[:]
    out.graph.node.extend(keep_nodes)
    del out.graph.initializer[:]
    out.graph.initializer.extend(kept_inits + new_inits)
    del out.graph.input[:]
    out.graph.input.extend(inputs)
    del out.graph.value_info[:]
    out.ir_version = IR_VERSION
    return out


def light_models(seed=0, only=None):
    """Name -> runnable ModelProto for each ``light_*.onnx`` shipped with onnx (``only``: that one).

    Models that fail to convert or to pass the checker are skipped with a logged reason.
    """
    out = {}
    for path in sorted(glob.glob(os.path.join(light_dir(), "light_*.onnx"))):
        name = os.path.basename(path)[:-len(".onnx")]
        if only is not None and name != only:
            continue
        try:
            model = convert_light(onnx.load(path), seed=seed)
            onnx.checker.check_model(model)
            out[name] = model
        except Exception as exc:  # noqa: BLE001 - any failure skips the model
            log.warning("skipping light model %s: %s", name, exc)
    return out
