"""MatMul passes: MatMul + bias Add -> Gemm (level 1); Gemm / MatMul + activation, Transpose of the
last two dims + MatMul, MatMul + scalar Mul / Div -> FusedMatMul, MatMulNBits + bias Add -> MatMulNBits
with a bias (level 2)."""

from __future__ import annotations

from ..workgraph import FLOAT_DTYPES, INT8_PRECISIONS, FusionState, Pass


def matmul_add(state: FusionState) -> None:
    """MatMul(A, B 2-D) + bias Add -> Gemm with a bias; an N-D A runs as Reshape -> Gemm -> Reshape
    (``info["gemm_3d"]``, the lowering adds the Reshapes a neighbour does not absorb).

    Mirrors onnxruntime's MatMulAddFusion (level 1).
    """
    for w in list(state.live):
        if not state.is_op(w, "MatMul") or w.domain != "" or w.info.get("qdq") or len(w.inputs) < 2:
            continue
        c = state.out_single(w)
        if not state.is_op(c, "Add") or c.domain != "":
            continue
        a, b = state.shape(w.inputs[0]), state.shape(w.inputs[1])
        dt = state.dtype(w.inputs[0])
        bias = state.other_input(c, w.outputs[0])
        if a is None or b is None or len(b) != 2 or dt not in FLOAT_DTYPES or bias is None:
            continue
        if state.dtype(bias) != dt:
            continue
        bias_shape = state.shape(bias)
        n = b[1]
        if bias_shape is None:
            continue
        ok = (len(bias_shape) == 1 and bias_shape[0] == n) or (len(a) == 2 and len(bias_shape) == 2 and (
            (bias_shape[0] == 1 and bias_shape[1] == n) or (bias_shape[0] == a[0] and bias_shape[1] in (1, n))))
        if not ok:
            continue
        w.op = "Gemm"
        w.info["bias"] = bias
        w.inputs = list(w.inputs[:2]) + [bias]
        w.info["gemm_3d"] = len(a) != 2
        state.absorb(w, c)
    state.reindex()


def gemm_act(state: FusionState) -> None:
    """A float 2-D Gemm absorbs a following activation in ``gemm_act``; a MatMul, FusedMatMul or N-D
    Gemm one in ``matmul_act`` (GPU epilogues; () on onnxruntime CPU).

    Mirrors onnxruntime's GemmActivationFusion (level 2).
    """
    acts = state.rules.gemm_act
    mm_acts = state.rules.matmul_act
    for w in list(state.live):
        if w.dead or w.info.get("precision") in INT8_PRECISIONS or "act" in w.info:
            continue
        if state.is_op(w, "Gemm") and not w.info.get("gemm_3d"):
            allowed = acts
        elif state.is_op(w, "Gemm", "MatMul", "FusedMatMul"):
            allowed = mm_acts
        else:
            continue
        if not allowed:
            continue
        a = state.out_single(w)
        if not state.act_ok(a, allowed) or a.inputs[0] != w.outputs[0]:
            continue
        w.info["act"] = a.op
        state.absorb(w, a)
    state.reindex()


def _float_matmuls(state: FusionState):
    """Live float MatMul/FusedMatMul nodes (the candidates of the transpose and scale fusions)."""
    for w in list(state.live):
        if w.dead or not state.is_op(w, "MatMul", "FusedMatMul") or w.info.get("precision") in INT8_PRECISIONS:
            continue
        if state.dtype(w.inputs[0]) in FLOAT_DTYPES:
            yield w


def matmul_transpose(state: FusionState) -> None:
    """Transpose(swap of the last two dims) -> float MatMul input becomes FusedMatMul(transA/transB).

    Mirrors onnxruntime's MatmulTransposeFusion (level 2).
    """
    for w in _float_matmuls(state):
        for i in (0, 1):
            t = state.producer(w.inputs[i])
            if not state.is_op(t, "Transpose") or state.only_consumer(t.outputs[0]) is not w:
                continue
            perm = t.info.get("perm", t.attr("perm"))
            xs = state.shape(t.inputs[0])
            if perm is None or xs is None or len(perm) < 2:
                continue
            n = len(perm)
            if list(perm) != list(range(n - 2)) + [n - 1, n - 2]:
                continue
            key = "trans_a" if i == 0 else "trans_b"
            if w.info.get(key):
                continue
            w.info[key] = 1
            w.info["trans_src_" + key] = xs
            w.inputs[i] = t.inputs[0]
            w.op = "FusedMatMul"
            w.members = list(t.members) + w.members
            t.dead = True
        state.reindex()


def matmul_scale(state: FusionState) -> None:
    """A scalar constant Mul / Div on a float MatMul's output or on one of its inputs becomes
    FusedMatMul(alpha).

    Mirrors onnxruntime's MatMulScaleFusion (level 2).
    """
    for w in _float_matmuls(state):
        # output side
        c = state.out_single(w)
        if state.is_op(c, "Mul", "Div") and c.domain == "":
            other = state.other_input(c, w.outputs[0])
            if other is not None and state.scalar(other) is not None and (c.op == "Mul" or c.inputs[0] == w.outputs[0]):
                w.info["scale"] = 1
                w.op = "FusedMatMul"
                state.absorb(w, c)
                state.reindex()
        for i in (0, 1):
            p = state.producer(w.inputs[i])
            if not (state.is_op(p, "Mul", "Div") and p.domain == "" and state.only_consumer(p.outputs[0]) is w):
                continue
            src = p.inputs[0]
            other = p.inputs[1]
            if p.op == "Mul" and state.scalar(src) is not None:
                src, other = other, src
            if state.scalar(other) is None or state.const(src):
                continue
            w.inputs[i] = src
            w.info["scale"] = 1
            w.op = "FusedMatMul"
            w.members = list(p.members) + w.members
            p.dead = True
            state.reindex()


def matmul_nbits_bias(state: FusionState) -> None:
    """com.microsoft MatMulNBits (no bias yet) whose one output edge goes to an Add whose other input has
    shape [N] takes that input as its bias (input 5) and the Add's output.

    Mirrors onnxruntime's MatMulNBitsFusion (level 2, CPU EP; core/optimizer/matmul_nbits_fusion.cc,
    selector BiasFusion): the Add's other operand need not be a constant, only 1-D of length N. An Add
    that a level-2 fusion listed before it took (BiasGelu) is not there any more.
    """
    for w in list(state.live):
        if w.dead or w.op != "MatMulNBits" or w.domain != "com.microsoft":
            continue
        if len(w.inputs) > 5 and w.inputs[5]:
            continue
        c = state.out_single(w)
        if not state.is_op(c, "Add") or c.domain != "":
            continue
        bias = state.other_input(c, w.outputs[0])
        shape = state.shape(bias) if bias is not None else None
        n = w.attr("N")
        if shape is None or n is None or len(shape) != 1 or shape[0] != int(n):
            continue
        w.inputs = list(w.inputs[:5]) + [""] * (5 - len(w.inputs)) + [bias]
        state.absorb(w, c)
    state.reindex()


MATMUL_ADD = Pass("matmul_add", matches="float MatMul(A, B 2-D) -> bias Add", produces=("Gemm",),
                  mirrors="MatMulAddFusion", apply=matmul_add, switches=("matmul_add",))
GEMM_ACTIVATION = Pass("gemm_activation", matches="float Gemm -> activation in rules.gemm_act; MatMul / "
                       "FusedMatMul / N-D Gemm -> activation in rules.matmul_act", produces=("FusedGemm",),
                       mirrors="GemmActivationFusion", apply=gemm_act, switches=("gemm_act", "matmul_act"))
MATMUL_TRANSPOSE = Pass("matmul_transpose", matches="Transpose(last two dims swapped) -> float MatMul",
                        produces=("FusedMatMul",), mirrors="MatmulTransposeFusion", apply=matmul_transpose,
                        switches=("matmul_trans",))
MATMUL_NBITS_BIAS = Pass("matmul_nbits_bias", matches="MatMulNBits -> Add(other input of shape [N])",
                         produces=("MatMulNBits",), mirrors="MatMulNBitsFusion", apply=matmul_nbits_bias)
MATMUL_SCALE = Pass("matmul_scale", matches="scalar constant Mul / Div on a float MatMul's input or output",
                    produces=("FusedMatMul",), mirrors="MatMulScaleFusion", apply=matmul_scale,
                    switches=("matmul_scale",))
