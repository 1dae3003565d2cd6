"""In-model context: a kernel inside a model does not take what it takes alone.

The profiler times every kernel in a single-op session, with its inputs and weights warm in cache
and nothing before or after it. Inside a model the same kernel reads an input the previous kernel
has just written, may find its weights evicted, and runs back to back with its neighbours.

A :class:`ContextModel` holds two corrections fitted from kernel pairs (the same kernel timed alone,
from the profile, and inside the training corpus's models, from onnxruntime's per-node profile):
**weight fetch**, and per op kind a piecewise-linear curve of ``log(in_model / alone)`` left after
it, against ``log(time alone)``, for kernels of at least ``MIN_US``; kinds with too few pairs use
the curve pooled over all kinds. It is stored as JSON next to the profile
(``<profile>.context.json``) with where the pairs came from.

Weight fetch: alone, a kernel's weights stay in the cache from one run to the next; inside a model,
the other kernels evict them. Every kernel with weights (a 1x1 conv on a 7x7 map priced at a few
us alone included: inside a model it is mostly weight reads) pays a **memory rate** per MB,
scaled by the model's last-level gate. Two gates, functions of the model's working set (weights
plus half the activations its kernels read and write, a runtime's layout or type copy counted as its
source: :func:`latency.estimator.footprint_term_mb`), scale the corrections:

* the private-cache gate scales the curves: none up to ``scale`` times the core's L2 size (from
  sysfs), all from twice that, log-linear between (the slowdown they describe shows in models that
  stay in the last-level cache, not in models of a few MB);
* the last-level gate scales the weight fetch. It is measured at calibration by a cache probe
  (chains of batch-1 matrix-vector products whose weights add up to 1-50 MB,
  :mod:`profilers.chains`): the time per product from its cache-resident level (gate 0) to its
  from-memory level (gate 1), against the chain's weights; a model's working set is multiplied by
  ``footprint_scale`` before it is read on that curve (what a model keeps alive between runs is
  more than the estimate above). On a shared machine the cache a process really gets is smaller
  than the chip's (other tenants use it too); the probe measures what it gets. Without a probe,
  the bounds come from the cache size in sysfs: none below a third of it, all of it from the full
  size up, log-linear in between.

``scale`` and ``footprint_scale`` are chosen at calibration among a few candidates by the
calibration models' end-to-end error (:func:`profilers.calibrate.calibrate`), which include models
of 0.3 to 22 MB working set for that purpose. The rate and curves are fitted for each candidate.
(A second rate, for weights fetched from the shared cache in models that stay in it, was tried:
four calibrations of the same machine split the fetch between the two rates in four ways, 2.9 to
11.7 and 23.5 to 34.3 us per MB; one rate came out at 33.3-35.7 in all four.)

**Matrix-vector products.** The fitted rate is what a kernel that computes on its weights pays per
MB when they come from memory: the fetch does not overlap its work. A matrix-vector product (a
batch-1 Gemm, the projections of an LLM decode step) does nothing but stream its weights once: alone
it streams them from the cache, inside a model that evicts them it streams them from memory, and it
takes what that stream takes, ``memory_rate x MB``. The cache probe measures that rate on exactly
such products: the time per product of its largest chain (the furthest beyond the last-level cache)
per MB of a product's weights (:func:`memory_rate`; 24.3 us/MB on the Zen 5 host). Such a kernel's
fetch is ``gate x min(rate x MB, max(0, memory_rate x MB - time alone))``. Per-node profiles of the
corpus decoder (benchmarks/coverage.py) at one decode step: its 29 fp32 products take 671 us alone,
1,513 us inside the model (onnxruntime's profiler) and 1.72 ms end to end as a chain of their own,
where ``time alone + rate x MB`` priced 2.64 ms.
"""

from __future__ import annotations

import json
import math
from functools import lru_cache
from pathlib import Path

import numpy as np

from .errors import ProfileError

#: log-ratio limits: the correction never scales a kernel by more than e^0.7 (~2x) either way
_CLAMP = 0.7
#: the cache probe's products (profilers.chains: [1, 256] x [256, 256], fp32): MB of weights each
PROBE_WEIGHT_MB = 256 * 256 * 4 / 1e6

#: kernels shorter than this alone (us) get no curve correction: their in-model profile durations are
#: dominated by the profiler's own per-event cost and vary from run to run by 2x; what they cost
#: inside a model is left to the per-kernel term of the overhead model, fitted on end-to-end runs
MIN_US = 30.0


def _curve(iso_us: np.ndarray, ratio: np.ndarray, min_bin: int, max_bins: int) -> dict:
    """Knots (median log isolated time, median log ratio) over quantile bins of ``min_bin``+ pairs."""
    order = np.argsort(iso_us)
    x, y = np.log(iso_us[order]), np.log(ratio[order])
    n_bins = int(max(1, min(max_bins, len(x) // min_bin)))
    edges = np.linspace(0, len(x), n_bins + 1).astype(int)
    kx, ky = [], []
    for a, b in zip(edges[:-1], edges[1:]):
        kx.append(float(np.median(x[a:b])))
        ky.append(float(np.clip(np.median(y[a:b]), -_CLAMP, _CLAMP)))
    return {"log_us": kx, "log_ratio": ky, "pairs": int(len(x))}


def _fetch_rate(iso, inm, wm) -> float:
    """Memory rate (us per MB) in ``inm - iso = c + a * iso + b * wm``: ``b``.

    ``wm``: a kernel's weights (MB) times its model's last-level gate. ``c`` takes up the per-node
    profiling offset of an in-model profile, ``a`` a general proportional slowdown (the curves model
    it); neither is kept. Least squares on relative residuals (every pair counts alike, as in the
    curves), two trims of pairs whose residual is beyond 3 MADs (a mismatched pair).
    """
    x = np.stack([np.ones(len(iso)), iso, wm], 1)
    y = inm - iso
    keep = np.ones(len(iso), bool)
    coef = np.zeros(3)
    for _ in range(3):
        coef = np.linalg.lstsq(x[keep] / inm[keep, None], y[keep] / inm[keep], rcond=None)[0]
        r = (y - x @ coef) / inm
        mad = np.median(np.abs(r - np.median(r))) or 1e-9
        keep = np.abs(r - np.median(r)) <= 3 * 1.4826 * mad
    return float(max(0.0, coef[2]))


def fit_context(pairs, min_pairs: int = 16, min_bin: int = 8, max_bins: int = 6, llc: float | None = None) -> dict:
    """Fit a context model from ``pairs``: dicts with ``kind``, ``isolated_us``, ``in_model_us`` and,
    for the weight-fetch term, ``weight_mb`` (constant weights the kernel reads) and ``gate`` (the
    model's last-level cache gate, see :func:`cache_gate`).

    Two parts. **Weight fetch**: alone, a kernel runs with its weights in cache; inside a model
    too big for the cache, the other kernels have evicted them by the time it runs again, and it
    reads them from memory. :func:`_fetch_rate` fits the rate (``stream_us_per_mb``) over the
    Conv/MatMul pairs with weights below the last-level cache ``llc`` (bigger ones stream when timed
    alone too), short kernels included: a 1x1 conv over a 7x7 map is priced at a few us alone and is
    mostly weight reads in a model. **Curves**: per kind, the ratio in-model / alone left after the
    fetch term, against the time alone, from kernels of at least ``MIN_US`` alone; kinds with fewer
    than ``min_pairs`` such pairs use the pooled curve (``"*"``).
    """
    pairs = [p for p in pairs if p["isolated_us"] > 0 and p["in_model_us"] > 0]
    if not pairs:
        raise ValueError("no kernel pairs to fit a context model from")
    cap = llc or float("inf")
    w = np.array([p.get("weight_mb", 0.0) if 0.0 < p.get("weight_mb", 0.0) < cap else 0.0 for p in pairs], float)
    g = np.array([p.get("gate", 1.0) for p in pairs], float)
    iso = np.array([p["isolated_us"] for p in pairs], float)
    inm = np.array([p["in_model_us"] for p in pairs], float)
    kinds = np.array([p["kind"] for p in pairs])
    clean = (w > 0) & np.isin(kinds, ["Conv", "MatMul"])
    per_mb = _fetch_rate(iso[clean], inm[clean], w[clean] * g[clean]) if clean.sum() >= 16 else 0.0
    rest = np.maximum(inm - per_mb * g * w, 0.2 * inm)
    big = iso >= MIN_US
    curves = {"*": _curve(iso[big], rest[big] / iso[big], min_bin, max_bins)} if big.sum() >= min_bin else {}
    for k in sorted(set(kinds.tolist())):
        sel = (kinds == k) & big
        if sel.sum() >= min_pairs:
            curves[k] = _curve(iso[sel], rest[sel] / iso[sel], min_bin, max_bins)
    return {"kinds": curves, "n_pairs": len(pairs), "min_us": MIN_US, "stream_us_per_mb": per_mb,
            "stream_pairs": int(clean.sum()), "stream_cap_mb": llc, "stream_min_mb": 0.0}


#: precisions whose kernels get in-model curves of their own: static int8 (QDQ) kernels run ~1.3-1.6x their
#: time alone inside a model where fp32 kernels of the same time run ~1.1-1.2x (Zen 5: int8 Conv / MatMul pairs
#: of six quantized models, 30-1000 us alone: 1.34 / 1.47-1.65, their fp32 calibration pairs 1.12-1.18 / 1.18-1.23)
OWN_CURVE_PRECISIONS = ("int8",)


def fit_precision_curves(pairs, precision: str, base: "ContextModel", state: float = 1.0, min_pairs: int = 16,
                         min_bin: int = 8, max_bins: int = 6) -> dict:
    """Curves keyed ``"KIND:precision"`` from ``pairs`` (dicts with ``kind``, ``key``, ``isolated_us``,
    ``in_model_us``, ``gate``: the model's last-level gate) of that precision: the ratio in-model / alone left
    after ``base``'s weight fetch, for kernels of at least ``MIN_US`` alone, per kind with ``min_pairs`` such
    pairs. ``state``: how much slower the machine ran the in-model times than it ran the profile's rows (the
    in-model times are divided by it). The fp32 curves are ``base``'s and stay as they are."""
    from .estimator import weight_mb
    from .ops import Config

    curves = {}
    by_kind: dict = {}
    for p in pairs:
        if p["isolated_us"] <= 0 or p["in_model_us"] <= 0 or Config.from_key(p["key"]).precision != precision:
            continue
        iso = float(p["isolated_us"])
        inm = float(p["in_model_us"]) / state
        fetch = base.stream_us(weight_mb(p["key"]), p.get("gate", 1.0), isolated_us=iso, key=p["key"])
        by_kind.setdefault(p["kind"], []).append((iso, max(inm - fetch, 0.2 * inm)))
    for kind, v in sorted(by_kind.items()):
        a = np.array(v, float)
        big = a[:, 0] >= MIN_US
        if big.sum() >= min_pairs:
            curves[f"{kind}:{precision}"] = {**_curve(a[big, 0], a[big, 1] / a[big, 0], min_bin, max_bins),
                                             "max_us": float(a[big, 0].max())}
    return curves


#: kinds whose kernels shorter than ``MIN_US`` alone get a curve of their own from chains measured end to end
#: (wall clock, no profiler): a small QuantizeLinear / DequantizeLinear costs a third to two thirds of its time
#: alone inside a model (Zen 5, Q + DQ pairs on [1, C]: 0.53 us at C = 1k against 1.72 priced before)
SMALL_CURVE_KINDS = ("Quant:int8",)


def fit_small_quant_curve(pair_us: dict, isolated: dict, per_short_us: float, state: float = 1.0) -> dict | None:
    """The ``"Quant:int8"`` curve for Q / DQ kernels shorter than ``MIN_US`` alone, from chains.

    ``pair_us``: C -> one Q + DQ pair's time inside a model (us; :func:`profilers.chains.qdq_pair_us`);
    ``isolated``: C -> (Q alone, DQ alone) as the profile prices them (us); ``per_short_us``: the overhead
    model's per-kernel term for short kernels (the estimate adds it to each of the two); ``state``: how much
    slower the machine ran the chains than it ran the profile's rows. The ratio at C is what both kernels'
    prices alone are scaled by so that the pair adds ``pair_us`` to an estimate. Knots over log C (the
    kernel's elements: its price alone is flat at ~2 us below 4k elements, too flat to tell sizes apart);
    None when fewer than three sizes were measured."""
    kx, ky = [], []
    for c in sorted(pair_us):
        if c not in isolated or c <= 0:
            continue
        q, dq = isolated[c]
        if q <= 0 or dq <= 0:
            continue
        g = (pair_us[c] / state - 2.0 * per_short_us) / (q + dq)
        kx.append(float(np.log(c)))
        ky.append(float(np.clip(np.log(max(g, 1e-3)), -_CLAMP, _CLAMP)))
    if len(kx) < 3:
        return None
    return {"log_elements": kx, "log_ratio": ky, "pairs": len(kx)}


#: element counts (log) of the small Q / DQ curve fitted from real models' kernel pairs: 16 x 4^k
SMALL_KNOTS = tuple(math.log(16 * 4 ** k) for k in range(9))
#: fewest pairs near a knot for it to be kept (a factor of 2 in elements either side)
SMALL_MIN_PAIRS = 8


def fit_small_quant_from_pairs(int8_pairs: list, fp32_pairs: list, min_us: float) -> dict | None:
    """The ``"Quant:int8"`` curve for Q / DQ kernels shorter than ``min_us`` alone, from kernel pairs of real
    int8 models and their fp32 originals timed in one run (in-model per-node profile against the price alone).

    At each knot of :data:`SMALL_KNOTS` (elements), the median in-model / alone of the Q / DQ kernels within a
    factor of 2 of it, divided by the median in-model / alone of the fp32 originals' short kernels (every kind):
    the estimate prices those at their time alone plus the overhead model's per-kernel term, so a Q / DQ that
    runs like them gets a factor of 1 and its own excess or saving beside them otherwise. That takes the
    machine's state and the profiler's in-model cost per kernel out the same way for both. (A chain of
    [Q -> DQ -> Tanh] on [1, C] made the Q / DQ look 30-45% cheaper than alone; in real models they ran
    0.8-1.1x the fp32 short kernels' ratio, and the chain curve put int8 CNNs 5-13% under.) None when fewer
    than three knots have enough pairs."""
    fp = [x["in_model_us"] / x["isolated_us"] for x in fp32_pairs
          if 0 < x.get("isolated_us", 0) < min_us and x.get("in_model_us", 0) > 0]
    q = [(key_elements(x["key"]), x["in_model_us"] / x["isolated_us"]) for x in int8_pairs
         if x.get("kind") == "Quant" and 0 < x.get("isolated_us", 0) < min_us and x.get("in_model_us", 0) > 0]
    q = [(math.log(n), r) for n, r in q if n]
    if len(fp) < 16 or not q:
        return None
    base = float(np.median(fp))
    le = np.array([a for a, _ in q])
    r = np.array([b for _, b in q])
    kx, ky, n = [], [], 0
    for k in SMALL_KNOTS:
        near = np.abs(le - k) <= math.log(2.0)
        if near.sum() >= SMALL_MIN_PAIRS:
            kx.append(float(k))
            ky.append(float(np.clip(math.log(float(np.median(r[near])) / base), -_CLAMP, _CLAMP)))
            n += int(near.sum())
    if len(kx) < 3:
        return None
    return {"log_elements": kx, "log_ratio": ky, "pairs": n, "fp32_short_ratio": round(base, 4),
            "basis": "real int8 models' Q / DQ kernel pairs over their fp32 originals' short kernels"}


@lru_cache(maxsize=65536)
def key_elements(key: str) -> int | None:
    """Elements of the input of the kernel of config ``key`` (the op registry's ``in_elems``), None where the
    key is not a config."""
    from .errors import LatencyError
    from .ops import Config, get_kind

    try:
        c = Config.from_key(key)
        return int(get_kind(c.kind).work(c.params)["in_elems"])
    except (LatencyError, KeyError, TypeError, ValueError):
        return None


def _data_caches_mb() -> dict:
    """This host's data (or unified) caches, level -> MB (read by latency.profiles from sysfs)."""
    from .profiles import _data_caches_mb as read

    return read()


def llc_mb() -> float | None:
    """This host's last-level cache size in MB (Linux sysfs), None when unreadable."""
    caches = _data_caches_mb()
    return caches[max(caches)] if caches else None


def l2_mb() -> float | None:
    """This host's per-core level-2 cache size in MB (Linux sysfs), None when unreadable."""
    return _data_caches_mb().get(2)


def private_gate(l2: float | None, scale: float = 1.0) -> dict:
    """Bounds of the curve gate from the core's private (level-2) cache, MB: ``scale`` times its size
    and twice that."""
    source = "read from sysfs" if l2 else "assumed (sysfs unreadable): 1 MB"
    l2 = l2 or 1.0
    return {"footprint_mb": [scale * l2, 2.0 * scale * l2], "l2_mb": l2, "l2_source": source, "scale": scale,
            "basis": "model working set vs scale x the core's private cache: none below it, the curves in full "
                     "from twice it"}


def footprint_gate(llc: float | None) -> dict:
    """Gate bounds from the last-level cache size (MB): a third of it, and all of it."""
    source = "read from sysfs" if llc else "assumed (sysfs unreadable): 32 MB"
    llc = llc or 32.0
    return {"footprint_mb": [llc / 3.0, llc], "llc_mb": llc, "llc_source": source,
            "basis": "model working set vs the device's last-level cache: no correction below a third of it, "
                     "full correction above its size"}


def cache_gate(footprint_mb: float | None, bounds, curve: dict | None = None) -> float:
    """How much a model with this working set spills out of the last-level cache between runs (0..1).

    With ``curve`` (measured by a cache probe at calibration: ``{"footprint_mb": [...], "gate":
    [...]}``), interpolated in log working set and flat beyond its ends; otherwise 0 below
    ``bounds[0]`` MB, 1 above ``bounds[1]``, log-linear in between."""
    if footprint_mb is None or (not bounds and not curve):
        return 1.0
    if footprint_mb <= 0:
        return 0.0
    if curve and curve.get("footprint_mb"):
        return float(np.clip(np.interp(math.log(footprint_mb), np.log(curve["footprint_mb"]), curve["gate"]), 0, 1))
    lo, hi = math.log(bounds[0]), math.log(bounds[1])
    return float(min(1.0, max(0.0, (math.log(footprint_mb) - lo) / (hi - lo))))


def memory_rate(spec: dict) -> float | None:
    """The time a matrix-vector product takes per MB of weights streamed from memory (us/MB): given in
    the spec (``memory_us_per_mb``), else read from the cache probe kept in its gate
    (``gate.curve.us_per_product``, products of ``PROBE_WEIGHT_MB``): the probe with the largest working
    set. None without a probe (the fitted rate then prices every kernel's fetch)."""
    if spec.get("memory_us_per_mb"):
        return float(spec["memory_us_per_mb"])
    curve = (spec.get("gate") or {}).get("curve") or {}
    t, fp = curve.get("us_per_product"), curve.get("footprint_mb")
    if not t or not fp or len(t) != len(fp) or len(t) < 6:
        return None
    hi = float(t[int(np.argmax(np.asarray(fp, float)))])
    return hi / PROBE_WEIGHT_MB if hi > 0 else None


@lru_cache(maxsize=1 << 16)
def matrix_vector(key: str) -> bool:
    """Whether the kernel of config ``key`` is a matrix-vector product over constant weights (one row of
    activations: a batch-1 Gemm, an LLM decode step's projections, a MatMulNBits with m = 1), which reads
    each weight once and does nothing else (see :meth:`ContextModel.stream_us`)."""
    from .ops import Config

    if not key:
        return False
    c = Config.from_key(key)
    if c.kind == "MatMul":
        a = c.params.get("a") or []
        return bool(c.params.get("const_b", 1)) and len(a) >= 2 and int(np.prod(a[:-1])) == 1
    if c.kind == "MatMulNBits":
        return int(c.params.get("m", 0)) == 1
    return False


#: a matrix-vector product's key (the probe's own shape), to check a loaded model with
_PROBE_KEY = ('{"kind":"MatMul","params":{"a":[1,256],"act":"none","b":[256,256],"bias":0,"const_b":1,"scale":0,'
              '"trans_b":0},"precision":"fp32","sparsity":"0"}')


def read_json_file(path, what: str) -> dict:
    """A JSON object from ``path``; ProfileError naming the file when it cannot be read, is not JSON
    (truncated, binary) or is not an object."""
    try:
        with open(path, encoding="utf-8") as f:
            d = json.load(f)
    except OSError as e:
        raise ProfileError(f"cannot read {what} {path}: {e.strerror or e}") from None
    except ValueError as e:  # JSONDecodeError, UnicodeDecodeError
        raise ProfileError(f"{what} {path} is not valid JSON (truncated or corrupt?): {str(e).splitlines()[0]}") \
            from None
    if not isinstance(d, dict):
        raise ProfileError(f"{what} {path} holds a JSON {type(d).__name__}, not an object; the file is corrupt or "
                           "was edited by hand")
    return d


class ContextModel:
    """Applies a fitted context model: ``in_model_us = isolated_us * factor(kind, isolated_us, gate)``."""

    def __init__(self, spec: dict | None):
        self.spec = spec or {}
        self._curves = {k: (np.array(v["log_us"]), np.array(v["log_ratio"]))
                        for k, v in self.spec.get("kinds", {}).items()}
        #: a precision's own curve prices kernels up to the longest one it was fitted on, no further
        self._max_us = {k: float(v["max_us"]) for k, v in self.spec.get("kinds", {}).items() if "max_us" in v}
        #: curves for kernels shorter than min_us alone (fitted on chains: SMALL_CURVE_KINDS)
        self._small = {k: (np.array(v["log_elements"]), np.array(v["log_ratio"]))
                       for k, v in self.spec.get("small_kinds", {}).items()}
        fp = self.spec.get("gate", {}).get("footprint_mb")
        self._bounds = tuple(fp) if fp and 0 < fp[0] < fp[1] else None
        self._gate_curve = self.spec.get("gate", {}).get("curve")
        self._fp_scale = float(self.spec.get("gate", {}).get("footprint_scale", 1.0))
        fp = self.spec.get("curve_gate", {}).get("footprint_mb")
        self._curve_bounds = tuple(fp) if fp and 0 < fp[0] < fp[1] else None
        self._memory_rate = memory_rate(self.spec)

    def gate(self, footprint_mb: float | None) -> float:
        """How much of the memory-streaming correction applies to a model with this working set (0..1).

        The gate's ``footprint_scale`` (fitted at calibration; 1 when absent) maps the estimator's
        working set (weights plus half the activations) to the probe's (weights of a matrix-vector
        chain): what a model keeps alive between runs is more than that estimate says."""
        if footprint_mb is not None:
            footprint_mb = footprint_mb * self._fp_scale
        return cache_gate(footprint_mb, self._bounds, self._gate_curve) if self._bounds or self._gate_curve else 1.0

    def curve_gate(self, footprint_mb: float | None) -> float:
        """How much of the curve correction applies (0..1). Context models fitted with a private-cache
        gate use it (the kernels of a model bigger than the core's private cache run slower than
        alone even when the whole model stays in the last-level cache); older ones, the cache gate."""
        if self._curve_bounds:
            return cache_gate(footprint_mb, self._curve_bounds)
        return self.gate(footprint_mb)

    @classmethod
    def load(cls, path) -> "ContextModel":
        """Read a fitted context model; ProfileError (one line, naming the file) when it is unreadable,
        truncated, or holds values of the wrong type or shape (tampered)."""
        spec = read_json_file(path, "context model")
        try:
            cm = cls(spec)
            probes = [cm.gate(5.0), cm.curve_gate(5.0), cm.stream_us(1.0, 0.5),
                      cm.stream_us(1.0, 0.5, 10.0, _PROBE_KEY)]
            for k, (x, y) in cm._curves.items():
                if x.ndim != 1 or x.shape != y.shape or not len(x) or x.dtype.kind not in "fi" or \
                        y.dtype.kind not in "fi" or np.any(np.diff(x) < 0):
                    raise ValueError(f"curve {k!r}: log_us and log_ratio must be equal-length lists of numbers, "
                                     "log_us ascending")
                probes += [cm.factor(k, us, 0.5) for us in (1.0, 100.0, 1e5)]
            if not all(isinstance(v, float) and math.isfinite(v) for v in map(float, probes)):
                raise ValueError("a correction is not a finite number")
        except ProfileError:
            raise
        except (TypeError, ValueError, KeyError, AttributeError, IndexError, ArithmeticError) as e:
            raise ProfileError(f"context model {path} is malformed ({e}); the file is corrupt or was edited by hand; "
                               "recalibrate or pass context=False") from None
        return cm

    @classmethod
    def fit(cls, pairs, **kw) -> "ContextModel":
        """Fit on kernel pairs (time alone, time inside a model); ``kw`` as :func:`fit_context`."""
        return cls(fit_context(pairs, **kw))

    def save(self, path) -> None:
        """Write the model (atomically: a reader never sees half a file)."""
        path = Path(path)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(self.spec, indent=1))
        tmp.replace(path)

    def __bool__(self) -> bool:
        return bool(self._curves)

    def stream_us(self, weight_mb: float, gate: float = 1.0, isolated_us: float | None = None,
                  key: str | None = None) -> float:
        """Extra time to read ``weight_mb`` of weights from memory in a model that evicts them
        (context models fitted before every kernel with weights paid it set ``stream_min_mb``).

        ``isolated_us`` and ``key``: the kernel's time alone and its config key. A matrix-vector product
        (:func:`matrix_vector`) only streams its weights: with a memory rate (:func:`memory_rate`) it
        takes ``memory_rate x MB`` inside the model, never more than the fitted rate adds (see the
        module's docstring). Linear in ``gate``."""
        per_mb = self.spec.get("stream_us_per_mb") or 0.0
        cap = self.spec.get("stream_cap_mb") or float("inf")
        if not per_mb or weight_mb < self.spec.get("stream_min_mb", 0.0) or weight_mb <= 0 or weight_mb >= cap:
            return 0.0
        if self._memory_rate and isolated_us is not None and key and matrix_vector(key):
            return gate * min(per_mb * weight_mb, max(0.0, self._memory_rate * weight_mb - isolated_us))
        return per_mb * weight_mb * gate

    def small_factor(self, kind: str, isolated_us: float, precision: str | None, key: str | None) -> float | None:
        """In-model / alone from a curve of its own (``small_kinds``: fitted from real models' kernel pairs, or
        from chains in calibrations made before) for a kernel shorter than ``min_us`` alone, read at the
        elements of ``key``; None where none applies. Not scaled by a cache gate: a small Q / DQ reads little."""
        if not self._small or precision is None or key is None:
            return None
        c = self._small.get(f"{kind}:{precision}")
        if c is None or not 0 < isolated_us < self.spec.get("min_us", 0.0):
            return None
        n = key_elements(key)
        if not n:
            return None
        return float(math.exp(np.interp(math.log(n), c[0], c[1])))

    def factor(self, kind: str, isolated_us: float, gate: float = 1.0, precision: str | None = None,
               key: str | None = None) -> float:
        """In-model / alone for a kernel of ``kind`` (and ``precision``: a curve of its own where the model has
        one, ``"Conv:int8"``, up to the longest kernel it was fitted on; else the kind's, else the pooled one)
        taking ``isolated_us`` alone, at curve gate ``gate``. A kernel shorter than ``min_us`` alone gets no curve,
        except a kind with a chain-fitted one (:meth:`small_factor`, read at the elements of ``key``)."""
        own = f"{kind}:{precision}" if precision else None
        small = self.small_factor(kind, isolated_us, precision, key)
        if small is not None:
            return small
        if own is not None and isolated_us > self._max_us.get(own, math.inf):
            own = None
        c = (self._curves.get(own) if own else None) or self._curves.get(kind) or self._curves.get("*")
        if c is None or not isolated_us >= self.spec.get("min_us", 0.0) or not isolated_us > 0 or gate <= 0:
            return 1.0
        return 1.0 + gate * (float(math.exp(np.interp(math.log(isolated_us), c[0], c[1]))) - 1.0)
