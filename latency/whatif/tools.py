"""The precisions a plan prices by running the compression tool itself: ``fp16`` (onnxconverter-common's
``convert_float_to_float16(model, keep_io_types=True, node_block_list=[...])``) and ``int4-weight``
(onnxruntime's ``MatMulNBitsQuantizer`` with its defaults: 4 bits, block size 128, asymmetric,
``accuracy_level`` unset; MatMuls with a constant 2-D weight become ``com.microsoft:MatMulNBits``).

A candidate in one of these precisions is converted by the real tool (node names in, a ModelProto
out), loaded and estimated whole by :meth:`latency.Estimator.estimate`: its price is by construction
the plain estimate of the file the tool writes (Cast kernels at every fp16/fp32 boundary, MatMulNBits
kernels, whatever the target's fusion rules make of them). This is a full estimate per distinct
candidate (cached), not the table arithmetic of the int8 families, and these precisions have no codes
in the matrix form. A precision whose kernels the target's profile cannot price (e.g. no MatMulNBits
measurements) is refused with one line naming what is valid, never priced as fp32.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

TOOL_PRECISIONS = ("fp16", "int4-weight")
TOOLS = {"fp16": "onnxconverter_common.float16.convert_float_to_float16 (keep_io_types=True, node_block_list)",
         "int4-weight": "onnxruntime.quantization.matmul_nbits_quantizer.MatMulNBitsQuantizer (defaults: 4 bits, "
                        "block_size 128, asymmetric)"}
_KEYS = {"precision", "fp32_nodes", "nodes"}


def claims(choice) -> bool:
    """Whether a dict choice asks for fp16 or int4-weight (on the whole model or on any node)."""
    if not isinstance(choice, dict):
        return False
    if choice.get("precision") in TOOL_PRECISIONS:
        return True
    nodes = choice.get("nodes")
    return isinstance(nodes, dict) and any(isinstance(s, dict) and s.get("precision") in TOOL_PRECISIONS
                                           for s in nodes.values())


@dataclass(frozen=True)
class ToolCandidate:
    precision: str
    nodes: frozenset       # the nodes the tool converts
    kept: tuple            # what the tool is told to leave alone (node_block_list / nodes_to_exclude)


class ToolPath:
    """fp16 / int4-weight candidates of one plan: validated, converted with the tool, estimated, cached."""

    def __init__(self, plan, source, shapes=None, batch=None):
        self.plan = plan
        self.source = source
        self.shapes, self.batch = shapes, batch
        self._proto = None
        self._cache: dict = {}
        #: (precision, nodes) -> why the target's runtime refuses the file the tool wrote ("" where it loads)
        self._unloadable: dict = {}
        self._checked: dict = {}

    # -- the model the tools read ----------------------------------------------------------------
    def proto(self):
        if self._proto is None:
            import onnx

            from ..errors import LatencyError

            src = self.source
            if src is None:
                src = getattr(self.plan.graph, "path", None)
            if src is None:
                from .plan import InvalidChoice

                raise InvalidChoice("fp16 and int4-weight are priced by converting the model file with the tool: "
                                    "prepare the plan from a path or ModelProto, not a loaded graph")
            try:
                if isinstance(src, onnx.ModelProto):
                    self._proto = src
                elif isinstance(src, (bytes, bytearray)):
                    self._proto = onnx.load_from_string(bytes(src))
                else:
                    self._proto = onnx.load(str(src))
            except Exception as e:  # noqa: BLE001
                raise LatencyError(f"cannot read the model for the fp16/int4-weight tools: {e}") from None
        return self._proto

    def candidates(self, precision: str) -> list:
        """Node names the tool can convert, in graph order."""
        g = self.plan.graph
        if precision == "fp16":
            return [r.name for r in g.ops]
        out = []
        for r in g.ops:
            if r.op_type != "MatMul" or len(r.inputs) < 2 or r.inputs[1] is None:
                continue
            w = r.inputs[1].name
            if w in g.const_values and g.producer(w) is None:
                shape = getattr(r.inputs[1], "shape", None)
                if shape is None or len(shape) == 2:
                    out.append(r.name)
        return out

    # -- choices ---------------------------------------------------------------------------------
    def parse(self, choice: dict) -> ToolCandidate:
        from .plan import PRECISIONS, InvalidChoice

        bad = set(choice) - _KEYS
        if bad:
            also = sorted(bad & {"sparsity", "prune"})
            raise InvalidChoice(f"{'/'.join(also)} cannot be combined with fp16 or int4-weight in one candidate; valid "
                                f"with them: precision, fp32_nodes, nodes (precision only)" if also else
                                f"unknown choice key(s) {sorted(bad)}; valid: precision, fp32_nodes, sparsity, prune, "
                                "nodes")
        precs = set()
        top = choice.get("precision", "fp32")
        if top != "fp32":
            precs.add(top)
        fp32_nodes = choice.get("fp32_nodes") or ()
        if isinstance(fp32_nodes, (str, bytes)) or not isinstance(fp32_nodes, (list, tuple, set, frozenset)):
            raise InvalidChoice(f"fp32_nodes is a list of node names, not {type(fp32_nodes).__name__} "
                                f"({str(fp32_nodes)[:60]!r})")
        per_node = choice.get("nodes") or {}
        if not isinstance(per_node, dict):
            raise InvalidChoice(f"nodes is a dict of node name -> setting (precision), not {type(per_node).__name__}")
        per = {}
        for n, spec in per_node.items():
            if not isinstance(spec, dict):
                raise InvalidChoice(f"the setting of node {n!r} is a dict (precision, sparsity, prune)")
            extra = set(spec) - {"precision"}
            if extra:
                raise InvalidChoice(f"node {n!r}: {sorted(extra)} cannot be combined with fp16 or int4-weight; valid "
                                    "with them: precision")
            p = spec.get("precision", top)
            if p not in PRECISIONS + TOOL_PRECISIONS:
                raise InvalidChoice(f"unknown precision {p!r}; valid: {', '.join(PRECISIONS + TOOL_PRECISIONS)}")
            per[n] = p
            if p != "fp32":
                precs.add(p)
        if len(precs) > 1:
            raise InvalidChoice(f"the choice mixes {' and '.join(sorted(precs))}: one model gets one reduced precision "
                                "(the tools convert a model one way); pick one")
        prec = precs.pop()
        self.check(prec)
        cands = self.candidates(prec)
        can = set(cands)
        for n in list(fp32_nodes) + list(per):
            if n not in can:
                self._bad_node(n, prec, cands)
        on = set(cands) if top == prec else set()
        on -= set(fp32_nodes)
        for n, p in per.items():
            if p == prec:
                on.add(n)
            else:
                on.discard(n)
        kept = tuple(n for n in cands if n not in on)
        if prec == "fp16":
            miss = self.fp16_missing(on)
            if miss:
                kind, node = miss
                raise InvalidChoice(f"target {self.plan.estimator.target.name} has no fp16 data for {kind} kernels "
                                    f"(e.g. node {node!r}); valid: keep them fp32 (fp32_nodes) or another precision: "
                                    f"{', '.join(['fp32'] + list(self.plan.families))}")
        return ToolCandidate(prec, frozenset(on), kept)

    def fp16_kinds(self):
        """Kernel kinds the target's profile has fp16 measurements for (None: no profile to ask)."""
        k = self.__dict__.get("_fp16_kinds", False)
        if k is False:
            est = self.plan.estimator
            k = None
            if getattr(est, "profile_path_", None):
                k = {kind for (kind, p) in est.data_groups() if p == "fp16"}
            self._fp16_kinds = k
        return k

    def fp16_missing(self, on):
        """(kind, node) of the first plain-model kernel holding a node switched to fp16 whose kind has no
        fp16 measurements on the target, or None. On a runtime that runs fp16 as fp32 kernels between
        Casts the price comes from the converted graph, but a kind never measured in fp16 is not claimed."""
        have = self.fp16_kinds()
        if have is None:
            return None
        for k in self.plan.baseline.kernels:
            if k.kind in ("Free",) or k.kind in have:
                continue
            for n in k.nodes:
                if n in on:
                    return k.kind, n
        return None

    def _bad_node(self, name, prec, cands):
        from .plan import InvalidChoice

        what = "node" if prec == "fp16" else "MatMul with a constant 2-D weight"
        close = [c for c in cands if name.lower() in c.lower()][:5] or cands[:8]
        raise InvalidChoice(f"no {what} {name!r} in this model for {prec}; valid: {', '.join(close)}"
                            + (", ..." if len(cands) > len(close) else "") + f" ({len(cands)} in all)")

    def check(self, prec: str) -> None:
        """Refuse ``prec`` when the target cannot price the kernels the tool's whole-model conversion
        makes (nodes uncovered that the plain model prices), in one line naming what is valid."""
        from .plan import InvalidChoice

        why = self._checked.get(prec)
        if why is None:
            valid = ["fp32"] + list(self.plan.families) + [p for p in TOOL_PRECISIONS if p != prec
                                                           and self._checked.get(p) in (None, "")]
            if prec == "fp16" and self.plan._on_gpu:
                # TensorRT's builder picks each layer's precision itself: with --fp16 every layer may run fp16,
                # without it the converted fp16 layers run as fp32; a per-node fp16 choice has no build to price
                # (the whole model in fp16 is the builder's precision: Plan._evaluate_builder)
                why = (f"on {self.plan.estimator.target.name} fp16 is the builder's whole-model precision: ask "
                       "{'precision': 'fp16'} alone (latency estimate --precision fp16); per-node choices there: "
                       "int8 with fp32_nodes (explicit Q/DQ placement)")
            elif prec == "fp16" and self.fp16_kinds() is not None and not self.fp16_kinds():
                why = (f"target {self.plan.estimator.target.name} has no fp16 measurements in its profile; valid: "
                       f"{', '.join(valid)}")
            elif prec == "int4-weight" and not self.candidates(prec):
                why = (f"int4-weight converts MatMuls with a constant 2-D weight; this model has none; valid: "
                       f"{', '.join(valid)}")
            else:
                est = self._estimate(prec, frozenset(self.candidates(prec)), tuple(), check=False)
                before = {(u.op_type, u.reason) for u in self.plan.baseline.uncovered}
                # one op per reason: a kernel's nodes share its reason and its own op comes first (the
                # bias Add inside a MatMulNBits is not an Add kernel)
                first = {}
                for u in est.uncovered:
                    if (u.op_type, u.reason) not in before:
                        first.setdefault(u.reason, u.op_type)
                new = sorted(set(first.values()))
                why = ""
                if new:
                    why = (f"target {self.plan.estimator.target.name} has no data for {prec} ({', '.join(new)} "
                           f"kernels unpriced by its profile); valid: {', '.join(valid)}")
            self._checked[prec] = why
        if why:
            raise InvalidChoice(why)

    def available(self, prec: str) -> bool:
        try:
            self.check(prec)
            return True
        except Exception:  # noqa: BLE001
            return False

    # -- converting and pricing ------------------------------------------------------------------
    def convert(self, prec: str, on: frozenset, kept: tuple):
        """The ModelProto the tool writes for this candidate."""
        from ..errors import LatencyError

        import copy

        src = self.proto()
        if kept:
            names = {n.name for n in src.graph.node}
            lost = [n for n in kept if n not in names]
            if lost:
                from .plan import InvalidChoice

                raise InvalidChoice(f"node {lost[0]!r} has no such name in the model file, and the tool's "
                                    f"{'node_block_list' if prec == 'fp16' else 'nodes_to_exclude'} matches names: "
                                    f"name the model's nodes, or convert the whole model")
        m = copy.deepcopy(src)  # the fp16 converter changes the model it is given
        if prec == "fp16":
            try:
                from onnxconverter_common import float16
            except ImportError:
                raise LatencyError("pricing fp16 needs onnxconverter-common (pip install 'latency[whatif]', or "
                                   "pip install onnxconverter-common)") from None
            import warnings

            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                try:
                    return float16.convert_float_to_float16(m, keep_io_types=True,
                                                            node_block_list=list(kept) or None)
                except ValueError as e:  # the tool refuses a model it has converted before
                    from .plan import InvalidChoice

                    why = " ".join(str(e).split())
                    raise InvalidChoice(f"--precision fp16: the tool refuses this model ({why}); price the fp32 "
                                        "model it came from") from None
        try:
            from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer
        except ImportError as e:
            raise LatencyError(f"pricing int4-weight needs onnxruntime's MatMulNBitsQuantizer, which needs onnx-ir ({e}): "
                             "pip install 'latency[whatif]', or pip install onnx-ir") from None
        log = logging.getLogger("onnxruntime.quantization.matmul_nbits_quantizer")
        level = log.level
        log.setLevel(logging.WARNING)
        try:
            q = MatMulNBitsQuantizer(m, nodes_to_exclude=list(kept))
            q.process()
        finally:
            log.setLevel(level)
        return q.model.model

    def _estimate(self, prec, on, kept, check=True):
        key = (prec, on)
        e = self._cache.get(key)
        if e is None:
            if check:
                self.check(prec)
            from ..graph import load_graph

            e = self.plan.estimator.estimate(load_graph(self.convert(prec, on, kept), shapes=self.shapes,
                                                        batch=self.batch))
            self._cache[key] = e
        if check:
            before = {(u.op_type, u.reason) for u in self.plan.baseline.uncovered}
            new = [u for u in e.uncovered if (u.op_type, u.reason) not in before]
            if new:
                from .plan import InvalidChoice

                raise InvalidChoice(f"target {self.plan.estimator.target.name} has no data for the {prec} model's "
                                    f"{new[0].op_type} kernel {new[0].node!r} ({new[0].reason}); valid: keep its nodes "
                                    f"fp32 or another precision: {', '.join(['fp32'] + list(self.plan.families))}")
        return e

    def estimate(self, choice: dict):
        c = self.parse(choice)
        return c, self._estimate(c.precision, c.nodes, c.kept)

    def evaluate(self, choice: dict):
        """A :class:`~latency.whatif.plan.WhatIf` for a fp16 / int4-weight choice."""
        from .plan import WhatIf, _wmb

        c, est = self.estimate(choice)
        base = self.plan.baseline
        key = (c.precision, c.nodes)
        if key not in self._unloadable:  # one runtime session per candidate answered, not per one priced
            self._unloadable[key] = _runtime_refuses(self.plan.estimator.target,
                                                     self.convert(c.precision, c.nodes, c.kept))
        changes = _kernel_changes(est, base, self.plan.node_order)
        desc = {n: {"precision": c.precision} for n in self.candidates(c.precision) if n in c.nodes}
        notes = [f"priced by converting with {TOOLS[c.precision]} and estimating the written model whole"]
        why = self._unloadable[key]
        if why:
            notes.append(f"the file the tool writes for this choice does not load in the target's runtime ({why}): "
                         "the price is of a model that cannot run as converted")
        return WhatIf(est, self.plan.baseline_ms, c.precision, desc, tuple(changes), tuple(c.kept) if c.nodes else (),
                      float(sum(_wmb(k.key) for k in est.kernels if k.source != "free")),
                      float(sum(_wmb(k.key) for k in base.kernels if k.source != "free")), tuple(notes))

    def single(self, prec: str, units: list):
        """Per unit name: the change of the total (ms) when only that node takes ``prec`` (NaN where it
        cannot); all NaN when the target has no data for ``prec``."""
        import numpy as np

        from .plan import InvalidChoice

        out = np.full(len(units), np.nan)
        if not self.available(prec):
            return out
        can = self.candidates(prec)
        cs = set(can)
        for i, u in enumerate(units):
            if u in cs and (prec != "fp16" or self.fp16_missing({u}) is None):
                on = frozenset([u])
                try:
                    out[i] = self._estimate(prec, on, tuple(n for n in can if n != u)).total_ms - self.plan.baseline_ms
                except InvalidChoice:
                    pass
        return out


def _runtime_refuses(target, model) -> str:
    """Why onnxruntime (a CPU target's runtime, installed here) refuses to load ``model``: its first error
    line, or "" where it loads or the target runs something else. onnxconverter-common can write an fp16
    file whose types do not check (a float32 constant left beside an fp16 input)."""
    if getattr(target, "runtime", "") != "onnxruntime" or getattr(target, "device", "cpu") != "cpu":
        return ""
    try:
        import onnxruntime as ort
    except ImportError:
        return ""
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    so.log_severity_level = 4
    try:
        ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
    except Exception as e:  # noqa: BLE001 - whatever the runtime says, reported as it says it
        return f"onnxruntime {ort.__version__}: " + (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
    return ""


def _origin(name: str) -> str:
    return name[:-3] if name.endswith("_Q4") else name


def _kernel_changes(est, base, order: dict) -> list:
    """Kernels that differ from the plain model's, each under the first original node (graph order) it
    covers (inserted kernels under their own name), with the in-model us now and before."""
    def groups(e):
        d: dict = {}
        for k in e.kernels:
            nodes = [o for o in (_origin(n) for n in k.nodes) if o in order]
            key = min(nodes, key=order.__getitem__) if nodes else k.name
            v = d.setdefault(key, [0.0, []])
            v[0] += k.latency_us
            v[1].append(k.name)
        return d

    a, b = groups(est), groups(base)
    out = []
    for key in sorted(set(a) | set(b), key=lambda n: (order.get(n, -1), n)):
        now, was = a.get(key, [0.0, []]), b.get(key, [0.0, []])
        if abs(now[0] - was[0]) >= 0.05 or now[1] != was[1]:
            out.append({"owner": key, "delta_us": now[0] - was[0], "kernels": now[1], "kernels_before": was[1]})
    return out
