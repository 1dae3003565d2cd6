"""The overhead model: what a whole run adds to the sum of its kernels' prices.

Terms (fitted by ``latency calibrate`` on whole models measured end to end, see
docs/how-it-works.md): a per-run cost, a per-kernel cost for short and for long kernels, a cost
per MB of weights streamed from memory, and one for big low-intensity convolutions.
:class:`OverheadModel` owns them with one versioned file layout (``NAME.overhead.json``);
:func:`overhead_us` applies them to priced kernels, :func:`fit_overhead` fits them.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from .ops import Config

#: the layout version :meth:`OverheadModel.save` writes (1: per_short/per_long kernel terms)
FORMAT = 1

#: kernels counted in the per-kernel overhead (free ops that the runtime still dispatches)
_DISPATCHED_FREE = ("Reshape", "Flatten", "Squeeze", "Unsqueeze")


class OverheadModel:
    """A fitted overhead model: its terms (us, us per kernel, us per MB) and where they came from.

    Read-only once built; the mapping-style ``get`` reads a term or a rule by name."""

    def __init__(self, terms: dict | None = None, path=None):
        self.terms = _normalise(dict(terms or {}))
        self.path = str(path) if path else None
        self.terms.setdefault("source", f"fitted: {Path(path).name}" if path else
                              "none (no end-to-end fit for this target)")

    @classmethod
    def none(cls) -> "OverheadModel":
        """No overhead: kernels are summed as they are."""
        return cls({"per_run_us": 0.0, "per_short_kernel_us": 0.0, "per_long_kernel_us": 0.0, "short_us": 0.0})

    @classmethod
    def load(cls, path) -> "OverheadModel":
        """Read ``path`` (any layout a calibration has written), refusing a malformed file in one line."""
        from .context import read_json_file

        d = read_json_file(path, "overhead model")
        d.setdefault("source", f"fitted: {Path(path).name}")
        _check_overhead(d, path)
        return cls(d, path)

    @classmethod
    def fit(cls, estimates, measured_us, **kw) -> "OverheadModel":
        """Fit the terms on ``estimates`` (Estimate objects priced with no overhead) against
        ``measured_us`` (their end-to-end latencies); ``kw`` as :func:`fit_overhead`."""
        return cls(fit_overhead(estimates, measured_us, **kw))

    def save(self, path) -> Path:
        """Write the model in the current layout (atomically: a reader never sees half a file)."""
        path = Path(path)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps({"format": FORMAT, **self.terms}, indent=1))
        tmp.replace(path)
        return path

    def us(self, kernels, gate: float = 1.0) -> float:
        """What the model adds to ``kernels`` (priced KernelEstimates) at last-level cache gate ``gate``, us."""
        return overhead_us(kernels, self.terms, gate)

    @property
    def source(self) -> str:
        return self.terms.get("source", "")

    def get(self, name, default=None):
        return self.terms.get(name, default)

    def __getitem__(self, name):
        return self.terms[name]

    def __contains__(self, name) -> bool:
        return name in self.terms

    def __bool__(self) -> bool:
        return any(self.terms.get(k) for k in _OVERHEAD_NUMBERS)

    def __repr__(self) -> str:
        return f"OverheadModel({self.source!r})"


def _normalise(d: dict) -> dict:
    """One layout: a single per-kernel term (the older AVX2 calibration) is the same cost for short
    and long kernels, with every kernel counted long (the same count as dispatched_count)."""
    d = {k: v for k, v in d.items() if k != "format"}
    if "per_long_kernel_us" not in d and "per_kernel_us" in d:
        d["per_short_kernel_us"] = d["per_long_kernel_us"] = d.pop("per_kernel_us")
        d["short_us"] = 0.0
    return d


def overhead_us(kernels, ov, gate: float = 1.0) -> float:
    """What the overhead model ``ov`` (a fitted ``<profile>.overhead.json``) adds to the sum of
    ``kernels`` (priced :class:`KernelEstimate` s) in a model with last-level cache gate ``gate``, us."""
    if not kernels:
        return 0.0
    if "per_long_kernel_us" in ov:
        _, wmb = _overhead_terms(kernels, ov.get("weights"), gate)
        return (ov.get("per_run_us", 0.0)
                + kernel_terms_us(kernels, ov["per_short_kernel_us"], ov["per_long_kernel_us"], ov.get("short_us", 0.0))
                + ov.get("per_weight_mb_us", 0.0) * wmb
                + ov.get("per_lowint_conv_mb_us", 0.0) * lowint_conv_mb(kernels, ov.get("lowint_conv"), gate))
    if ov.get("per_run_us") or ov.get("per_kernel_us") or ov.get("per_weight_mb_us"):
        n_disp, wmb = _overhead_terms(kernels, ov.get("weights"), gate)
        return (ov.get("per_run_us", 0.0) + ov.get("per_kernel_us", 0.0) * n_disp
                + ov.get("per_weight_mb_us", 0.0) * wmb)
    return 0.0


#: the numbers an overhead model may hold (us, us per kernel, us per MB)
_OVERHEAD_NUMBERS = ("per_run_us", "per_kernel_us", "per_weight_mb_us", "per_short_kernel_us", "per_long_kernel_us",
                     "short_us", "per_lowint_conv_mb_us")


def _check_overhead(d: dict, path) -> None:
    """ProfileError naming ``path`` when the overhead model ``d`` holds what no fit writes: a term that
    is not a finite number, a rule that is not an object, or anything :func:`overhead_us` cannot apply."""
    from .estimator import KernelEstimate

    from .errors import ProfileError

    bad = [k for k in _OVERHEAD_NUMBERS if k in d and (isinstance(d[k], bool) or not isinstance(d[k], (int, float))
                                                       or not math.isfinite(d[k]))]
    bad += [k for k in ("weights", "lowint_conv") if d.get(k) is not None and not isinstance(d[k], dict)]
    if not bad:
        probe = Config("Conv", {"x": [1, 64, 28, 28], "cout": 64, "kernel": [3, 3], "strides": [1, 1],
                                "pads": [1, 1, 1, 1], "dilations": [1, 1], "group": 1, "act": "none", "sum": 0})
        ks = [KernelEstimate("probe", "Conv", ("Conv",), ("probe",), "fp32", "0", us, "table", key=probe.key,
                             isolated_us=us) for us in (5.0, 500.0)]
        try:
            v = overhead_us(ks, d, 0.5)
            if not math.isfinite(v):
                bad.append("(the overhead it gives is not finite)")
        except (TypeError, ValueError, KeyError, AttributeError, IndexError, ArithmeticError) as e:
            bad.append(f"(applying it fails: {type(e).__name__}: {e})")
    if bad:
        raise ProfileError(f"overhead model {path} is malformed: {', '.join(bad)} (terms must be finite numbers, rules "
                           "objects); the file is corrupt or was edited by hand; recalibrate or pass overhead=False")


def _overhead_terms(kernels, weights_rule: dict | None = None, gate: float = 1.0) -> tuple[float, float]:
    """(dispatched kernel count, weight megabytes) of priced kernels: the regressors of the overhead.

    ``weights_rule`` None: every weight-like operand counts (profiles calibrated before the rule
    existed). Otherwise only constant weights that stream from memory in a model: a kernel whose own
    weights exceed ``cap_mb`` (the last-level cache) streams them when timed alone too, so they do
    not count; with ``gated``, the sum is scaled by the model's cache gate (0 when the whole model
    stays in cache between runs).
    """
    from .estimator import _weight_mb_all, weight_mb

    n = dispatched_count(kernels)
    if not weights_rule:
        return float(n), sum(_weight_mb_all(k.key) for k in kernels if k.source != "free" and k.key)
    cap = weights_rule.get("cap_mb") or float("inf")
    w = sum(x for x in (weight_mb(k.key) for k in kernels if k.source != "free" and k.key) if x < cap)
    return float(n), w * (gate if weights_rule.get("gated") else 1.0)


def lowint_conv_mb(kernels, rule: dict | None, gate: float = 1.0) -> float:
    """Weight megabytes of the convolutions that ``rule`` calls big and low-intensity, times ``gate``:
    weights of at least ``min_weight_mb`` (the core's private cache) and below ``cap_mb`` (the
    last-level cache), and less than ``max_us_per_mb`` of time alone per MB of weights. Inside a
    model such a kernel waits for its weights (in the kernel pairs: ~60 us per MB more than alone,
    against 20-35 for most kernels), where compute hides the fetch of the others."""
    from .estimator import weight_mb

    if not rule:
        return 0.0
    lo, cap, knee = rule["min_weight_mb"], rule.get("cap_mb") or float("inf"), rule["max_us_per_mb"]
    total = 0.0
    for k in kernels:
        if k.kind != "Conv" or k.source == "free" or not k.key or k.isolated_us is None:
            continue
        w = weight_mb(k.key)
        if lo <= w < cap and k.isolated_us < knee * w:
            total += w
    return total * gate


def _chain_extra(k) -> int:
    """Kernels beyond the first that one priced kernel stands for: a dynamic-int8 convolution is measured
    as the chain the runtime runs unfused (DynamicQuantizeLinear, the scales' Mul, ConvInteger, Cast,
    the rescaling Mul: one kernel each in onnxruntime's optimized graph), priced as one."""
    if k.kind == "Conv" and k.precision == "int8_dynamic" and k.op_types:
        return max(0, len(k.op_types) - 1)
    return 0


def dispatched_count(kernels) -> int:
    """Kernels the runtime dispatches: every priced one (a dynamic-int8 conv chain each of its kernels),
    and the metadata ops it still dispatches."""
    return sum(1 + _chain_extra(k) for k in kernels
               if k.source != "free" or (k.op_types and k.op_types[0] in _DISPATCHED_FREE))


def kernel_terms_us(kernels, per_short_us: float, per_long_us: float, short_us: float) -> float:
    """The per-kernel terms of dispatched ``kernels``: ``per_short_us`` for each shorter than ``short_us``
    alone (and each metadata op the runtime still dispatches), ``per_long_us`` for the rest.

    A negative term corrects the price of the kernel it counts (its isolated timing carries the
    profiler's per-event cost) and takes at most that price away: a kernel the runtime runs never costs
    less than nothing. The terms were fitted on CNN and BERT models whose short kernels take 3-30 us
    alone; an LLM decode step runs ~300 kernels of 0.5-3 us alone (64-element products, int64 shape
    arithmetic). In the corpus 4-bit decoder at one step (Zen 5 profile), 94 of them take less than
    the -1.03 us short-kernel term alone: unbounded, the terms came to -380 us, bounded -319 us, of a
    0.91 ms step. Additive over kernels, so a what-if table can take it kernel by kernel."""
    total = 0.0
    for k in kernels:
        if k.source == "free":
            total += per_short_us if k.op_types and k.op_types[0] in _DISPATCHED_FREE else 0.0
            continue
        iso = k.isolated_us if k.isolated_us is not None else k.latency_us
        t = per_short_us if iso < short_us else per_long_us
        t += per_short_us * _chain_extra(k)  # the chain's other kernels: short ones
        total += max(t, -iso) if t < 0 else t
    return total


def _kernel_counts(kernels, short_us: float) -> tuple[float, float]:
    """(short, long) dispatched kernels: shorter than ``short_us`` alone (metadata ops the runtime
    still dispatches count as short) and the rest."""
    short = long_ = 0
    for k in kernels:
        if k.source == "free":
            short += bool(k.op_types and k.op_types[0] in _DISPATCHED_FREE)
        elif (k.isolated_us if k.isolated_us is not None else k.latency_us) < short_us:
            short += 1 + _chain_extra(k)
        else:
            long_ += 1
            short += _chain_extra(k)
    return float(short), float(long_)


def fit_overhead(estimates, measured_us, weights_rule: dict | None = None, weight_term: bool = True,
                 short_us: float | None = None, per_run_us: float | None = None,
                 lowint_conv: dict | None = None) -> dict:
    """Fit what the kernel sum misses: ``measured - kernel_sum = a + b * kernels + c * weight_MB``.

    ``a`` (per run: session/executor entry and exit), ``b`` (per dispatched kernel: executor cost
    minus the profiler's own share inside isolated kernel timings, so it may be negative), ``c``
    (per megabyte of streamed weights: isolated kernels run with their weights cache-warm, inside a
    model too big for the cache they stream them from memory; see :func:`_overhead_terms` for
    ``weights_rule``; ``weight_term=False`` when the context model prices weights per kernel).
    With ``short_us``, ``b`` splits in two: kernels shorter than ``short_us`` alone (their isolated
    timing carries the profiler's per-event cost, which the model run does not pay; the context
    model leaves them alone) and the rest. ``per_run_us``: ``a`` measured elsewhere (dispatch
    chains, :mod:`profilers.chains`) and held fixed; the other terms are fitted around it.
    ``lowint_conv``: a rule of :func:`lowint_conv_mb`, whose weight megabytes get a term of their own
    (``per_lowint_conv_mb_us``). Least squares weighted for relative error.
    ``estimates`` are :class:`Estimate` objects made without overhead; ``measured_us`` the models'
    end-to-end latencies (microseconds, same protocol as the profiler).
    """
    x, y, m = [], [], []
    for e, meas in zip(estimates, measured_us):
        n, wmb = _overhead_terms(e.kernels, weights_rule, e.cache_gate)
        counts = _kernel_counts(e.kernels, short_us) if short_us is not None else (n,)
        extra = (lowint_conv_mb(e.kernels, lowint_conv, e.cache_gate),) if lowint_conv else ()
        x.append((1.0, *counts, *extra, wmb if weight_term else 0.0))
        y.append(meas - e.kernel_sum_us)
        m.append(meas)
    x, y, m = np.array(x), np.array(y), np.array(m)
    w = 1.0 / m
    if per_run_us is None:
        coef = np.linalg.lstsq(x * w[:, None], y * w, rcond=None)[0]
    else:
        rest = np.linalg.lstsq(x[:, 1:] * w[:, None], (y - per_run_us) * w, rcond=None)[0]
        coef = np.concatenate([[per_run_us], rest])
    resid = (x @ coef - y) / m
    out = {"per_run_us": float(coef[0]), "per_weight_mb_us": float(coef[-1]), "n_models": len(m),
           "residual_rel_median": float(np.median(np.abs(resid))), "source": "fitted on end-to-end measurements"}
    if per_run_us is not None:
        out["per_run_source"] = "measured (dispatch chains), held fixed in the fit"
    if lowint_conv:
        out.update(per_lowint_conv_mb_us=float(coef[-2]), lowint_conv=dict(lowint_conv))
    if short_us is not None:
        out.update(per_short_kernel_us=float(coef[1]), per_long_kernel_us=float(coef[2]), short_us=float(short_us))
    else:
        out["per_kernel_us"] = float(coef[1])
    if weights_rule:
        out["weights"] = weights_rule
    return out


#: a negative overhead scales the kernels down by at most this much
MIN_KERNEL_SCALE = 0.5


def settle_overhead(ests, ov, gate: float = 1.0):
    """(kernels, kernel sum us, overhead us, overhead source) of priced KernelEstimates under ``ov``.

    A fitted overhead model may have negative terms (isolated timings of short kernels carry the
    profiler's per-event cost; a per-run term fitted on few models), so on a tiny model the sum goes
    below zero. That is a correction of the kernels' prices, not a negative overhead. A negative
    per-kernel term (bounded by :func:`kernel_terms_us`) moves into the kernel it counts, so a model of
    many tiny kernels (an LLM decode step) does not pass their correction on to its big kernels, which
    run inside the model as long as alone (per-node profiles of the corpus decoder,
    benchmarks/coverage.py --nodes); what is left negative (the per-run term, dispatched metadata ops,
    low-intensity convolutions) moves into the kernels in proportion to their prices. The total is
    the kernel sum plus the overhead, never less than half the kernel sum."""
    from dataclasses import replace

    ksum = sum(e.latency_us for e in ests)
    overhead = overhead_us(ests, ov, gate)
    source = ov.get("source", "")
    if not (overhead < 0 and ksum > 0):
        return ests, ksum, overhead, source
    floor, notes = MIN_KERNEL_SCALE * ksum, []
    if "per_long_kernel_us" in ov and min(ov["per_short_kernel_us"], ov["per_long_kernel_us"]) < 0:
        ts, tl, short_us = ov["per_short_kernel_us"], ov["per_long_kernel_us"], ov.get("short_us", 0.0)
        out, moved = [], 0.0
        for e in ests:
            if e.source == "free":
                out.append(e)
                continue
            t = kernel_terms_us([e], ts, tl, short_us)
            lat = max(0.0, e.latency_us + t) if t < 0 else e.latency_us
            moved += lat - e.latency_us
            out.append(replace(e, latency_us=lat, detail=(e.detail + "; " if e.detail else "") +
                               f"{lat - e.latency_us:+.1f} us: the overhead model's per-kernel term") if t < 0 else e)
        ests, overhead = out, overhead - moved
        ksum = sum(e.latency_us for e in ests)
        notes.append(f"per-kernel terms ({moved:.1f} us) moved into the kernels they count")
    kept = max(0.0, overhead)
    target = max(floor, ksum + overhead) - kept  # the kernels' sum once the rest of the negative terms is in
    if ksum > 0 and abs(target - ksum) > 1e-12 * ksum:
        f = target / ksum
        capped = floor > ksum + overhead
        note = (f"x{f:.3f}: the overhead model's negative terms ({overhead:.1f} us) moved into the kernels"
                if overhead < 0 else f"x{f:.3f}") + (", capped at half their price" if capped else "")
        ests = [replace(e, latency_us=e.latency_us * f, detail=(e.detail + "; " if e.detail else "") + note)
                if e.latency_us > 0 else e for e in ests]
        ksum = sum(e.latency_us for e in ests)
        notes.append(note)
    overhead = kept
    if notes:
        source += f" ({'; '.join(notes)})"
    return ests, ksum, overhead, source
