"""Transpose passes: a simplified onnxruntime TransposeOptimizer (level 1).

Transpose -> Split moves behind the Split, Transpose -> Squeeze -> Transpose and Transpose ->
Transpose merge into one, and T(p) -> elementwise ops -> T(p^-1) cancels (the elementwise ops then
run in the untransposed layout, which ``info["layout_perm"]`` records for the lowering).
"""

from __future__ import annotations

from ..workgraph import FusionState, Pass, normalize_axis

#: elementwise ops a cancelled transpose pair may enclose
_PUSHABLE = ("Add", "Sub", "Mul", "Div", "Max", "Min", "Relu", "Sigmoid", "Tanh", "Erf", "Sqrt", "Exp", "Log",
             "Abs", "Neg", "Clip", "LeakyRelu", "HardSigmoid", "Cast")


def merge_transposes(state: FusionState) -> None:
    """Transpose -> Transpose merged into one Transpose (an identity result vanishes).

    Mirrors onnxruntime's TransposeOptimizer (its transpose merging).
    """
    changed = True
    while changed:
        changed = False
        for w in state.live:
            if not state.is_op(w, "Transpose") or w.dead:
                continue
            p = state.producer(w.inputs[0])
            if not state.is_op(p, "Transpose") or "perm" not in p.info and p.attr("perm") is None:
                continue
            p1 = p.info.get("perm", p.attr("perm"))
            p2 = w.info.get("perm", w.attr("perm"))
            if p1 is None or p2 is None or len(p1) != len(p2):
                continue
            perm = [int(p1[i]) for i in p2]
            w.inputs[0] = p.inputs[0]
            w.info["perm"] = perm
            w.members = list(w.members)
            if len(state.consumers(p.outputs[0])) == 1 and p.outputs[0] not in state.graph_outputs:
                w.members = list(p.members) + w.members
                p.dead = True
            changed = True
            if perm == list(range(len(perm))) and w.outputs[0] not in state.graph_outputs:
                for c, i in state.consumers(w.outputs[0]):
                    c.inputs[i] = w.inputs[0]
                w.dead = True
                state.eliminated_on.setdefault(w.inputs[0], []).extend(w.members)
            state.reindex()
            break


def cancel_transposes(state: FusionState) -> None:
    """T(p) -> elementwise ops (other inputs constant or T(p) too) -> T(inverse p) cancels; the
    elementwise ops then run in the untransposed layout.

    Mirrors onnxruntime's TransposeOptimizer (pushing through elementwise ops and cancelling), simplified.
    """
    for t2 in list(state.live):
        if t2.dead or not state.is_op(t2, "Transpose") or t2.domain != "":
            continue
        q = t2.info.get("perm", t2.attr("perm"))
        if q is None:
            continue
        q = [int(v) for v in q]
        inv = [q.index(i) for i in range(len(q))]
        chain, sources, ok = [], [], True
        stack = [t2.inputs[0]]
        while stack and ok:
            t = stack.pop()
            p = state.producer(t)
            if p is None:
                ok = False
            elif state.is_op(p, "Transpose") and [int(v) for v in p.info.get("perm", p.attr("perm") or [])] == inv:
                sources.append((p, t))
            elif state.is_op(p, *_PUSHABLE) and p.domain == "" and len([o for o in p.outputs if o]) == 1 \
                    and state.out_single(p) is not None and p not in chain:
                chain.append(p)
                rank = len(q)
                for i in p.inputs:
                    if not i:
                        continue
                    if state.const(i):
                        s = state.shape(i)
                        if s is None or len(s) > rank:
                            ok = False
                    else:
                        stack.append(i)
            else:
                ok = False
        if not ok or not chain or not sources:
            continue
        last = state.producer(t2.inputs[0])
        if state.out_single(last) is not t2:
            continue
        # rewire: chain reads the sources' inputs; T2's consumers read the chain's output
        for p, t in sources:
            for c in chain:
                if t in c.inputs:
                    c.info.setdefault("untransposed", set()).add(p.inputs[0])
                c.inputs = [p.inputs[0] if x == t else x for x in c.inputs]
        for c in chain:
            c.info["layout_perm"] = q  # shapes of this node are its recorded shapes permuted by q
        out = t2.outputs[0]
        if out in state.graph_outputs:
            continue
        for c, i in state.consumers(out):
            c.inputs[i] = last.outputs[0]
        t2.dead = True
        state.alias_shape(last.outputs[0], out)
        state.eliminated_on.setdefault(last.outputs[0], []).extend(t2.members)
        state.reindex()
        for p, t in sources:
            if not state.consumers(t) and t not in state.graph_outputs:
                p.dead = True
                state.eliminated_on.setdefault(p.inputs[0], []).extend(p.members)
        state.reindex()


def push_split(state: FusionState) -> None:
    """Transpose(p) -> Split moves behind the Split (one Transpose per output); a pushed Transpose ->
    Squeeze -> Transpose pair merges into one Transpose.

    Mirrors onnxruntime's TransposeOptimizer (its Split and Squeeze handlers), simplified.
    """
    for t in list(state.live):
        if t.dead or not state.is_op(t, "Transpose") or t.domain != "":
            continue
        sp = state.out_single(t)
        perm = t.info.get("perm", t.attr("perm"))
        xs = state.shape(t.inputs[0])
        if not state.is_op(sp, "Split") or sp.domain != "" or perm is None or xs is None or \
                sp.inputs[0] != t.outputs[0]:
            continue
        perm = [int(v) for v in perm]
        n = len(perm)
        axis = normalize_axis(sp.attr("axis", 0), n)
        sp.info["split_src"] = (t.inputs[0], perm[axis])
        sp.inputs[0] = t.inputs[0]
        first = True
        for i, o in enumerate(list(sp.outputs)):
            if not o:
                continue
            out_shape = state.shape(o)
            if out_shape is None:
                continue
            inv = [perm.index(k) for k in range(n)]
            untransposed = f"{o}/untransposed"
            state.synthetic_shapes[untransposed] = [out_shape[inv[k]] for k in range(n)]
            sp.outputs[i] = untransposed
            pushed = state.new_node(t.name if first else f"{t.name}/{i}", "Transpose", "", t.rec, [untransposed],
                                    [o], t.members if first else [], {"perm": perm})
            pushed.pos = sp.pos + 0.01 * (i + 1)
            first = False
        t.dead = True
        state.reindex()
    # pushed Transpose -> Squeeze -> Transpose: one Transpose behind the Squeeze
    for ti in list(state.live):
        if ti.dead or not state.is_op(ti, "Transpose") or "perm" not in ti.info:
            continue
        sq = state.out_single(ti)
        if not state.is_op(sq, "Squeeze") or sq.inputs[0] != ti.outputs[0]:
            continue
        t3 = state.out_single(sq)
        if not state.is_op(t3, "Transpose") or t3.inputs[0] != sq.outputs[0]:
            continue
        axes = sq.attr("axes")
        if axes is None and len(sq.inputs) > 1 and sq.inputs[1]:
            v = state.value(sq.inputs[1])
            axes = None if v is None else [int(a) for a in v.reshape(-1)]
        p = ti.info["perm"]
        p3 = t3.info.get("perm", t3.attr("perm"))
        us = state.shape(ti.inputs[0])
        if axes is None or p3 is None or us is None:
            continue
        n = len(p)
        axes = [normalize_axis(a, n) for a in axes]
        keep = [j for j in range(n) if j not in axes]
        rem = sorted(set(range(n)) - {p[j] for j in axes})
        final = [rem.index(p[keep[int(m)]]) for m in p3]
        squeezed = f"{sq.outputs[0]}/untransposed"
        state.synthetic_shapes[squeezed] = [us[r] for r in rem]
        sq.inputs[0] = ti.inputs[0]
        sq.outputs = [squeezed]
        t3.inputs[0] = squeezed
        t3.info["perm"] = final
        t3.members = list(ti.members) + t3.members
        ti.dead = True
        state.reindex()


PUSH_SPLIT = Pass("push_split", matches="Transpose -> Split; pushed Transpose -> Squeeze -> Transpose",
                  produces=("Transpose",), mirrors="TransposeOptimizer (Split and Squeeze handlers)",
                  apply=push_split, switches=("transpose_merge",))
MERGE_TRANSPOSES = Pass("merge_transposes", matches="Transpose -> Transpose", produces=("Transpose",),
                        mirrors="TransposeOptimizer (transpose merging)", apply=merge_transposes,
                        switches=("transpose_merge",))
CANCEL_TRANSPOSES = Pass("cancel_transposes", matches="T(p) -> elementwise ops -> T(inverse of p)", produces=(),
                         mirrors="TransposeOptimizer (push through elementwise ops and cancel)",
                         apply=cancel_transposes, switches=("transpose_merge",))
