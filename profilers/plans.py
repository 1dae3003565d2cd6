"""Sweep plans: which configs to measure, in priority order.

Shapes are drawn from the layer tables of real architectures (ResNet/VGG/MobileNet/EfficientNet/
RegNet/ShuffleNet-style CNN stages at several input resolutions; BERT/GPT/ViT-style encoders at
several widths and sequence lengths) plus log-spaced grid points and seeded random samples. Every
kind is covered in fp32 and int8 (static QDQ); Conv and MatMul also in dynamic int8; fp16 and every
sparsity level are spot checks (a few dozen configs per kind), because on x86 CPUs the runtime has
no fp16 or sparse kernels to gain from, and the table has to show that by measurement.

Plans: ``quick`` (a few hundred configs: every kind and precision once or more), ``standard``
(tens of thousands, the shipped profile), ``full`` (standard plus a denser random sample), ``zoo``
(the exact fused kernels of the zoo models that fitting may use, fp32 and int8).
"""

from __future__ import annotations

import math
import random

from latency.errors import EmptyPlan, UnknownPlan
from latency.ops import Config, conv_out_shape, get_kind

# ------------------------------------------------------------------------------------------------
# real-architecture layer tables


def _conv(x, cout, k, s=1, g=1, act="none", sm=0, d=1, pad=None):
    pad = (d * (k - 1)) // 2 if pad is None else pad
    return {"x": list(x), "cout": cout, "kernel": [k, k], "strides": [s, s], "pads": [pad] * 4,
            "dilations": [d, d], "group": g, "act": act, "sum": sm}


def _resnet_convs(res: int, widths=(64, 128, 256, 512), bottleneck=True):
    out = []
    h = res // 4
    out.append(_conv([1, 3, res, res], widths[0], 7, 2, act="Relu"))
    cin = widths[0]
    for i, w in enumerate(widths):
        s = 1 if i == 0 else 2
        hs = h if i == 0 else h * 2
        if bottleneck:
            e = w * 4
            out += [_conv([1, cin, hs, hs], w, 1, act="Relu"), _conv([1, w, hs, hs], w, 3, s, act="Relu"),
                    _conv([1, w, h, h], e, 1, sm=1, act="Relu"), _conv([1, w, h, h], e, 1),
                    _conv([1, cin, hs, hs], e, 1, s), _conv([1, e, h, h], w, 1, act="Relu"),
                    _conv([1, w, h, h], w, 3, act="Relu")]
            cin = e
        else:
            out += [_conv([1, cin, hs, hs], w, 3, s, act="Relu"), _conv([1, w, h, h], w, 3, sm=1, act="Relu"),
                    _conv([1, w, h, h], w, 3, act="Relu"), _conv([1, cin, hs, hs], w, 1, s),
                    _conv([1, w, h, h], w, 3)]
            cin = w
        h //= 2 if i < len(widths) - 1 else 1
    return out


def _mbconv(res, chans, act="Clip", ks=(3,), expand=6):
    out = []
    h = res // 2
    out.append(_conv([1, 3, res, res], chans[0], 3, 2, act=act))
    cin = chans[0]
    for i, c in enumerate(chans[1:]):
        s = 2 if i % 2 == 0 else 1
        e = cin * expand
        for k in ks:
            out += [_conv([1, cin, h, h], e, 1, act=act), _conv([1, e, h, h], e, k, s, g=e, act=act),
                    _conv([1, e, h, h], e, k, 1, g=e, act=act)]
            ho = conv_out_shape(_conv([1, e, h, h], e, k, s, g=e))[2]
            out += [_conv([1, e, ho, ho], c, 1), _conv([1, c, ho, ho], c * expand, 1, act=act),
                    _conv([1, c * expand, ho, ho], c, 1)]
            h2 = ho
        # squeeze-excite convs on 1x1 maps
        out += [_conv([1, e, 1, 1], max(8, cin // 4), 1, act="Relu"), _conv([1, max(8, cin // 4), 1, 1], e, 1,
                                                                               act="HardSigmoid")]
        cin, h = c, h2
    return out


def _cnn_convs():
    out = []
    for res in (224, 192, 160, 128, 256, 96):
        out += _resnet_convs(res, bottleneck=True)
        out += _resnet_convs(res, bottleneck=False)
        out += _resnet_convs(res, widths=(32, 64, 128, 256), bottleneck=False)
        out += _mbconv(res, [32, 16, 24, 32, 64, 96, 160, 320])
        out += _mbconv(res, [16, 16, 24, 40, 48, 96], act="Relu", ks=(3, 5))
        out += _mbconv(res, [32, 16, 24, 40, 80, 112, 192, 320], act="none", ks=(3, 5))
        out += _mbconv(res, [16, 8, 16, 24, 32, 56, 80, 160], act="Clip")
    # VGG / AlexNet style
    for res in (224, 160, 112):
        h = res
        cin = 3
        for c in (64, 128, 256, 512, 512):
            out += [_conv([1, cin, h, h], c, 3, act="Relu"), _conv([1, c, h, h], c, 3, act="Relu")]
            cin, h = c, h // 2
        out.append(_conv([1, 3, res, res], 64, 11, 4, act="Relu", pad=2))
    # grouped (RegNet / ResNeXt / ShuffleNet)
    for h, c in ((56, 64), (28, 128), (14, 256), (7, 512), (56, 96), (28, 192), (14, 432), (7, 1008)):
        for g in (c // 8, c // 16, c // 32, 2, 4, 8):
            if g >= 1 and c % g == 0:
                out += [_conv([1, c, h, h], c, 3, 1, g=g, act="Relu"), _conv([1, c, h * 2, h * 2], c, 3, 2, g=g,
                                                                              act="Relu")]
    # dilated (segmentation heads)
    for h, c in ((28, 256), (28, 512), (14, 512), (56, 64)):
        for d in (2, 4):
            out.append(_conv([1, c, h, h], c, 3, d=d, act="Relu"))
    # ConvNeXt depthwise 7x7
    for h, c in ((56, 96), (28, 192), (14, 384), (7, 768), (56, 64), (28, 128)):
        out.append(_conv([1, c, h, h], c, 7, g=c))
    return out


_NICE_C = (3, 8, 16, 24, 32, 40, 48, 64, 80, 96, 112, 128, 144, 160, 192, 240, 256, 320, 384, 480, 512, 576,
           640, 768, 960, 1024, 1280, 2048)
_NICE_H = (7, 8, 14, 16, 28, 32, 56, 64, 112, 128, 224)


def _random_convs(rng: random.Random, n: int):
    out = []
    while len(out) < n:
        cin, cout = rng.choice(_NICE_C[1:]), rng.choice(_NICE_C[1:])
        h = rng.choice(_NICE_H)
        k = rng.choice((1, 1, 3, 3, 3, 5, 7))
        s = rng.choice((1, 1, 1, 2))
        dw = rng.random() < 0.25
        g = cin if dw else rng.choice((1, 1, 1, 1, 2, 4, 8)) if cin % 8 == 0 and cout % 8 == 0 else 1
        if dw:
            cout = cin
        act = rng.choice(("none", "Relu", "Relu", "Clip", "HardSigmoid", "Sigmoid", "LeakyRelu"))
        _keep_conv(out, cin, cout, h, k, s, g, act, int(rng.random() < 0.15 and s == 1 and not dw), 4e8)
    return out


def _keep_conv(out: list, cin, cout, h, k, s, g, act, sm, max_macs) -> None:
    """Append the sampled conv unless its kernel exceeds its input or its work ``max_macs``."""
    macs = cin // g * cout * h * h * k * k / (s * s)
    if h >= k and macs < max_macs:
        out.append(_conv([1, cin, h, h], cout, k, s, g=g, act=act, sm=sm))


def _mm(a, b, const_b=1, bias=0, scale=0, trans_b=0, act="none"):
    return {"a": list(a), "b": list(b), "const_b": const_b, "bias": bias, "scale": scale, "trans_b": trans_b,
            "act": act}


_HIDDEN = ((128, 2), (256, 4), (384, 6), (512, 8), (768, 12), (1024, 16))


def _transformer_matmuls():
    out = []
    for hdim, heads in _HIDDEN:
        ff = 4 * hdim
        d = hdim // heads
        for s in (1, 16, 32, 50, 64, 128, 197, 256, 384, 512):
            out += [_mm([1, s, hdim], [hdim, hdim], bias=1), _mm([1, s, hdim], [hdim, ff], bias=1),
                    _mm([1, s, ff], [ff, hdim], bias=1), _mm([1, s, hdim], [hdim, 3 * hdim], bias=1),
                    _mm([s, hdim], [hdim, hdim], bias=1), _mm([s, hdim], [hdim, ff], bias=1),
                    _mm([s, ff], [ff, hdim], bias=1),
                    _mm([s, hdim], [hdim, hdim], bias=1, trans_b=1), _mm([s, hdim], [ff, hdim], bias=1, trans_b=1),
                    _mm([s, ff], [hdim, ff], bias=1, trans_b=1),
                    _mm([1, heads, s, d], [1, heads, d, s], const_b=0, scale=1),
                    _mm([1, heads, s, d], [1, heads, d, s], const_b=0),
                    _mm([1, heads, s, s], [1, heads, s, d], const_b=0)]
    # big fully-connected layers (VGG/AlexNet heads): memory-bound, hundreds of MB of weights
    for k in (9216, 12544, 18432, 25088):
        for n in (1000, 4096):
            out += [_mm([1, k], [n, k], bias=1, trans_b=1, act="Relu"), _mm([1, k], [n, k], bias=1, trans_b=1)]
    # classifier heads and MLPs
    for k in (256, 512, 768, 1024, 1280, 1536, 2048, 4096):
        for n in (10, 100, 1000, 1024, 4096):
            out += [_mm([1, k], [n, k], bias=1, trans_b=1), _mm([1, k], [k, n], bias=1),
                    _mm([1, k], [n, k], bias=1, trans_b=1, act="Relu")]
    return out


def _random_matmuls(rng: random.Random, n: int):
    out = []
    dims = (16, 32, 64, 96, 128, 192, 256, 320, 384, 512, 640, 768, 1024, 1280, 1536, 2048, 3072, 4096)
    while len(out) < n:
        m = rng.choice((1, 1, 4, 8, 16, 32, 49, 64, 96, 128, 196, 256, 384, 512))
        k, nn = rng.choice(dims), rng.choice(dims)
        if m * k * nn > 3e8 or k * nn > 8e6:
            continue
        r = rng.random()
        if r < 0.25:
            out.append(_mm([m, k], [nn, k], bias=1, trans_b=1, act=rng.choice(("none", "none", "Relu"))))
        elif r < 0.55:
            out.append(_mm([1, m, k], [k, nn], bias=int(rng.random() < 0.8)))
        elif r < 0.75:
            out.append(_mm([m, k], [k, nn], bias=int(rng.random() < 0.5)))
        else:
            h = rng.choice((1, 2, 4, 8, 12, 16))
            dd = rng.choice((16, 32, 64, 128))
            s = rng.choice((8, 16, 32, 64, 128, 256))
            out.append(_mm([1, h, s, dd], [1, h, dd, s], const_b=0, scale=int(rng.random() < 0.5)))
    return out


def _act_shapes():
    cnn = [[1, c, h, h] for c, h in ((64, 112), (64, 56), (128, 28), (256, 14), (512, 7), (16, 112), (32, 112),
                                     (24, 56), (96, 112), (144, 56), (240, 28), (480, 14), (672, 14), (960, 7),
                                     (1024, 14), (2048, 7), (256, 56), (512, 28), (32, 56), (40, 28), (576, 14))]
    seq = [[1, s, h] for h, _ in _HIDDEN for s in (16, 50, 128, 197, 256, 512)]
    ffn = [[1, s, 4 * h] for h, _ in _HIDDEN for s in (50, 128, 197, 256)]
    return cnn, seq, ffn


def _simple_kinds(rng: random.Random):
    """Elementwise, activation, pooling, softmax, norms, data movement: (tier, kind, params)."""
    cnn, seq, ffn = _act_shapes()
    out = []
    shapes = cnn + seq + ffn
    for s in shapes:
        for op in ("Add", "Mul", "Sub", "Div"):
            out.append((1, "Elementwise", {"op": op, "inputs": [s, s], "const_b": 0}))
        for op in ("Sum", "Max", "Min", "Mean"):
            out.append((2, "Elementwise", {"op": op, "inputs": [s, s], "const_b": 0}))
        out.append((2, "Elementwise", {"op": "Where", "inputs": [s, s, s], "const_b": 0}))
        out.append((2, "Elementwise", {"op": "Equal", "inputs": [s, s], "const_b": 0}))
        if len(s) == 4:
            out.append((1, "Elementwise", {"op": "Mul", "inputs": [s, [1, s[1], 1, 1]], "const_b": 0}))
            out.append((1, "Elementwise", {"op": "Add", "inputs": [s, [1, s[1], 1, 1]], "const_b": 1}))
        else:
            out.append((1, "Elementwise", {"op": "Add", "inputs": [s, [s[-1]]], "const_b": 1}))
            out.append((1, "Elementwise", {"op": "Mul", "inputs": [s, [s[-1]]], "const_b": 1}))
            out.append((1, "Elementwise", {"op": "Pow", "inputs": [s, []], "const_b": 1}))
        for op in ("Relu", "Sigmoid", "Clip", "HardSigmoid", "HardSwish", "Tanh", "LeakyRelu", "Erf", "Gelu",
                   "Swish", "Sqrt", "Exp", "Neg", "Reciprocal", "Abs", "Cast"):
            out.append((1, "Activation", {"op": op, "x": s}))
    for s in seq:
        b, sl, h = s
        for heads in (2, 4, 8, 12, 16):
            att = [1, heads, sl, sl]
            out.append((1, "Softmax", {"op": "Softmax", "x": att, "axis": 3}))
            out.append((1, "Elementwise", {"op": "Add", "inputs": [att, [1, 1, 1, sl]], "const_b": 0}))
            out.append((1, "Elementwise", {"op": "Div", "inputs": [att, []], "const_b": 1}))
            if h % heads == 0:
                out.append((1, "Transpose", {"x": [1, sl, heads, h // heads], "perm": [0, 2, 1, 3]}))
                out.append((1, "Transpose", {"x": [1, heads, sl, h // heads], "perm": [0, 2, 1, 3]}))
                out.append((1, "Transpose", {"x": [1, sl, heads, h // heads], "perm": [0, 2, 3, 1]}))
        out.append((1, "LayerNorm", {"x": s, "skip": 0}))
        out.append((1, "LayerNorm", {"x": s, "skip": 1}))
        out.append((1, "Reduce", {"op": "ReduceMean", "x": s, "axes": [2], "keepdims": 1}))
        out.append((1, "Gather", {"data": [30522, h], "indices": [1, sl], "axis": 0}))
        out.append((1, "Gather", {"data": [512, h], "indices": [1, sl], "axis": 0}))
        out.append((2, "Slice", {"op": "Slice", "x": s, "y": [1, 1, h]}))
        out.append((2, "Concat", {"inputs": [[1, 1, h], [1, sl, h]], "axis": 1}))
        out.append((2, "Split", {"x": [1, sl, 3 * h], "axis": 2, "splits": [h, h, h]}))
        out.append((2, "Softmax", {"op": "Softmax", "x": [sl, h], "axis": 1}))
    for s in cnn:
        n, c, h, w = s
        for op, k, st, pad in (("MaxPool", 3, 2, 1), ("MaxPool", 2, 2, 0), ("AveragePool", 2, 2, 0),
                               ("AveragePool", 3, 1, 1), ("MaxPool", 3, 1, 1)):
            out.append((1, "Pool", {"op": op, "x": s, "kernel": [k, k], "strides": [st, st], "pads": [pad] * 4,
                                    "ceil": 0}))
        out.append((1, "Pool", {"op": "MaxPool", "x": s, "kernel": [3, 3], "strides": [2, 2], "pads": [0] * 4,
                                "ceil": 1}))
        for op in ("GlobalAveragePool", "GlobalMaxPool"):
            out.append((1, "Pool", {"op": op, "x": s}))
        out.append((1, "Reduce", {"op": "ReduceMean", "x": s, "axes": [2, 3], "keepdims": 1}))
        out.append((1, "Norm", {"op": "BatchNormalization", "x": s}))
        out.append((2, "Norm", {"op": "InstanceNormalization", "x": s}))
        out.append((2, "Norm", {"op": "LRN", "x": s}))
        out.append((1, "Concat", {"inputs": [s, s], "axis": 1}))
        out.append((1, "Concat", {"inputs": [s, [n, 32, h, w]], "axis": 1}))
        out.append((1, "Concat", {"inputs": [s, s, s, s], "axis": 1}))
        if c % 2 == 0:
            out.append((1, "Split", {"x": s, "axis": 1, "splits": [c // 2, c // 2]}))
            out.append((1, "Transpose", {"x": [n, 2, c // 2, h, w], "perm": [0, 2, 1, 3, 4]}))
            # the same shuffle merged with an NHWC int8 region's transpose back to NCHW (onnxruntime's
            # transpose optimizer; latency.fusion.passes.layout): element by element in the runtime
            out.append((1, "Transpose", {"x": [n, h, w, 2, c // 2], "perm": [0, 4, 3, 1, 2]}))
        out.append((1, "Transpose", {"x": s, "perm": [0, 2, 3, 1]}))
        out.append((1, "Transpose", {"x": [n, h, w, c], "perm": [0, 3, 1, 2]}))
        out.append((1, "Resize", {"op": "Resize", "x": s, "y": [n, c, 2 * h, 2 * w], "mode": "nearest"}))
        out.append((1, "Resize", {"op": "Resize", "x": s, "y": [n, c, 2 * h, 2 * w], "mode": "linear"}))
        out.append((1, "Pad", {"op": "Pad", "x": s, "y": [n, c, h + 2, w + 2], "mode": "constant"}))
        out.append((2, "Pad", {"op": "Pad", "x": s, "y": [n, c, h + 2, w + 2], "mode": "reflect"}))
        out.append((1, "Slice", {"op": "Slice", "x": s, "y": [n, c // 2 or 1, h, w]}))
        out.append((2, "Copy", {"op": "Expand", "x": [n, c, 1, 1], "y": s}))
        if h % 2 == 0:
            out.append((2, "Copy", {"op": "DepthToSpace", "x": [n, c * 4, h // 2, w // 2], "y": [n, c, h, w]}))
            out.append((2, "Copy", {"op": "SpaceToDepth", "x": s, "y": [n, c * 4, h // 2, w // 2]}))
        out.append((1, "Reorder", {"op": "ReorderInput", "x": s}))
        out.append((1, "Reorder", {"op": "ReorderOutput", "x": s}))
        out.append((2, "Quant", {"op": "QuantizeLinear", "x": s}))
        out.append((2, "Quant", {"op": "DequantizeLinear", "x": s}))
        out.append((2, "Quant", {"op": "DynamicQuantizeLinear", "x": s}))
        out.append((2, "Reduce", {"op": "ReduceMax", "x": s, "axes": [1], "keepdims": 1}))
        out.append((2, "Reduce", {"op": "ArgMax", "x": [n, c * h * w // 1000 or 1, 1000], "axes": [2],
                                  "keepdims": 1}))
    # ConvTranspose (decoders, UNet up-sampling)
    for h, c in ((7, 512), (14, 256), (28, 128), (56, 64), (14, 512), (28, 256), (8, 256), (16, 128), (32, 64)):
        for k, s in ((2, 2), (4, 2), (3, 2)):
            pad = 1 if k == 4 else 0
            outp = 1 if k == 3 else 0
            out.append((1, "ConvTranspose", {"x": [1, c, h, h], "cout": c // 2, "kernel": [k, k],
                                             "strides": [s, s], "pads": [pad] * 4, "dilations": [1, 1],
                                             "group": 1, "output_padding": [outp, outp]}))
    return out


def _random_simple(rng: random.Random, n: int):
    out = []
    for _ in range(n):
        if rng.random() < 0.5:
            s = [1, rng.choice(_NICE_C[1:]), *([rng.choice(_NICE_H)] * 2)]
        else:
            s = [1, rng.choice((8, 16, 32, 64, 100, 128, 196, 256, 384, 512)), rng.choice((64, 128, 256, 384, 512,
                                                                                            768, 1024, 2048, 3072))]
        r = rng.random()
        if r < 0.35:
            out.append((3, "Elementwise", {"op": rng.choice(("Add", "Mul", "Sub", "Div")), "inputs": [s, s],
                                           "const_b": 0}))
        elif r < 0.7:
            out.append((3, "Activation", {"op": rng.choice(("Relu", "Sigmoid", "Clip", "HardSwish", "Gelu", "Erf",
                                                            "Tanh", "Swish", "HardSigmoid")), "x": s}))
        elif r < 0.8:
            out.append((3, "Softmax", {"op": "Softmax", "x": s, "axis": len(s) - 1}))
        elif r < 0.9:
            out.append((3, "Transpose", {"x": s, "perm": [0, 2, 1] if len(s) == 3 else [0, 2, 3, 1]}))
        elif len(s) == 3:
            out.append((3, "LayerNorm", {"x": s, "skip": int(rng.random() < 0.5)}))
        else:
            out.append((3, "Concat", {"inputs": [s, s], "axis": 1}))
    return out


def int8_params(kind: str, p: dict) -> dict:
    """In a QDQ graph the activation after a Conv/Gemm is absorbed by the requantization and a
    residual add stays its own (QLinearAdd) kernel: int8 kernels carry neither."""
    if kind in ("Conv", "MatMul"):
        p = dict(p, act="none")
        if kind == "Conv":
            p["sum"] = 0
    return p


def _quant_sizes():
    """Q/DQ kernels at the sizes a QDQ model runs them besides activations: bias vectors, conv and GEMM
    weights a float fallback dequantizes every run, small activations (tier, kind, params)."""
    shapes = [[n] for n in (16, 32, 64, 128, 256, 512, 1024, 2048, 4096)]
    shapes += [[c, c // 4 or 1, 1, 1] for c in (32, 64, 128, 256, 512, 1024)]
    shapes += [[c, 1, k, k] for c in (32, 96, 240, 672) for k in (3, 5)]
    shapes += [[c, c, 3, 3] for c in (16, 64, 256, 512)]
    shapes += [[1, c, h, h] for c, h in ((16, 4), (64, 7), (32, 14), (128, 2), (256, 1), (1280, 1))]
    shapes += [[s, h] for s, h in ((1, 128), (16, 256), (64, 512), (128, 768), (768, 768), (768, 3072))]
    # embedding tables and large weights a float Gather / MatMul reads through a DQ every run, up to a
    # 150k-token vocabulary: a single-op DQ of GPT-2's [50257, 768] table takes what it takes inside the
    # quantized model (5.8 vs 6.0 ms here, AMD EPYC family 26), and a consumer that keeps the output
    # inside the session (a Gather of two rows) changes it by under 8% at every size up to [151936, 896]
    shapes += [[v, h] for v, h in ((30522, 128), (30522, 256), (8192, 1024), (2048, 2048))]
    shapes += [[v, h] for v, h in ((30522, 768), (50257, 768), (32000, 2048), (151936, 896))]
    return [(2, "Quant", {"op": op, "x": x}) for x in shapes for op in ("QuantizeLinear", "DequantizeLinear")]


def _nhwc_int8_pools():
    """int8 MaxPools as they run after an NHWC int8 conv (NhwcMaxPool): stems and mid-network pools."""
    out = []
    for c, h in ((16, 56), (24, 64), (32, 48), (64, 112), (64, 56), (64, 47), (96, 28), (128, 28), (128, 23),
                 (192, 14), (256, 14), (256, 11), (512, 7), (32, 32), (64, 16)):
        for k, st, pad, ceil in ((3, 2, 1, 0), (3, 2, 0, 1), (2, 2, 0, 0), (3, 1, 1, 0)):
            if k <= h:
                out.append((2, "Pool", {"op": "MaxPool", "x": [1, c, h, h], "kernel": [k, k], "strides": [st, st],
                                        "pads": [pad] * 4, "ceil": ceil, "layout": "nhwc"}))
    return out


def _cfgs(tier_kind_params, precision="fp32", sparsity="0"):
    if precision == "int8":
        return [(t, Config(k, int8_params(k, p), precision, sparsity)) for t, k, p in tier_kind_params]
    return [(t, Config(k, p, precision, sparsity)) for t, k, p in tier_kind_params]


def _fine_convs(rng: random.Random, n: int):
    """Convs at channel counts and spatial sizes between the round ones of ``_random_convs``, small
    to mid work: the regime of CIFAR-size networks, narrow pruned layers and late stages, where a
    kernel takes 3-300 us and the round-number grid leaves the regressor extrapolating. Channel
    counts are drawn as networks have them: mostly multiples of 8 (the NCHWc kernels run whole
    8/16-channel blocks, so aligned and unaligned counts differ by up to 2x in speed), a quarter
    arbitrary (pruned layers)."""

    def chans(lo):
        return rng.randint(lo, 160) if rng.random() < 0.25 else 8 * rng.randint(1, 20)

    out = []
    while len(out) < n:
        cin, cout = (3 if rng.random() < 0.05 else chans(3)), chans(4)
        h = rng.randint(4, 64)
        k = rng.choice((1, 3, 3, 3, 5))
        s = rng.choice((1, 1, 1, 2))
        dw = rng.random() < 0.2
        g = cin if dw else 1
        if dw:
            cout = cin
        act = rng.choice(("none", "Relu", "Relu", "Relu", "Clip", "HardSigmoid", "LeakyRelu"))
        _keep_conv(out, cin, cout, h, k, s, g, act, int(rng.random() < 0.2 and s == 1 and not dw), 6e7)
    return out


def _act_convs(rng: random.Random, n: int):
    """Convs with the activations only the blocked (NCHWc) kernels fuse (HardSwish, Swish, Gelu, ...)
    at mobile-network shapes (depthwise, pointwise, small dense), each also without activation.
    The other samplers draw from the common activations only, so the regressor saw these just at
    the FIT models' own shapes. The pairs show what each costs: on a depthwise conv a fused HardSwish
    adds 21% (median), an unfused Swish 27%, Gelu 96%, Softplus 18x the conv."""
    acts = ("HardSwish", "HardSwish", "HardSwish", "Swish", "Gelu", "QuickGelu", "Elu", "Selu", "Softplus",
            "Sigmoid", "Tanh")
    out = []
    while len(out) < n:
        c = rng.randint(3, 160) if rng.random() < 0.2 else 8 * rng.randint(1, 120)
        h = rng.randint(4, 112)
        shape = rng.random()
        if shape < 0.4:  # depthwise
            cin, cout, k, s, g = c, c, rng.choice((3, 3, 5, 7)), rng.choice((1, 1, 2)), c
        elif shape < 0.8:  # pointwise
            cin, cout, k, s, g = c, 8 * rng.randint(1, 120), 1, 1, 1
        else:  # small dense, e.g. a stem
            cin, cout, k, s, g = rng.choice((3, 8, 16, 24, 32)), 8 * rng.randint(1, 12), 3, rng.choice((1, 2)), 1
        act = rng.choice(acts)
        before = len(out)
        _keep_conv(out, cin, cout, h, k, s, g, act, 0, 6e7)
        if len(out) > before:
            _keep_conv(out, cin, cout, h, k, s, g, "none", 0, 6e7)
    return out


# ------------------------------------------------------------------------------------------------
# recurrent layers and LLM operators


def _rnn(op, direction, seq_len, hidden, inp, batch=1, **kw):
    return {"direction": direction, "seq_len": seq_len, "batch": batch, "input_size": inp, "hidden_size": hidden,
            **({"linear_before_reset": kw.get("lbr", 0)} if op == "GRU" else {}),
            **({"act": kw.get("act", "Tanh")} if op == "RNN" else {})}


def _recurrent_items(name: str) -> list[tuple[int, str, dict]]:
    """LSTM / GRU / RNN layers as speech, OCR and language models stack them: the first layer reads
    features (40-256 wide), the next ones the previous layer's hidden state (hidden, or 2 x hidden
    when it was bidirectional); sequence lengths from one step (streaming) to 256."""
    out = []
    if name == "quick":
        for op in ("LSTM", "GRU", "RNN"):
            out += [(0, op, _rnn(op, "forward", 16, 128, 64)), (0, op, _rnn(op, "bidirectional", 64, 256, 256)),
                    (1, op, _rnn(op, "forward", 1, 512, 512))]
        return out
    seqs = (1, 2, 4, 8, 16, 32, 50, 64, 100, 128, 200, 256)
    hiddens = (64, 128, 256, 384, 512, 768, 1024)
    for op in ("LSTM", "GRU", "RNN"):
        for direction in ("forward", "bidirectional"):
            for h in hiddens:
                for i, t in enumerate(seqs):
                    # stacked layer (input = the previous hidden state) on every point; a feature input
                    # (speech: 80 mel bins, OCR: 256-wide CNN features) on every other
                    inp = 2 * h if direction == "bidirectional" and i % 3 == 2 else h
                    out.append((1, op, _rnn(op, direction, t, h, inp)))
                    if i % 2 == 0:
                        out.append((2, op, _rnn(op, direction, t, h, (80, 256, 40)[i // 2 % 3])))
        for h in (128, 256, 512):  # reverse direction and batched utterances: spot checks
            for t in (16, 100):
                out.append((3, op, _rnn(op, "reverse", t, h, h)))
                out.append((3, op, _rnn(op, "bidirectional", t, h, h, batch=4)))
    out += [(3, "GRU", _rnn("GRU", d, t, h, h, lbr=1)) for d in ("forward", "bidirectional") for t in (16, 100)
            for h in (128, 512)]
    out += [(3, "RNN", _rnn("RNN", "forward", t, h, h, act="Relu")) for t in (16, 100) for h in (128, 512)]
    # between the grid's points: real layers have hidden sizes like 200 or 320 and any utterance length
    # (a regressor trained on the grid alone missed a 48-step bidirectional LSTM by 21%)
    rng = random.Random(1818)
    for op in ("LSTM", "GRU", "RNN"):
        for _ in range(150 if name == "standard" else 450):
            h = 16 * rng.randint(2, 64)
            t = int(round(math.exp(rng.uniform(0.0, math.log(300)))))
            direction = rng.choice(("forward", "forward", "bidirectional", "reverse"))
            inp = rng.choice((40, 64, 80, 128, 161, 256, 512, h, h, 2 * h))
            out.append((2, op, _rnn(op, direction, t, h, inp, batch=rng.choice((1, 1, 1, 1, 2, 4)))))
    return out


def _attn(op, seq, past, heads, kv_heads, d, batch=1, kv_len=None, hidden=0, mask=0, causal=0, rotary=0):
    return {"op": op, "batch": batch, "seq_len": seq, "past_len": past, "kv_len": seq if kv_len is None else kv_len,
            "num_heads": heads, "kv_heads": kv_heads, "head_size": d, "qkv_hidden": hidden, "mask": mask,
            "causal": 1 if op == "GroupQueryAttention" else causal, "rotary": rotary}  # GQA is always causal


#: (num_heads, kv_heads, head_size) of small decoder LLMs: Llama-3.2-1B, TinyLlama, Qwen2-0.5B, Phi-3-mini
_GQA_HEADS = ((32, 8, 64), (32, 4, 64), (14, 2, 64), (32, 32, 96))
#: (num_heads, head_size) of encoders and GPT-2/Whisper-style decoders
_MHA_HEADS = ((4, 64), (8, 64), (12, 64), (16, 64), (6, 64))
#: (k, n) of LLM projections (q/o, MLP up/down, small kv, vocabulary head)
_NBITS_KN = ((896, 896), (896, 4864), (4864, 896), (2048, 2048), (2048, 8192), (8192, 2048), (2048, 512),
             (3072, 3072), (3072, 8192), (8192, 3072), (2048, 32000),
             # small decoders (SmolLM-135M: 576 / 1536, TinyStories-size: 256 / 1024, a 1024-wide one / 2816)
             (576, 576), (576, 1536), (1536, 576), (256, 1024), (1024, 256), (1024, 2816), (2816, 1024),
             (576, 16384))


#: vocabulary heads (a decoder's last projection; GPT-2's tied embedding is 768 x 50257), fp32 and 4-bit: no other
#: entry reaches a product this wide, and DistilGPT-2's head (half its time at 16 tokens) was priced by regressors
#: carried from products 15x smaller
_VOCAB_HEADS = ((768, 50257), (1024, 50257))

_NBITS_KN_ENCODER = ((128, 128), (128, 512), (512, 128), (256, 256), (256, 1024), (192, 192), (192, 768),
                     (768, 192), (768, 768), (768, 3072), (3072, 768))


def _llm_items(name: str) -> list[tuple[int, str, dict]]:
    """Attention (prefill: seq_len tokens, no cache; decode: one token over a past_len key/value cache),
    rotary embeddings, 4- and 8-bit MatMulNBits at LLM projection shapes, matmul-like Einsums."""
    out = []
    if name == "quick":
        out += [(0, "Attention", _attn("GroupQueryAttention", 1, 128, 32, 8, 64, rotary=1)),
                (0, "Attention", _attn("GroupQueryAttention", 64, 0, 14, 2, 64)),
                (0, "Attention", _attn("MultiHeadAttention", 1, 64, 12, 12, 64)),
                (0, "Attention", _attn("MultiHeadAttention", 32, 0, 8, 8, 64, causal=1)),
                (0, "Attention", _attn("Attention", 128, 0, 12, 12, 64, hidden=768, mask=1)),
                (1, "Attention", _attn("Attention", 1, 32, 8, 8, 64, hidden=512, causal=1)),
                (0, "RotaryEmbedding", {"x": [1, 16, 2048], "head_size": 64, "rotary_dim": 64, "interleaved": 0}),
                (0, "RotaryEmbedding", {"x": [1, 1, 896], "head_size": 64, "rotary_dim": 64, "interleaved": 0}),
                (0, "MatMulNBits", _nb(1, 2048, 2048, 4, 32, 4)), (0, "MatMulNBits", _nb(16, 896, 4864, 4, 32, 0)),
                (0, "MatMulNBits", _nb(1, 2048, 8192, 8, 128, 4)), (1, "MatMulNBits", _nb(64, 2048, 2048, 4, 128, 4)),
                (0, "Einsum", {"equation": "bhqd,bhkd->bhqk", "inputs": [[1, 12, 128, 64], [1, 12, 128, 64]]}),
                (0, "Einsum", {"equation": "bij,bjk->bik", "inputs": [[4, 64, 128], [4, 128, 64]]}),
                (1, "Einsum", {"equation": "bsh,hd->bsd", "inputs": [[1, 32, 512], [512, 512]]})]
        return out
    pasts = (16, 64, 128, 256, 512, 1024, 2048)
    prompts = (8, 16, 32, 64, 128, 256, 512)
    for nq, nkv, d in _GQA_HEADS:
        for rot in (0, 1):
            out += [(1, "Attention", _attn("GroupQueryAttention", 1, p, nq, nkv, d, rotary=rot)) for p in pasts]
            out += [(1, "Attention", _attn("GroupQueryAttention", s, 0, nq, nkv, d, rotary=rot)) for s in prompts]
        out += [(3, "Attention", _attn("GroupQueryAttention", 4, p, nq, nkv, d)) for p in (64, 512)]
    for nq, d in _MHA_HEADS:
        out += [(1, "Attention", _attn("MultiHeadAttention", 1, p, nq, nq, d)) for p in pasts]
        out += [(1, "Attention", _attn("MultiHeadAttention", s, 0, nq, nq, d, causal=c)) for s in prompts
                for c in (0, 1)]
        out += [(2, "Attention", _attn("MultiHeadAttention", s, 0, nq, nq, d, kv_len=1500)) for s in (1, 16)]
        out += [(1, "Attention", _attn("Attention", s, 0, nq, nq, d, hidden=nq * d, mask=m)) for s in prompts
                for m in (0, 1)]
        out += [(2, "Attention", _attn("Attention", 1, p, nq, nq, d, hidden=nq * d, causal=1)) for p in (16, 128, 512)]
    for hidden, d in ((2048, 64), (896, 64), (3072, 96), (4096, 128)):
        for s in (1, 16, 64, 128, 512):
            out.append((1, "RotaryEmbedding", {"x": [1, s, hidden], "head_size": d, "rotary_dim": d, "interleaved": 0}))
        out.append((2, "RotaryEmbedding", {"x": [1, hidden // d, 128, d], "head_size": d, "rotary_dim": d,
                                           "interleaved": 0}))
        out.append((3, "RotaryEmbedding", {"x": [1, 128, hidden], "head_size": d, "rotary_dim": d // 2,
                                           "interleaved": 1}))
    for k, n in _NBITS_KN:
        for m in (1, 4, 16, 64, 128, 512):
            for blk in (32, 128):
                for acc in (0, 4):
                    out.append((1 if blk == 32 else 2, "MatMulNBits", _nb(m, k, n, 4, blk, acc)))
            out.append((2, "MatMulNBits", _nb(m, k, n, 8, 32, 4)))
            out.append((3, "MatMulNBits", _nb(m, k, n, 4, 32, 4, zp=0)))
            # symmetric (no zero point) at accuracy level 0: MatMulNBitsQuantizer's default output
            out.append((2, "MatMulNBits", _nb(m, k, n, 4, 32, 0, zp=0)))
            if m <= 16 and k * n <= 4096 * 2048:  # 8-bit at accuracy level 0 dequantizes slowly: spot checks
                out.append((4, "MatMulNBits", _nb(m, k, n, 8, 32, 0)))
    # encoder-size projections (BERT-tiny/mini/base, ViT-tiny), where weight-only 4-bit meets small
    # matrices and whole sequences: the LLM shapes above start at 256 x 1024, and a regressor carried
    # down to BERT-tiny's 128 x 128 at 128 tokens priced it 1.5x what the runtime takes
    for k, n in _NBITS_KN_ENCODER:
        for m in (1, 16, 64, 128, 256, 512):
            for blk in (32, 128):
                for acc in (0, 4):
                    for zp in (0, 1):
                        out.append((2, "MatMulNBits", _nb(m, k, n, 4, blk, acc, zp=zp)))
            # with the bias onnxruntime's MatMulNBitsFusion moves in from a following Add (every
            # projection of a BERT or GPT-2 with biases), at the quantizer's default block of 128
            for zp in (0, 1):
                out.append((2, "MatMulNBits", _nb(m, k, n, 4, 128, 0, zp=zp, bias=1)))
    for k, n in _VOCAB_HEADS:
        for m in (1, 16, 64, 128):
            out.append((2, "MatMul", _mm([1, m, k], [k, n])))
            for zp in (0, 1):
                out.append((2, "MatMulNBits", _nb(m, k, n, 4, 128, 0, zp=zp)))
            out.append((3, "MatMulNBits", _nb(m, k, n, 4, 32, 4)))
    for b, h, s, d in ((1, 12, 128, 64), (1, 8, 64, 64), (1, 16, 256, 64), (4, 12, 32, 64), (1, 4, 512, 32)):
        out += [(1, "Einsum", {"equation": "bhqd,bhkd->bhqk", "inputs": [[b, h, s, d], [b, h, s, d]]}),
                (1, "Einsum", {"equation": "bhqk,bhkd->bhqd", "inputs": [[b, h, s, s], [b, h, s, d]]})]
    for m, k, n in ((128, 768, 768), (64, 512, 2048), (256, 256, 256), (32, 1024, 1024)):
        out += [(1, "Einsum", {"equation": "bij,bjk->bik", "inputs": [[1, m, k], [1, k, n]]}),
                (1, "Einsum", {"equation": "ij,jk->ik", "inputs": [[m, k], [k, n]]}),
                (2, "Einsum", {"equation": "bsh,hd->bsd", "inputs": [[1, m, k], [k, n]]}),
                (2, "Einsum", {"equation": "ij,kj->ik", "inputs": [[m, k], [n, k]]})]
    return out


def _nb(m, k, n, bits, blk, acc, zp=1, bias=0):
    return {"m": m, "k": k, "n": n, "bits": bits, "block_size": blk, "accuracy_level": acc, "zero_point": zp,
            "bias": bias}


def _sequence_items(name: str) -> list[tuple[int, Config]]:
    """Recurrent layers (fp32; LSTM also dynamic int8, as DynamicQuantizeLSTM) and LLM operators (fp32)."""
    rec = _recurrent_items(name)
    items = _cfgs(rec) + _cfgs(_llm_items(name))
    lstm = [(t + 1, k, p) for t, k, p in rec if k == "LSTM"]
    items += _cfgs(lstm if name == "quick" else lstm[::2], "int8_dynamic")
    # the int8 form of the transformer optimizer's Attention (QAttention, from quantize_dynamic)
    attn = [(t, k, p) for t, k, p in _llm_items(name) if k == "Attention" and p["op"] == "Attention"
            and not p["past_len"]]
    items += _cfgs(attn, "int8_dynamic")
    emb = _embed_items(name)
    items += _cfgs(emb) + _cfgs(emb, "int8")
    return items


def _embed_items(name: str) -> list[tuple[int, str, dict]]:
    """BERT embeddings as the transformer optimizer fuses them (EmbedLayerNormalization), at encoder
    widths and sequence lengths, with and without segment ids and mask."""
    hs = (256, 768) if name == "quick" else (128, 256, 384, 512, 768, 1024)
    ss = (16, 128) if name == "quick" else (8, 16, 32, 64, 128, 256, 384, 512)
    out = []
    for h in hs:
        for s in ss:
            out.append((1, "EmbedLayerNorm", {"batch": 1, "seq_len": s, "hidden": h, "segment": 1, "mask": 1}))
        out.append((2, "EmbedLayerNorm", {"batch": 1, "seq_len": 128, "hidden": h, "segment": 0, "mask": 1}))
        out.append((2, "EmbedLayerNorm", {"batch": 4, "seq_len": 128, "hidden": h, "segment": 1, "mask": 1}))
        out.append((3, "EmbedLayerNorm", {"batch": 1, "seq_len": 128, "hidden": h, "segment": 1, "mask": 0}))
    return out


def _plan_items(name: str) -> list[tuple[int, Config]]:
    rng = random.Random(1234)
    convs = _cnn_convs()
    mms = _transformer_matmuls()
    simple = _simple_kinds(rng)
    if name == "quick":
        rq = random.Random(7)
        convs = rq.sample(convs, 24)
        mms = rq.sample(mms, 16)
        by_kind: dict = {}
        for t, k, p in simple:
            by_kind.setdefault(k, []).append((t, k, p))
        simple = [x for v in by_kind.values() for x in rq.sample(v, min(4, len(v)))]
        rand_convs, rand_mms, rand_simple = [], [], []
    else:
        n_mult = 1 if name == "standard" else 3
        rand_convs = _random_convs(rng, 4000 * n_mult)
        rand_mms = _random_matmuls(rng, 2500 * n_mult)
        rand_simple = _random_simple(rng, 2000 * n_mult)
    items = _cfgs([(0, "Conv", p) for p in convs]) + _cfgs([(0, "MatMul", p) for p in mms])
    items += _cfgs([x for x in simple if x[1] != "Quant"])
    items += _cfgs([x for x in simple if x[1] == "Quant"], "int8")
    if name != "quick":
        items += _cfgs(_quant_sizes(), "int8") + _cfgs(_nhwc_int8_pools(), "int8")
    items += _cfgs([(2, "Conv", p) for p in rand_convs]) + _cfgs([(2, "MatMul", p) for p in rand_mms])
    if name != "quick":  # float convs on run-time weights (QDQ fallbacks) over the same spread of shapes
        items += _cfgs([(3, "Conv", runtime_weight_params(p)) for p in rand_convs[::2] + convs[::2]])
    if name != "quick":  # its own seed: the samples above stay what they were
        items += _cfgs([(2, "Conv", p) for p in _fine_convs(random.Random(4321), 2000 * n_mult)])
        items += _cfgs([(2, "Conv", p) for p in _act_convs(random.Random(8765), 1000 * n_mult)])
    items += _cfgs(rand_simple)
    # int8 static QDQ: every kind; Conv/MatMul widely, others as the same shapes
    items += _cfgs([(1, "Conv", p) for p in convs], "int8") + _cfgs([(1, "MatMul", p) for p in mms if p["const_b"]],
                                                                    "int8")
    q_simple = [(t + 1, k, p) for t, k, p in simple if k not in ("Reorder", "Quant")]
    items += _cfgs(q_simple[:: (1 if name != "standard" else 2)], "int8")
    items += _cfgs([(4, "Conv", p) for p in rand_convs[::3]], "int8")
    # int8 convs whose weights have a non-zero zero point (the runtime's own WeightBiasQuantization of a
    # float conv between a DQ and a Q, or a file quantized asymmetric): the same shapes, another kernel path
    if name != "quick":
        items += _cfgs([(5, "Conv", asym_weight_params(p)) for p in convs[::2] + rand_convs[::9]], "int8")
    items += _cfgs([(4, "MatMul", p) for p in rand_mms[::3] if p["const_b"]], "int8")
    # products of two activations (attention scores and context): quantize_static quantizes them too, and the
    # int8 kernel packs its B operand on every run where a constant B is packed once
    if name != "quick":
        items += _cfgs([(4, "MatMul", p) for p in mms + rand_mms[::3] if not p["const_b"] and not p["scale"]], "int8")
    # dynamic int8: MatMul with constant untransposed B, and some Conv
    items += _cfgs([(2, "MatMul", p) for p in mms if p["const_b"] and not p["trans_b"]], "int8_dynamic")
    items += _cfgs([(3, "Conv", p) for p in convs[::6]], "int8_dynamic")
    if name != "quick":  # dynamic int8 convs over the random spread too (the grid alone: ~300 shapes)
        items += _cfgs([(4, "Conv", p) for p in rand_convs[1::5]], "int8_dynamic")
    # fp16 and sparsity: spot checks measured, never assumed
    spot = random.Random(99)
    by_kind = {}
    for t, k, p in simple:
        by_kind.setdefault(k, []).append(p)
    n_spot = 3 if name == "quick" else 12
    for k, ps in by_kind.items():
        if k in ("Reorder", "Quant"):
            continue
        items += _cfgs([(2, k, p) for p in spot.sample(ps, min(n_spot, len(ps)))], "fp16")
    items += _cfgs([(2, "Conv", p) for p in spot.sample(convs, 3 if name == "quick" else 40)], "fp16")
    items += _cfgs([(2, "MatMul", p) for p in spot.sample(mms, 3 if name == "quick" else 30)], "fp16")
    sp_convs = spot.sample(convs, 2 if name == "quick" else 30)
    sp_mms = spot.sample([p for p in mms if p["const_b"]], 2 if name == "quick" else 25)
    for sp in ("50", "75", "90", "95", "2:4"):
        items += _cfgs([(1, "Conv", p) for p in sp_convs], "fp32", sp)
        items += _cfgs([(1, "MatMul", p) for p in sp_mms], "fp32", sp)
        items += _cfgs([(2, "Conv", p) for p in sp_convs[:8]], "int8", sp)
        items += _cfgs([(2, "MatMul", p) for p in sp_mms[:8]], "int8", sp)
    items += _sequence_items(name)
    return items


def model_kernels(models, target, precisions=("fp32",), uncovered: list | None = None) -> list[Config]:
    """The exact kernels (after the target's fusion rules) of ONNX models, as configs to measure.

    ``models``: paths, bytes or ModelProtos. Conv and MatMul kernels are also planned in each extra
    precision of ``precisions`` that their kind supports. ``uncovered``: a list that receives
    ``(model index, Uncovered)`` for every node no kernel can measure (unknown op or domain, attributes
    no runtime executes); they are left out of the plan.
    """
    from latency.fusion import Uncovered, fuse
    from latency.graph import load_graph
    from latency.ops import config_problem

    rules = target.fusion_rules()
    out = []
    for i, m in enumerate(models):
        kernels, unc = fuse(load_graph(m), rules)
        if uncovered is not None:
            uncovered += [(i, u) for u in unc]
        for k in kernels:
            if get_kind(k.kind).free:
                continue
            why = config_problem(k.config.key)
            if why:
                if uncovered is not None:
                    uncovered += [(i, Uncovered(n, t, why)) for n, t in zip(k.nodes or (k.name,), k.op_types)]
                continue
            out.append(k.config)
            if k.precision == "fp32" and k.kind in ("Conv", "MatMul"):
                out += [Config(k.kind, int8_params(k.kind, k.params) if p == "int8" else k.params, p, k.sparsity)
                        for p in precisions if p != "fp32" and p in get_kind(k.kind).precisions]
    return out


def _zoo_items(target=None) -> list[tuple[int, Config]]:
    """Kernels of the zoo's FIT models (the models fitting is allowed to see), fused as ``target``
    fuses them (the NCHWc block decides which convs and reorders exist)."""
    from latency.targets import get_target

    from . import zoo

    target = target if target is not None else get_target("x86-avx2-ort")
    cfgs = model_kernels([zoo.build(n) for n in zoo.FIT], target, ("fp32", "int8"))
    items = [(0 if c.precision == "fp32" else 1, c) for c in cfgs]
    # the same convs with weights computed at run time: the float fallback of a QDQ conv whose int8
    # unit the runtime refuses (its weights come from a DequantizeLinear every run)
    items += [(2, Config("Conv", runtime_weight_params(c.params), "fp32")) for c in cfgs
              if c.kind == "Conv" and c.precision == "fp32" and not c.params.get("runtime_w")]
    # the int8 convs with an asymmetric weight: a node left out of quantization between quantized
    # neighbours, whose float weight the runtime quantizes itself (WeightBiasQuantization)
    items += [(3, Config("Conv", asym_weight_params(c.params), "int8")) for c in cfgs
              if c.kind == "Conv" and c.precision == "int8" and not c.params.get("wzp")]
    return items


def runtime_weight_params(p: dict) -> dict:
    """A conv's params as the float fallback of a refused QDQ unit runs it: weights computed at run
    time; the activation before the Q is dropped as redundant (ReluQuantFusion, ClipQuantFusion)."""
    return {**p, "runtime_w": 1, "act": "none", "sum": 0}


def asym_weight_params(p: dict) -> dict:
    """An int8 conv's params with a weight of non-zero zero point (``wzp``): the runtime runs it through
    its int8 kernel's zero-point path (1.1-1.6x the symmetric kernel on the AVX-512 hosts measured)."""
    return {**p, "wzp": 1}


PLANS = ("quick", "standard", "full", "zoo")


def plan(name: str, ops: list[str] | None = None, precisions: list[str] | None = None,
         target=None) -> list[Config]:
    """The plan's configs, deduplicated, in measuring order (highest priority first).

    ``ops`` restricts to op kinds (validated against the registry); ``precisions`` likewise.
    ``target`` matters to the ``zoo`` plan only: its kernels are fused by that target's rules.
    """
    if name not in PLANS:
        raise UnknownPlan(name, PLANS)
    if ops:
        for k in ops:
            get_kind(k)
    from latency.ops import PRECISIONS

    unknown = [p for p in precisions or () if p not in PRECISIONS]
    if unknown:
        raise EmptyPlan(f"unknown precision {unknown[0]!r}; valid: {', '.join(PRECISIONS)}")
    items = _zoo_items(target) if name == "zoo" else _plan_items(name)
    seen, out = set(), []
    rng = random.Random(5)
    rng.shuffle(items)
    items.sort(key=lambda t: t[0])
    for _, c in items:
        if ops and c.kind not in ops:
            continue
        if precisions and c.precision not in precisions:
            continue
        h = c.hash
        if h in seen:
            continue
        seen.add(h)
        out.append(c)
    if not out:
        raise EmptyPlan(f"plan {name!r} with ops={ops or 'all'} precisions={precisions or 'all'} names no config")
    return out
