"""Transformer passes: GELU (erf, tanh, quick, with bias), LayerNorm and RMSNorm from their
decomposed forms, and the residual Add folded into a LayerNorm (SkipLayerNormalization)."""

from __future__ import annotations

import math

from ..workgraph import FusionState, Pass, normalize_axis


def gelu(state: FusionState) -> None:
    """Erf-GELU, x * 0.5 * (1 + Erf(x / sqrt 2)) in either multiplication order, -> one Gelu node.

    Mirrors onnxruntime's GeluFusion (level 1 on CPU).
    """
    for e in list(state.live):
        if not state.is_op(e, "Erf") or e.dead:
            continue
        d = state.producer(e.inputs[0])
        if not state.is_op(d, "Div", "Mul") or state.only_consumer(d.outputs[0]) is not e:
            continue
        k = state.scalar(d.inputs[1])
        if k is None:
            continue
        if d.op != "Div" or abs(k - math.sqrt(2)) > 1e-3:  # ORT does not take Mul(x, 1/sqrt2)
            continue
        x = d.inputs[0]
        a = state.out_single(e)
        if not state.is_op(a, "Add") or state.scalar(state.other_input(a, e.outputs[0]) or "") != 1.0:
            continue
        m1 = state.out_single(a)
        if not state.is_op(m1, "Mul"):
            continue
        other = state.other_input(m1, a.outputs[0])
        members = [d, e, a, m1]
        out_node = None
        m2 = state.out_single(m1)
        if other == x:
            # F1: Mul(Mul(x, 1 + erf), 0.5)
            if state.is_op(m2, "Mul") and state.scalar(state.other_input(m2, m1.outputs[0]) or "") == 0.5:
                members.append(m2)
                out_node = m2
        elif other is not None and state.scalar(other) is None:
            # F2: Mul(Mul(x, 0.5), 1 + erf)
            h = state.producer(other)
            if state.is_op(h, "Mul") and x in h.inputs and state.scalar(state.other_input(h, x) or "") == 0.5 \
                    and state.only_consumer(h.outputs[0]) is m1:
                members.append(h)
                out_node = m1
        if out_node is None:
            continue
        recs = state.members_in_order(members)
        state.new_node(e.name, "Gelu", "com.microsoft", e.rec, [x], out_node.outputs, recs)
        for m in members:
            m.dead = True
        state.reindex()


def _last_axis_reduce(state: FusionState, w) -> bool:
    """Whether reduction ``w`` reduces exactly the last axis of its input."""
    x = state.shape(w.inputs[0])
    if x is None:
        return False
    axes = w.attr("axes")
    if axes is None and len(w.inputs) > 1 and w.inputs[1]:
        v = state.value(w.inputs[1])
        axes = None if v is None else [int(a) for a in v.reshape(-1)]
    return axes is not None and len(axes) == 1 and normalize_axis(axes[0], len(x)) == len(x) - 1


def layernorm(state: FusionState) -> None:
    """Decomposed LayerNorm, ReduceMean -> Sub -> Pow(2) -> ReduceMean -> Add(eps) -> Sqrt -> Div
    [-> Mul(scale) [-> Add(bias)]] over the last axis, -> one LayerNormalization node.

    Mirrors onnxruntime's LayerNormFusion (level 1).
    """
    for r1 in list(state.live):
        if r1.dead or not state.is_op(r1, "ReduceMean") or not _last_axis_reduce(state, r1):
            continue
        x = r1.inputs[0]
        subs = [c for c, _ in state.consumers(r1.outputs[0]) if state.is_op(c, "Sub")]
        if len(subs) != 1 or len(state.consumers(r1.outputs[0])) != 1:
            continue
        s = subs[0]
        if s.inputs[:2] != [x, r1.outputs[0]]:
            continue
        cs = [c for c, _ in state.consumers(s.outputs[0])]
        p = next((c for c in cs if state.is_op(c, "Pow") and state.scalar(c.inputs[1]) == 2.0), None)
        dv = next((c for c in cs if state.is_op(c, "Div")), None)
        if p is None or dv is None or len(cs) != 2:
            continue
        r2 = state.out_single(p)
        if not state.is_op(r2, "ReduceMean") or not _last_axis_reduce(state, r2):
            continue
        ae = state.out_single(r2)
        if not state.is_op(ae, "Add") or state.scalar(state.other_input(ae, r2.outputs[0]) or "") is None:
            continue
        q = state.out_single(ae)
        if not state.is_op(q, "Sqrt") or state.only_consumer(q.outputs[0]) is not dv or \
                dv.inputs[:2] != [s.outputs[0], q.outputs[0]]:
            continue
        members = [r1, s, p, r2, ae, q, dv]
        last = dv
        mu = state.out_single(dv)
        ins = [x]
        if state.is_op(mu, "Mul") and state.const(state.other_input(mu, dv.outputs[0]) or ""):
            members.append(mu)
            last = mu
            ins.append(state.other_input(mu, dv.outputs[0]))
            ad = state.out_single(mu)
            if state.is_op(ad, "Add") and state.const(state.other_input(ad, mu.outputs[0]) or ""):
                members.append(ad)
                last = ad
                ins.append(state.other_input(ad, mu.outputs[0]))
        recs = state.members_in_order(members)
        state.new_node(r1.name, "LayerNormalization", "", r1.rec, ins, last.outputs, recs)
        for m in members:
            m.dead = True
        state.reindex()


def simplified_layernorm(state: FusionState) -> None:
    """RMSNorm, Pow(2) -> ReduceMean -> Add(eps) -> Sqrt -> Div (or Reciprocal -> Mul) -> Mul(scale)
    over the last axis, -> one SimplifiedLayerNormalization node.

    Mirrors onnxruntime's SimplifiedLayerNormFusion (level 2).
    """
    for p in list(state.live):
        if p.dead or not state.is_op(p, "Pow") or state.scalar(p.inputs[1]) != 2.0:
            continue
        x = p.inputs[0]
        r = state.out_single(p)
        if not state.is_op(r, "ReduceMean") or not _last_axis_reduce(state, r):
            continue
        ae = state.out_single(r)
        if not state.is_op(ae, "Add") or state.scalar(state.other_input(ae, r.outputs[0]) or "") is None:
            continue
        q = state.out_single(ae)
        if not state.is_op(q, "Sqrt"):
            continue
        members = [p, r, ae, q]
        nxt = state.out_single(q)
        if state.is_op(nxt, "Div") and nxt.inputs[:2] == [x, q.outputs[0]]:
            members.append(nxt)
            last = nxt
        elif state.is_op(nxt, "Reciprocal"):
            mm = state.out_single(nxt)
            if not state.is_op(mm, "Mul") or state.other_input(mm, nxt.outputs[0]) != x:
                continue
            members += [nxt, mm]
            last = mm
        else:
            continue
        mu = state.out_single(last)
        ins = [x]
        if state.is_op(mu, "Mul") and state.const(state.other_input(mu, last.outputs[0]) or ""):
            members.append(mu)
            ins.append(state.other_input(mu, last.outputs[0]))
            last = mu
        else:
            continue  # ORT requires the scale Mul
        recs = state.members_in_order(members)
        state.new_node(p.name, "SimplifiedLayerNormalization", "com.microsoft", p.rec, ins, last.outputs, recs)
        for m in members:
            m.dead = True
        state.reindex()


def bias_gelu(state: FusionState) -> None:
    """Add(x, 1-D constant bias over the last axis) -> Gelu becomes one BiasGelu node.

    Mirrors onnxruntime's BiasGeluFusion (level 2).
    """
    for g in list(state.live):
        if g.dead or not state.is_op(g, "Gelu"):
            continue
        a = state.producer(g.inputs[0])
        if not state.is_op(a, "Add") or state.only_consumer(a.outputs[0]) is not g:
            continue
        x = state.shape(g.inputs[0])
        for i in (0, 1):
            b = a.inputs[1 - i]
            bs = state.shape(b)
            if state.const(b) and bs is not None and len(bs) == 1 and x and bs[0] == x[-1] and \
                    not state.const(a.inputs[i]):
                g.op = "BiasGelu"
                g.inputs = [a.inputs[i], b]
                g.members = list(a.members) + g.members
                a.dead = True
                break
    state.reindex()


def skip_layernorm(state: FusionState) -> None:
    """A residual Add of two equal 3-D tensors feeding a (Simplified)LayerNormalization over the last
    axis becomes Skip(Simplified)LayerNormalization.

    Mirrors onnxruntime's SkipLayerNormFusion (level 2).
    """
    for ln in list(state.live):
        if ln.dead or not state.is_op(ln, "LayerNormalization", "SimplifiedLayerNormalization"):
            continue
        if ln.op == "LayerNormalization" and ln.rec.op_type == "LayerNormalization":
            xs = state.shape(ln.inputs[0])
            if xs is None or normalize_axis(ln.attr("axis", -1), len(xs)) != len(xs) - 1:
                continue
        a = state.producer(ln.inputs[0])
        if not state.is_op(a, "Add") or a.domain != "" or state.only_consumer(a.outputs[0]) is not ln:
            continue
        s0, s1 = state.shape(a.inputs[0]), state.shape(a.inputs[1])
        if s0 is None or s1 is None or len(s0) != 3 or s0 != s1:
            continue
        if state.const(a.inputs[0]) and state.const(a.inputs[1]):
            continue
        ln.op = "SkipLayerNormalization" if ln.op == "LayerNormalization" else "SkipSimplifiedLayerNormalization"
        ln.domain = "com.microsoft"
        ln.info["skip"] = 1
        ln.inputs = [a.inputs[0], a.inputs[1]] + list(ln.inputs[1:])
        ln.members = list(a.members) + ln.members
        a.dead = True
    state.reindex()


def _const_is(state: FusionState, t, v, tol=1e-6) -> bool:
    """Whether tensor ``t`` is the scalar constant ``v`` (within ``tol`` relative)."""
    x = state.scalar(t) if t else None
    return x is not None and abs(x - v) <= tol * max(1.0, abs(v))


def _mul_by(state: FusionState, w, v):
    """other input of Mul w when one input is the constant v, else None"""
    for i in (0, 1):
        if len(w.inputs) > 1 and _const_is(state, w.inputs[i], v):
            return w.inputs[1 - i]
    return None


def fast_gelu(state: FusionState) -> None:
    """tanh-GELU in onnxruntime's two spellings -> one FastGelu node:
    F1: Mul(x,0.044715) -> Mul(.,x) -> Add(.,1) -> Mul(., Mul(x,0.79788)) -> Tanh -> Add(1) -> Mul(., Mul(x,0.5))
    F2: Pow(x,3) -> Mul(.,0.044715) -> Add(.,x) -> Mul(.,0.79788) -> Tanh -> Add(1) -> Mul(., Mul(x,0.5))

    Mirrors onnxruntime's FastGeluFusion (level 2).
    """
    S2PI = 0.7978845834732056

    def single(w):
        return w is not None and state.out_single(w) is not None

    for t in list(state.live):
        if t.dead or not state.is_op(t, "Tanh") or not single(t):
            continue
        pre = state.producer(t.inputs[0])
        if not state.is_op(pre, "Mul") or not single(pre):
            continue
        members, x = None, None
        # F2: pre = Mul(add1, S2PI)
        add1_t = _mul_by(state, pre, S2PI)
        add1 = state.producer(add1_t) if add1_t else None
        if state.is_op(add1, "Add") and single(add1):
            for i in (0, 1):
                m1 = state.producer(add1.inputs[i])
                if state.is_op(m1, "Mul") and single(m1):
                    pw_t = _mul_by(state, m1, 0.044715)
                    pw = state.producer(pw_t) if pw_t else None
                    if state.is_op(pw, "Pow") and single(pw) and _const_is(state, pw.inputs[1], 3.0) and \
                            add1.inputs[1 - i] == pw.inputs[0]:
                        x = pw.inputs[0]
                        members = [pw, m1, add1, pre]
                        break
        if members is None:
            # F1: pre = Mul(add1, Mul(x, S2PI))
            for i in (0, 1):
                a1 = state.producer(pre.inputs[i])
                m4 = state.producer(pre.inputs[1 - i])
                if not (state.is_op(a1, "Add") and single(a1) and state.is_op(m4, "Mul") and single(m4)):
                    continue
                xx = _mul_by(state, m4, S2PI)
                m2_t = _mul_by(state, a1, 1.0)
                m2 = state.producer(m2_t) if m2_t else None
                if xx is None or not (state.is_op(m2, "Mul") and single(m2)):
                    continue
                for j in (0, 1):
                    m1 = state.producer(m2.inputs[j])
                    if state.is_op(m1, "Mul") and single(m1) and m2.inputs[1 - j] == xx and \
                            _mul_by(state, m1, 0.044715) == xx:
                        x = xx
                        members = [m1, m2, a1, m4, pre]
                        break
                if members:
                    break
        if members is None:
            continue
        a2 = state.out_single(t)
        if not state.is_op(a2, "Add") or _mul_by(state, a2, 1.0) is None and not \
                any(_const_is(state, i, 1.0) for i in a2.inputs if i != t.outputs[0]):
            continue
        m5 = state.out_single(a2)
        if not state.is_op(m5, "Mul") or any(o in state.graph_outputs for o in m5.outputs):
            continue
        m6 = state.producer(state.other_input(m5, a2.outputs[0]) or "")
        if not state.is_op(m6, "Mul") or _mul_by(state, m6, 0.5) != x or state.only_consumer(m6.outputs[0]) is not m5:
            continue
        if state.dtype(x) not in ("float32", "float16"):
            continue
        members += [t, a2, m6, m5]
        recs = state.members_in_order(members)
        state.new_node(t.name, "FastGelu", "com.microsoft", t.rec, [x], m5.outputs, recs)
        for m in members:
            m.dead = True
        state.reindex()


def quick_gelu(state: FusionState) -> None:
    """x * Sigmoid(x), or x * Sigmoid(alpha * x), -> one QuickGelu node.

    Mirrors onnxruntime's QuickGeluFusion (level 2).
    """
    for s in list(state.live):
        if s.dead or not state.is_op(s, "Sigmoid") or s.domain != "":
            continue
        m = state.out_single(s)
        if not state.is_op(m, "Mul"):
            continue
        x = state.other_input(m, s.outputs[0])
        if x is None:
            continue
        members = [s, m]
        if s.inputs[0] != x:
            pre = state.producer(s.inputs[0])
            if not (state.is_op(pre, "Mul") and x in pre.inputs
                    and state.scalar(state.other_input(pre, x) or "") is not None
                    and state.only_consumer(pre.outputs[0]) is s):
                continue
            members.insert(0, pre)
        recs = state.members_in_order(members)
        state.new_node(m.name, "QuickGelu", "com.microsoft", m.rec, [x], m.outputs, recs)
        for mm in members:
            mm.dead = True
        state.reindex()


GELU = Pass("gelu", matches="x * 0.5 * (1 + Erf(x / sqrt 2))", produces=("Gelu",), mirrors="GeluFusion", apply=gelu,
            switches=("gelu",))
LAYERNORM = Pass("layernorm", matches="ReduceMean -> Sub -> Pow(2) -> ReduceMean -> Add(eps) -> Sqrt -> Div "
                 "[-> Mul(scale) [-> Add(bias)]] over the last axis", produces=("LayerNormalization",),
                 mirrors="LayerNormFusion", apply=layernorm, switches=("layernorm",))
SIMPLIFIED_LAYERNORM = Pass("simplified_layernorm", matches="Pow(2) -> ReduceMean -> Add(eps) -> Sqrt -> "
                            "Div | Reciprocal + Mul -> Mul(scale) over the last axis",
                            produces=("SimplifiedLayerNormalization",), mirrors="SimplifiedLayerNormFusion",
                            apply=simplified_layernorm, switches=("simplified_layernorm",))
BIAS_GELU = Pass("bias_gelu", matches="Add(x, 1-D constant bias) -> Gelu", produces=("BiasGelu",),
                 mirrors="BiasGeluFusion", apply=bias_gelu, switches=("bias_gelu",))
SKIP_LAYERNORM = Pass("skip_layernorm", matches="Add(a, b; equal 3-D shapes) -> (Simplified)LayerNormalization",
                      produces=("SkipLayerNormalization", "SkipSimplifiedLayerNormalization"),
                      mirrors="SkipLayerNormFusion", apply=skip_layernorm, switches=("skip_layernorm",))
FAST_GELU = Pass("fast_gelu", matches="tanh-GELU (two spellings)", produces=("FastGelu",), mirrors="FastGeluFusion",
                 apply=fast_gelu, switches=("fast_gelu",))
QUICK_GELU = Pass("quick_gelu", matches="x * Sigmoid([alpha *] x)", produces=("QuickGelu",),
                  mirrors="QuickGeluFusion", apply=quick_gelu, switches=("quick_gelu",))
