"""Transfer a profile to a new device from a few probes measured there.

A base profile (measured on device A) prices every kernel on A. On a device B of the same target
family, a few kernels (*probes*) are measured, and the ratio B/A is fitted per (op kind, precision)
as a curve of the kernel's latency on A: the ratio of a 3 us elementwise op (dispatch bound) and a
3 ms convolution (compute or memory bound) differ, and a wider vector unit, a faster clock or a
bigger cache each move some sizes more than others. Every base row, scaled by its curve, becomes a
*transferred* row of B's profile beside the probes measured there.

This module is pure (numpy only): which probes to measure (:func:`probe_order`), the fit
(:func:`fit_transfer` -> :class:`TransferModel`) and the scale a device description implies when
nothing is measured (:func:`description_model`), and the base's context and overhead files moved by
that description (:func:`transfer_calibration`). Measuring and writing a profile is
``profilers.transfer``.

The curve: piecewise linear in x = log10(base latency, us) through fixed knots (1 us .. 100 ms,
:data:`KNOTS`), y = log(new / base). Three levels, each shrunk toward the one above in proportion
to how few probes it has: one pooled curve (all probes), one per precision, one per (kind,
precision). With no probe in a group its curve is its precision's, then the pooled one.
MatMuls that stream their operands (GEMVs) have a curve group of their own (:func:`curve_group`).
What the curves leave is fitted, per level and shrunk the same way, as a slope against the kernel's
arithmetic intensity (log10 FLOPs per byte): a wider or faster vector unit speeds up compute-bound
kernels of a given latency more than memory-bound ones (on the Zen 4 -> Zen 5 pair, -0.07 per decade
for fp32 convolutions; it took the held-out probe error from 0.101 to 0.091, 0.134 to 0.118 with 100).
Optionally (``monotone``) each curve is projected onto the nearest monotone one (either direction).
The defaults (:data:`SHRINK`, :data:`SMOOTH`, not monotone) were chosen by 5-fold cross-validation on
1,250 probes of the shipped AVX-512 profile measured on a Zen 5 EPYC (median |log error| of a held-out
probe 0.103 with all, 0.140 with 100, 0.156 with 30 probes; shrink 0.1-2, smooth 0.1-8 and the
monotone projection were within 0.01 of it, the per-probe noise of two shared-VM measurements
being ~0.2). Last, one footprint curve for all groups (log10 MB moved, :data:`FOOT_KNOTS`) takes
what curves and slopes leave of memory-bound kernels (:func:`memory_weight`): where their data lives
(L2, last-level cache, DRAM) is a matter of size, not of latency or kind. Both were chosen on rows
measured on three devices (``benchmarks/transfer_rows.py``: 40 zoo models' kernel sums against each
device's own sweep).
"""

from __future__ import annotations

import bisect
import json
import math
import os
from dataclasses import dataclass, field

import numpy as np

from .errors import LatencyError
from .ops import Config, bytes_moved, get_kind

#: knots of the piecewise-linear curves, log10 of the base latency in us (1 us .. 100 ms)
KNOTS = (0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 3.5, 4.0, 5.0)
#: prior strength of a level's curve toward its parent, in probes per knot: at a knot with n probes
#: near it a group's curve is about n / (n + SHRINK) its own and the rest its parent's
SHRINK = 0.5
#: smoothness penalty on the second differences of a curve's knot values
SMOOTH = 0.5
#: prior weight of a level's intensity slope toward its parent's (in probes one decade off centre)
SLOPE_SHRINK = 5.0
#: the fewest probes a transfer is fitted from (fewer: an error, not a guess)
MIN_PROBES = 8
#: Huber threshold on log residuals (a probe taken in the slow state of a shared VM is down-weighted)
HUBER = 0.15
#: knots of the footprint curve, log10 of the bytes a kernel moves in MB (0.1 MB .. 316 MB): where a
#: memory-bound kernel's data lives (L2, the last-level cache, DRAM) differs between devices by size,
#: not by latency or kind
FOOT_KNOTS = (-1.0, -0.5, 0.0, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 2.0, 2.5)
#: the footprint curve's pull toward 0 (in probes per knot) and its smoothness penalty
FOOT_SHRINK = 2.0
FOOT_SMOOTH = 1.0
#: backfitting passes between the per-group curves and the footprint curve
FOOT_PASSES = 3

TRANSFERRED = "transferred"


class TransferError(LatencyError):
    """The transfer cannot be fitted or applied (too few probes, another family, ...)."""


#: a MatMul below this arithmetic intensity (log10 FLOPs per byte: 3 FLOPs per byte) streams its
#: operands (a GEMV: batch-1 fully connected layers, a decoder's weights) rather than computing on them
STREAM_Z = 0.5
#: the curve group of such MatMuls (:func:`curve_group`)
STREAMING = "MatMul.streaming"


def group_of(cfg: Config) -> tuple[str, str]:
    """(kind, precision): the group probes are shared between."""
    return cfg.kind, cfg.precision


def curve_group(cfg: Config) -> tuple[str, str]:
    """The group whose curve prices ``cfg``: :func:`group_of`, but MatMuls that stream their operands
    (:data:`STREAM_Z`) have a curve of their own. A GEMV of 8 MB and a GEMM may take the same time on
    the base device, and the other device may run one from L2 and the other from DRAM: a Zen 5 EPYC ->
    a Xeon guest, GEMVs of 4-16 MB 3.6x, GEMMs of those latencies 1.3x. Fitted on one curve, the
    GEMMs (many more) set it and batch-1 fully connected layers came out 28-33% under (AlexNet)."""
    if cfg.kind == "MatMul" and log_intensity(cfg) < STREAM_Z:
        return STREAMING, cfg.precision
    return cfg.kind, cfg.precision


def variant(cfg: Config) -> str:
    """A sub-family within a kind whose ratio may differ (probes are spread over them)."""
    p = cfg.params
    if cfg.kind == "Conv":
        cin, g = p["x"][1], p["group"]
        if g == cin and g > 1:
            return "depthwise"
        if g > 1:
            return "grouped"
        return "pointwise" if all(k == 1 for k in p["kernel"]) else "dense"
    if cfg.kind == "MatMul":
        if log_intensity(cfg) < STREAM_Z:
            return "streaming"  # probes spread over them: they have a curve of their own
        return "weights" if p.get("const_b", 1) else "activations"
    if "op" in p:
        return str(p["op"])
    return ""


def log_intensity(cfg: Config) -> float:
    """log10 of the kernel's arithmetic intensity (FLOPs per byte moved; 0.01 added so copies count)."""
    kind = get_kind(cfg.kind)
    return math.log10(kind.work(cfg.params)["flops"] / max(1.0, bytes_moved(kind, cfg.params, cfg.precision)) + 0.01)


def log_mb(cfg: Config) -> float:
    """log10 of the bytes the kernel reads and writes, in MB."""
    return math.log10(max(1.0, bytes_moved(get_kind(cfg.kind), cfg.params, cfg.precision)) / 1e6)


def memory_weight(log_intensity, log_us) -> np.ndarray:
    """How much a kernel's time is moving its data, for the footprint curve: by arithmetic intensity
    (log10 FLOPs per byte) 1 at 1 FLOP per byte or less (elementwise ops, a GEMV streaming its
    weights), 0 from 10 (dense convolutions, GEMMs), linear between; by base latency (log10 us) 0 up
    to ``DISPATCH_US`` (the runtime's fixed per-call work) and fully from ten times it."""
    ramp = np.clip(np.asarray(log_us, float) - math.log10(DISPATCH_US), 0.0, 1.0)
    return np.clip(1.0 - np.asarray(log_intensity, float), 0.0, 1.0) * ramp


# -- probe selection ---------------------------------------------------------------------------

def _vdc(i: int) -> float:
    """The i-th van der Corput number in base 2 (0.5, 0.25, 0.75, 0.125, ...): quantiles whose every
    prefix is spread evenly over [0, 1]."""
    x, d = 0.0, 0.5
    i += 1
    while i:
        x += d * (i & 1)
        i >>= 1
        d /= 2
    return x


def _interleave(weights: dict, n: int) -> list:
    """Sainte-Lague sequence over ``weights`` (name -> (weight > 0, most picks)): the first k names
    of the result share k in proportion to the weights for every k; ``n`` names in all at most."""
    counts = {g: 0 for g in weights}
    out = []
    for _ in range(n):
        live = [g for g in weights if counts[g] < weights[g][1]]
        if not live:
            break
        g = max(live, key=lambda g: (weights[g][0] / (2 * counts[g] + 1), -len(str(g)), str(g)))
        counts[g] += 1
        out.append(g)
    return out


def _nearest_free(items: list, used: set, x: float) -> int:
    """Index of the untaken item (sorted by their first field) nearest ``x``."""
    i = bisect.bisect_left(items, (x,))
    lo, hi = i - 1, i
    while True:
        while lo >= 0 and lo in used:
            lo -= 1
        while hi < len(items) and hi in used:
            hi += 1
        if lo < 0:
            return hi
        if hi >= len(items):
            return lo
        return lo if x - items[lo][0] <= items[hi][0] - x else hi


def probe_order(rows, n: int | None = None, seed: int = 0, group_weights: dict | None = None) -> list[str]:
    """Keys of base rows to measure as probes, most informative first: any prefix is a good probe set.

    ``rows``: iterable of (key, latency_us) of the base profile's successful rows. Only dense
    (sparsity 0) rows are probed (sparsity does not change CPU kernels; the sparse rows follow
    their dense group). Probes are shared between (kind, precision) groups in proportion to
    ``group_weights`` (default: the square root of each group's row count, so the base plan's
    emphasis carries over but small kinds get a share); within a group between its variants
    (:func:`variant`, square root of their counts) and within a variant spread over its latency
    range by van der Corput quantiles, each pick the row nearest the quantile (ties by a seeded
    shuffle, so different shapes of equal latency are taken in no particular order).
    """
    rng = np.random.default_rng(seed)
    tree: dict = {}
    for key, lat in rows:
        if lat is None or not (lat > 0):
            continue
        c = Config.from_key(key)
        if c.sparsity != "0":
            continue
        tree.setdefault(group_of(c), {}).setdefault(variant(c), []).append((math.log10(lat), key))
    if not tree:
        return []
    per_variant = {}
    for g, vs in tree.items():
        for v, items in vs.items():
            # sorted by latency, equal latencies in a seeded random order (the key only breaks ties)
            order = rng.permutation(len(items))
            items = [(items[i][0], int(order[i]), items[i][1]) for i in range(len(items))]
            items.sort()
            per_variant[g, v] = ([(x, k) for x, _, k in items], 0)
    total = n if n is not None else sum(len(x) for vs in tree.values() for x in vs.values())
    gw = {g: ((group_weights or {}).get(g, math.sqrt(sum(len(x) for x in vs.values()))),
              sum(len(x) for x in vs.values())) for g, vs in tree.items()}
    gw = {g: w for g, w in gw.items() if w[0] > 0}
    vseq = {g: iter(_interleave({v: (math.sqrt(len(x)), len(x)) for v, x in tree[g].items()},
                                sum(len(x) for x in tree[g].values()))) for g in gw}
    taken: dict = {}
    out = []
    for g in _interleave(gw, total):
        v = next(vseq[g])
        items, i = per_variant[g, v]
        per_variant[g, v] = (items, i + 1)
        used = taken.setdefault((g, v), set())
        lo, hi = items[0][0], items[-1][0]
        target = lo + _vdc(i) * (hi - lo)
        j = _nearest_free(items, used, target)
        used.add(j)
        out.append(items[j][1])
    return out


# -- the fit -----------------------------------------------------------------------------------

def _basis(x: np.ndarray, knots=KNOTS) -> np.ndarray:
    """Hat functions of ``knots`` (default :data:`KNOTS`, log10 us) at x, clamped to the knot range:
    (len(x), len(knots))."""
    k = np.asarray(knots)
    x = np.clip(x, k[0], k[-1])
    b = np.zeros((len(x), len(k)))
    j = np.clip(np.searchsorted(k, x, side="right") - 1, 0, len(k) - 2)
    t = (x - k[j]) / (k[j + 1] - k[j])
    b[np.arange(len(x)), j] = 1 - t
    b[np.arange(len(x)), j + 1] = t
    return b


def _pava(y: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Weighted isotonic (non-decreasing) regression."""
    blocks = []  # (value, weight, count)
    for yi, wi in zip(y, w):
        blocks.append([yi, wi, 1])
        while len(blocks) > 1 and blocks[-2][0] > blocks[-1][0]:
            v2, w2, c2 = blocks.pop()
            v1, w1, c1 = blocks.pop()
            ww = w1 + w2
            blocks.append([(v1 * w1 + v2 * w2) / ww if ww > 0 else (v1 + v2) / 2, ww, c1 + c2])
    return np.concatenate([[v] * c for v, _, c in blocks])


def _monotone(v: np.ndarray, w: np.ndarray) -> np.ndarray:
    """The closer of the non-decreasing and non-increasing projections of knot values ``v``."""
    up = _pava(v, w + 1e-9)
    down = -_pava(-v, w + 1e-9)
    return up if np.sum(w * (up - v) ** 2) <= np.sum(w * (down - v) ** 2) else down


def _fit_design(b: np.ndarray, y: np.ndarray, prior: np.ndarray, shrink: float, smooth: float) -> np.ndarray:
    """Knot values v minimising Huber(y - b v) + shrink * |v - prior|^2 + smooth * |D2 (v - prior)|^2
    (``b``: one row of knot weights per probe)."""
    nk = b.shape[1]
    d2 = np.diff(np.eye(nk), 2, axis=0)
    w = np.ones(len(y))
    v = prior.copy()
    for _ in range(8):  # iteratively reweighted least squares with Huber weights
        a = b.T @ (w[:, None] * b) + shrink * np.eye(nk) + smooth * d2.T @ d2
        rhs = b.T @ (w * y) + shrink * prior + smooth * d2.T @ (d2 @ prior)
        v = np.linalg.solve(a, rhs)
        r = np.abs(y - b @ v)
        w = np.where(r <= HUBER, 1.0, HUBER / np.maximum(r, 1e-12))
    return v


def _fit_curve(x, y, prior: np.ndarray, shrink: float, smooth: float, monotone: bool):
    """Knot values minimising Huber(y - B v) + shrink-weighted (v - prior)^2 + smooth * |D2 v|^2;
    returns (values, probe weight per knot)."""
    nk = len(KNOTS)
    if len(x) == 0:
        return prior.copy(), np.zeros(nk)
    b = _basis(np.asarray(x, float))
    support = b.sum(axis=0)
    # every knot is pulled toward the parent's value with the weight of ``shrink`` probes, so a group
    # with many probes at 10-100 us but none at 10 ms follows its parent at 10 ms; the smoothness term
    # penalises bends relative to the parent's shape, not the shape itself
    y = np.asarray(y, float)
    v = _fit_design(b, y, prior, shrink, smooth)
    if monotone:
        v = _monotone(v, support + 1e-3)
    return v, support


@dataclass(frozen=True)
class TransferModel:
    """Per (kind, precision) curves of log(new / base) against log10(base latency, us).

    ``curves``: "kind/precision" -> knot values; ``precision_curves``: precision -> knot values;
    ``pooled``: knot values; ``n_probes``: "kind/precision" -> probes fitted."""

    pooled: tuple
    precision_curves: dict = field(default_factory=dict)
    curves: dict = field(default_factory=dict)
    n_probes: dict = field(default_factory=dict)
    spec: dict = field(default_factory=dict)  # how it was fitted (knots, shrink, monotone, residuals)
    #: change of log(new / base) per decade of arithmetic intensity (FLOPs per byte) away from
    #: ``intensity_center``: "kind/precision", "precision:<p>" and "pooled" -> slope
    slopes: dict = field(default_factory=dict)
    intensity_center: float = 0.0
    #: knot values (at :data:`FOOT_KNOTS`) of log(new / base) left by the curves and slopes, against the
    #: kernel's footprint (log10 MB moved), applied in proportion to :func:`memory_weight`; () = none
    foot: tuple = ()

    def curve(self, kind: str, precision: str) -> np.ndarray:
        v = self.curves.get(f"{kind}/{precision}")
        if v is None:
            v = self.precision_curves.get(precision, self.pooled)
        return np.asarray(v, float)

    def slope(self, kind: str, precision: str) -> float:
        s = self.slopes.get(f"{kind}/{precision}")
        if s is None:
            s = self.slopes.get(f"precision:{precision}", self.slopes.get("pooled", 0.0))
        return float(s)

    def log_ratio(self, kind: str, precision: str, base_us, log_intensity=None, log_mb=None) -> np.ndarray:
        base = np.atleast_1d(np.asarray(base_us, float))
        x = np.log10(np.maximum(base, 1e-3))
        out = _basis(x) @ self.curve(kind, precision)
        if log_intensity is not None:
            out = out + self.slope(kind, precision) * (np.asarray(log_intensity, float) - self.intensity_center)
            if log_mb is not None and len(self.foot):
                out = out + memory_weight(log_intensity, x) * (
                    _basis(np.atleast_1d(np.asarray(log_mb, float)), FOOT_KNOTS) @ np.asarray(self.foot, float))
        return out

    def ratio(self, kind: str, precision: str, base_us, log_intensity=None, log_mb=None) -> np.ndarray:
        """new / base for kernels of ``kind`` at ``precision`` taking ``base_us`` on the base device, of
        ``log_intensity`` (:func:`log_intensity`; None: the centre, the curve alone) and footprint
        ``log_mb`` (:func:`log_mb`; None: no footprint term)."""
        return np.exp(self.log_ratio(kind, precision, base_us, log_intensity, log_mb))

    def apply(self, kind: str, precision: str, base_us, log_intensity=None, log_mb=None) -> np.ndarray:
        """Latency on the new device (us) of kernels taking ``base_us`` on the base device."""
        base = np.atleast_1d(np.asarray(base_us, float))
        return base * self.ratio(kind, precision, base, log_intensity, log_mb)

    def apply_keys(self, items) -> np.ndarray:
        """Latency on the new device (us) of ``items``: (key, base us) pairs of any kinds."""
        items = list(items)
        out = np.empty(len(items))
        groups: dict = {}
        for i, (k, _) in enumerate(items):
            c = Config.from_key(k)
            g = curve_group(c) if self.spec.get("streaming_group") else group_of(c)
            groups.setdefault(g, []).append((i, log_intensity(c), log_mb(c)))
        for (kind, prec), idx in groups.items():
            ii = [i for i, _, _ in idx]
            out[ii] = self.apply(kind, prec, [items[i][1] for i in ii], [z for _, z, _ in idx],
                                 [f for _, _, f in idx])
        return out

    def to_dict(self) -> dict:
        return {"knots_log10_us": list(KNOTS), "pooled": [round(float(v), 6) for v in self.pooled],
                "precision_curves": {k: [round(float(x), 6) for x in v] for k, v in self.precision_curves.items()},
                "curves": {k: [round(float(x), 6) for x in v] for k, v in self.curves.items()},
                "slopes_per_decade_of_intensity": {k: round(float(v), 6) for k, v in self.slopes.items()},
                "intensity_center_log10": round(float(self.intensity_center), 6),
                "footprint_knots_log10_mb": list(FOOT_KNOTS), "footprint": [round(float(v), 6) for v in self.foot],
                "n_probes": dict(self.n_probes), "spec": self.spec}

    @classmethod
    def from_dict(cls, d: dict) -> "TransferModel":
        if list(d.get("knots_log10_us", [])) != list(KNOTS):
            raise TransferError("transfer model was fitted on other knots than this version of latency uses")
        foot = tuple(d.get("footprint", ()))
        if foot and list(d.get("footprint_knots_log10_mb", [])) != list(FOOT_KNOTS):
            raise TransferError("transfer model's footprint curve was fitted on other knots than this version of "
                                "latency uses")
        return cls(tuple(d["pooled"]), dict(d.get("precision_curves", {})), dict(d.get("curves", {})),
                   dict(d.get("n_probes", {})), dict(d.get("spec", {})),
                   dict(d.get("slopes_per_decade_of_intensity", {})), float(d.get("intensity_center_log10", 0.0)),
                   foot)

    def save(self, path) -> None:
        with open(path, "w") as f:
            json.dump(self.to_dict(), f, indent=1)

    @classmethod
    def load(cls, path) -> "TransferModel":
        with open(path) as f:
            return cls.from_dict(json.load(f))

    def summary(self) -> list[str]:
        """One line per fitted group: probes and the ratio at 10 us, 100 us, 1 ms and 10 ms."""
        out = []
        for g in sorted(self.curves, key=lambda g: -self.n_probes.get(g, 0)):
            k, p = g.split("/")
            r = self.ratio(k, p, [10, 100, 1000, 10000])
            out.append(f"{g:24s} {self.n_probes.get(g, 0):4d} probes  new/base at 10us {r[0]:.2f}  100us {r[1]:.2f}  "
                       f"1ms {r[2]:.2f}  10ms {r[3]:.2f}  x{math.exp(self.slope(k, p)):.2f} per 10x FLOPs/byte")
        if len(self.foot):
            f = np.exp(_basis(np.log10([0.3, 3.0, 30.0, 300.0]), FOOT_KNOTS) @ np.asarray(self.foot, float))
            out.append(f"footprint (memory-bound kernels, on top of their group's curve): x{f[0]:.2f} at 0.3 MB  "
                       f"x{f[1]:.2f} at 3 MB  x{f[2]:.2f} at 30 MB  x{f[3]:.2f} at 300 MB")
        return out


def fit_transfer(probes, monotone: bool = False, shrink: float = SHRINK, smooth: float = SMOOTH,
                 min_probes: int = MIN_PROBES, slope_shrink: float = SLOPE_SHRINK,
                 footprint: bool = True, streaming_group: bool = True) -> TransferModel:
    """Fit the curves from ``probes``: iterable of (key, base_us, new_us) (a probe's base latency is
    the base profile's row of the same key; new_us measured on the new device).

    Three terms: per group a curve of log(new / base) against log10(base us); what it leaves, a slope
    against arithmetic intensity; and (``footprint``) one curve for all groups against the kernel's
    footprint (log10 MB moved), weighted by how memory-bound it is (:func:`memory_weight`): a GEMV
    streaming 150 MB of weights and one reading 1 MB have the same intensity and may take the same
    base latency as a convolution, but on another device one runs from DRAM and the other from L2,
    which need not scale alike (a Zen 5 EPYC -> a Xeon guest: memory-bound kernels of 0.1-1 MB 1.3x,
    of 4-16 MB 2.3-3.5x, compute-bound ones of those latencies 1.3-1.4x). The terms are fitted in
    turn (:data:`FOOT_PASSES` passes), the curves on what the footprint term leaves and back. Groups
    are :func:`curve_group`'s (``streaming_group``; else :func:`group_of`'s, as before it existed).

    TransferError when fewer than ``min_probes`` usable probes are given."""
    data: dict = {}
    for key, base, new in probes:
        if not (base and new and base > 0 and new > 0 and math.isfinite(base) and math.isfinite(new)):
            continue
        c = Config.from_key(key)
        data.setdefault(curve_group(c) if streaming_group else group_of(c), []).append((math.log10(base), math.log(new / base), log_intensity(c),
                                                    log_mb(c)))
    n = sum(len(v) for v in data.values())
    if n < min_probes:
        raise TransferError(f"{n} usable probe(s): a transfer needs at least {min_probes} (a bigger budget, or "
                            "a base profile that shares kernels with this plan)")
    arr = {g: np.array(v) for g, v in data.items()}
    # what a kernel's footprint adds to its group's curve, in proportion to how memory-bound it is
    mw = {g: memory_weight(a[:, 2], a[:, 0]) for g, a in arr.items()}
    foot_b = {g: _basis(a[:, 3], FOOT_KNOTS) for g, a in arr.items()}
    allx = np.concatenate([a[:, 0] for a in arr.values()])
    flat = np.full(len(KNOTS), float(np.median(np.concatenate([a[:, 1] for a in arr.values()]))))
    center = float(np.median(np.concatenate([a[:, 2] for a in arr.values()])))
    prec_groups: dict = {}
    for g in arr:
        prec_groups.setdefault(g[1], []).append(g)
    foot = np.zeros(len(FOOT_KNOTS))
    for _ in range(FOOT_PASSES if footprint else 1):
        adj = {g: a[:, 1] - mw[g] * (foot_b[g] @ foot) for g, a in arr.items()}
        pooled, _ = _fit_curve(allx, np.concatenate(list(adj.values())), flat, shrink, smooth, monotone)
        prec = {}
        for p, gs in prec_groups.items():
            prec[p], _ = _fit_curve(np.concatenate([arr[g][:, 0] for g in gs]), np.concatenate([adj[g] for g in gs]),
                                    pooled, shrink, smooth, monotone)
        curves, counts, resid = {}, {}, {}
        for (k, p), a in arr.items():
            curves[f"{k}/{p}"], _ = _fit_curve(a[:, 0], adj[k, p], prec[p], shrink, smooth, monotone)
            counts[f"{k}/{p}"] = len(a)
            resid[k, p] = np.c_[a[:, 2], adj[k, p] - _basis(a[:, 0]) @ curves[f"{k}/{p}"]]
        # second stage: what the curves leave, against arithmetic intensity (a wider vector unit speeds up
        # compute-bound kernels of one latency more than memory-bound ones), one slope per level, shrunk
        slopes = {"pooled": _slope(np.concatenate(list(resid.values())), center, 0.0, slope_shrink)}
        by_prec: dict = {}
        for (k, p), r in resid.items():
            by_prec.setdefault(p, []).append(r)
        for p, rs in by_prec.items():
            slopes[f"precision:{p}"] = _slope(np.concatenate(rs), center, slopes["pooled"], slope_shrink)
        for (k, p), r in resid.items():
            slopes[f"{k}/{p}"] = _slope(r, center, slopes[f"precision:{p}"], slope_shrink)
        if not footprint:
            break
        # third stage: the footprint curve, on what the groups' curves and slopes leave
        target = {g: arr[g][:, 1] - _basis(arr[g][:, 0]) @ curves[f"{g[0]}/{g[1]}"]
                  - slopes[f"{g[0]}/{g[1]}"] * (arr[g][:, 2] - center) for g in arr}
        foot = _fit_design(np.vstack([mw[g][:, None] * foot_b[g] for g in arr]),
                           np.concatenate([target[g] for g in arr]), np.zeros(len(FOOT_KNOTS)), FOOT_SHRINK,
                           FOOT_SMOOTH)
    err = np.abs(np.concatenate([arr[g][:, 1] - (_basis(arr[g][:, 0]) @ curves[f"{g[0]}/{g[1]}"])
                                 - slopes[f"{g[0]}/{g[1]}"] * (arr[g][:, 2] - center) - mw[g] * (foot_b[g] @ foot)
                                 for g in arr]))
    spec = {"monotone": monotone, "shrink": shrink, "smooth": smooth, "slope_shrink": slope_shrink, "huber": HUBER,
            "footprint": footprint, "streaming_group": streaming_group, "foot_shrink": FOOT_SHRINK, "foot_smooth": FOOT_SMOOTH,
            "n_probes": n, "in_sample_abs_log_error": {"median": round(float(np.median(err)), 4),
                                                       "p90": round(float(np.percentile(err, 90)), 4)},
            "median_ratio": round(float(np.exp(np.median(np.concatenate([a[:, 1] for a in arr.values()])))), 4)}
    return TransferModel(tuple(pooled), prec, curves, counts, spec, slopes, center,
                         tuple(float(v) for v in foot) if footprint else ())


def _slope(zr: np.ndarray, center: float, prior: float, lam: float) -> float:
    """Ridge slope of residuals zr[:, 1] on zr[:, 0] - center, pulled toward ``prior`` with weight ``lam``."""
    z = zr[:, 0] - center
    return float((np.sum(z * zr[:, 1]) + lam * prior) / (np.sum(z * z) + lam))


def identity_model(note: str = "") -> TransferModel:
    """new = base for every kernel (the closest profile as is)."""
    z = tuple(0.0 for _ in KNOTS)
    return TransferModel(z, {}, {}, {}, {"method": "identity", "note": note})


# -- no probe: what the device descriptions say -------------------------------------------------

#: x86 cores by (vendor, core), from the vendors' public descriptions: ``simd_bits``, the width of the
#: FMA datapath a vector instruction runs on (Zen 1 splits a 256-bit AVX2 instruction over 128-bit pipes,
#: Zen 2 to Zen 4 have 256-bit pipes and Zen 4 splits a 512-bit instruction over them, Zen 5 server cores
#: have full 512-bit pipes); ``load_bits``, the bits the core loads from L1 per cycle (Zen 1: two 128-bit
#: loads; Zen 2 to Zen 4: two 256-bit loads; Zen 5: two 512-bit loads, and AMD doubled the L2 -> L1 fill
#: bandwidth with it); ``l2_fill_bits``, the bits per cycle the L2 fills into L1 (Zen 1 to Zen 4 32 bytes,
#: Zen 5 64 bytes): a kernel whose data does not fit L1 streams no faster than that, whatever its loads;
#: ``ipc``, integer/scalar IPC relative to Zen 3, from AMD's launch statements: Zen 2 +15% over Zen 1
#: (Computex 2019), Zen 3 +19% over Zen 2 (Ryzen 5000 launch, 2020), Zen 4 +13% over Zen 3 (Ryzen 7000
#: launch, 2022), Zen 5 +16% over Zen 4 (2024). The datapath widths: A. Fog, "The microarchitecture of
#: Intel, AMD and VIA CPUs" (agner.org/optimize, the Zen chapters: 256-bit instructions as two 128-bit
#: micro-ops on Zen 1, full 256-bit units from Zen 2); A. J. Yee, "Zen5's AVX512 Teardown"
#: (numberworld.org/blogs/2024_8_7_zen5_avx512_teardown: Zen 4 double-pumps its 256-bit units, Zen 5
#: widens them to 512 bits). Clocks are not in this table: they differ between parts of one family
#: (EPYC 9004: the 128-core 9754 2.25 GHz base / 3.10 GHz boost, the 64-core 9554 3.10 / 3.75 GHz, as the
#: vendor's table is listed at hpctech.co.jp/product/amd-epyc-9004-series) and come from the device record only.
MICROARCH = {
    ("AMD", "zen1"): {"name": "Zen 1", "simd_bits": 128, "load_bits": 256, "l2_fill_bits": 256, "ipc": 1 / 1.19 / 1.15},
    ("AMD", "zen2"): {"name": "Zen 2", "simd_bits": 256, "load_bits": 512, "l2_fill_bits": 256, "ipc": 1 / 1.19},
    ("AMD", "zen3"): {"name": "Zen 3", "simd_bits": 256, "load_bits": 512, "l2_fill_bits": 256, "ipc": 1.0},
    ("AMD", "zen4"): {"name": "Zen 4", "simd_bits": 256, "load_bits": 512, "l2_fill_bits": 256, "ipc": 1.13},
    ("AMD", "zen5"): {"name": "Zen 5", "simd_bits": 512, "load_bits": 1024, "l2_fill_bits": 512, "ipc": 1.13 * 1.16},
    # Intel server cores (family 6 spans every Intel core since 2006: these are found by model or flags).
    # Golden Cove and its successors in Sapphire/Emerald/Granite Rapids: two 512-bit FMA units and AMX
    # (C. Ho, "Sapphire Rapids: Golden Cove Hits Servers", chipsandcheese.com/p/a-peek-at-sapphire-rapids),
    # two 512-bit loads per cycle and a 64-byte-per-cycle L2 (Intel 64 and IA-32 Architectures
    # Optimization Reference Manual, Golden Cove chapter); Skylake-SP to Ice Lake-SP: two 512-bit FMA
    # units on the Gold 6xxx/Platinum parts (one on some lower bins: the description cannot tell), the same
    # loads and L2 width. Per-clock scalar speed is not published across vendors: counted equal to Zen 4.
    ("Intel", "gnr-class"): {"name": "Golden Cove-class server core (Sapphire/Emerald/Granite Rapids)",
                             "simd_bits": 512, "load_bits": 1024, "l2_fill_bits": 512, "ipc": 1.13},
    ("Intel", "skx-class"): {"name": "Skylake-SP/Ice Lake-SP-class server core",
                             "simd_bits": 512, "load_bits": 1024, "l2_fill_bits": 512, "ipc": 1.13},
}
#: AMD cores by family and model, as the Linux kernel sorts them (arch/x86/kernel/cpu/amd.c, bsp_init_amd:
#: family 0x17 models 0x00-0x2f and 0x50-0x5f Zen 1, 0x30-0x4f, 0x60-0x7f, 0x90-0x91 and 0xa0-0xaf Zen 2;
#: family 0x19 models 0x00-0x0f and 0x20-0x5f Zen 3, 0x10-0x1f and 0x60-0xaf Zen 4; family 0x1a Zen 5).
#: EPYC 7001 reports family 23 model 1, 7002 (Rome) 23/49, 7003 (Milan) 25/1, 9004 (Genoa) 25/17. Per family:
#: (the earlier core, its models, the core of every other model or of an unrecorded one).
AMD_CORES = {"23": ("zen1", (range(0x00, 0x30), range(0x50, 0x60)), "zen2"),
             "25": ("zen3", (range(0x00, 0x10), range(0x20, 0x60)), "zen4"),
             "26": (None, (), "zen5")}
#: Intel family 6 models of the entries above (Intel's own list, as in the Linux kernel's
#: arch/x86/include/asm/intel-family.h): Sapphire Rapids 0x8F, Emerald Rapids 0xCF, Granite Rapids 0xAD/0xAE;
#: Skylake/Cascade/Cooper Lake-SP 0x55, Ice Lake-SP 0x6A/0x6C. A virtual machine may report another model
#: (one seen here reported 167 with Sapphire-Rapids-class flags): then the flags decide.
INTEL_MODELS = {"143": "gnr-class", "207": "gnr-class", "173": "gnr-class", "174": "gnr-class",
                "85": "skx-class", "106": "skx-class", "108": "skx-class"}
#: FMA pipes of the cores above (all have two): the compute roof is pipes x lanes x 2 FLOPs per cycle
FMA_PIPES = 2
#: a family not recorded (or an Intel model not in INTEL_MODELS), inferred from the ISA flags (the first
#: row whose flags a device has all of; Zen 5 added AVX-VNNI, Zen 4 added AVX-512; AMX came with
#: Sapphire Rapids)
FAMILY_BY_FLAGS = ((("AMD", frozenset({"avx512f", "avx_vnni"})), "zen5"), (("AMD", frozenset({"avx512f"})), "zen4"),
                   (("Intel", frozenset({"avx512f", "amx_int8"})), "gnr-class"),
                   (("Intel", frozenset({"avx512f"})), "skx-class"))
#: int8 GEMM throughput of onnxruntime's AMX kernels against its AVX-512 VNNI ones on the same Intel core:
#: measured on a Sapphire-Rapids-class Xeon with a CPUID mask hiding AMX (int8 MatMul 128x768x768: 106 us
#: with AMX, 251 us without; the tiles' peak is 8x VNNI's, the runtime's packing and the rest of the kernel
#: keep it far below). Between vendors it does not hold: that Xeon against the Zen 5 profile (20,256 rows
#: measured on both), int8 convolutions and GEMMs ran 1.28-1.42x the Zen 5's time, fp32 ones 1.29-1.45x:
#: the Zen 5's VNNI kernels keep up with the Xeon's AMX ones. So the factor applies between Intel cores only.
AMX_INT8 = 251.0 / 106.0
#: the flag under which the AVX-512 datapath width decides the speed of compute kernels
WIDE_FLAG = "avx512f"
#: kinds whose time is mostly vector FMA work (the others move memory or pay dispatch)
COMPUTE_KINDS = ("Conv", "MatMul", "ConvTranspose", "Gemm")
#: an int8 dot product without VNNI takes vpmaddubsw + vpmaddwd (two multiply uops on the same ports)
#: where VNNI takes one vpdpbusd: compute-bound int8 kernels run at about half the rate
NO_VNNI_INT8 = 2.0
#: below this base latency (us) a kernel is dominated by the runtime's fixed per-call work (a few us
#: of dispatch, scalar code: it scales with clock x IPC); above DISPATCH_US * 10 by its class's
#: resource (vector datapath, L1/L2 bandwidth); log-linear between
DISPATCH_US = 3.0


def _mhz(device: dict):
    """The device's clock in MHz when its record says (``clock_mhz`` or ``cpu_mhz``), else None."""
    for k in ("clock_mhz", "cpu_mhz", "max_mhz"):
        v = device.get(k)
        if isinstance(v, (int, float)) and v > 0:
            return float(v)
    return None


def _vector_bits(device: dict, core: dict | None) -> int:
    """Bits of vector FMA work per instruction the runtime can use: the widest ISA the flags allow
    (AVX-512 512, AVX2 256, else 128), no wider than the core's datapath when it is known."""
    flags = set(device.get("cpu_flags") or [])
    bits = 512 if WIDE_FLAG in flags else 256 if "avx2" in flags else 128
    return min(bits, core["simd_bits"]) if core else bits


def _has_vnni(device: dict) -> bool:
    """VNNI at the width the runtime uses (AVX-512 VNNI with AVX-512, AVX-VNNI with AVX2 only)."""
    flags = set(device.get("cpu_flags") or [])
    return "avx512_vnni" in flags if WIDE_FLAG in flags else "avx_vnni" in flags


def _has_amx(device: dict) -> bool:
    """AMX int8 tiles, which onnxruntime's int8 GEMMs use when the CPU has them (with AVX-512)."""
    flags = set(device.get("cpu_flags") or [])
    return "amx_int8" in flags and WIDE_FLAG in flags


def _load_bits(device: dict, core: dict | None) -> int:
    """Bits loaded per cycle: the core's (when known), no more than two vector registers of the ISA."""
    width = 512 if WIDE_FLAG in set(device.get("cpu_flags") or []) else 256
    return min(core["load_bits"], 2 * width) if core else 2 * width


def _stream_bits(device: dict, core: dict | None) -> int:
    """Bits per cycle a kernel whose data is bigger than L1 streams at: its loads (:func:`_load_bits`),
    no more than the L2 fills L1 (the core's ``l2_fill_bits`` when known)."""
    load = _load_bits(device, core)
    return min(load, core["l2_fill_bits"]) if core and core.get("l2_fill_bits") else load


def _roof(device: dict, core: dict | None) -> dict:
    """The device's roofline per cycle: FLOPs (fp) and int8 ops (int8) of its vector units, bytes
    streamed from L2 (:func:`_stream_bits`)."""
    lanes = _vector_bits(device, core) / 32
    return {"fp": FMA_PIPES * lanes * 2, "int8": FMA_PIPES * lanes * 8 / (1.0 if _has_vnni(device) else NO_VNNI_INT8),
            "bytes": _stream_bits(device, core) / 8}


@dataclass(frozen=True)
class DescriptionModel(TransferModel):
    """The transfer of :func:`description_model`: with a kernel's arithmetic intensity (as
    :meth:`TransferModel.apply_keys` gives it) its ratio comes from the two devices' rooflines
    (``roof``: FLOPs and bytes per cycle of each side, the clock ratio, the latency ramp from dispatch);
    without one, from the per-kind curves (compute kinds compute-bound, the others memory-bound)."""

    roof: dict = field(default_factory=dict)

    def log_ratio(self, kind: str, precision: str, base_us, log_intensity=None, log_mb=None) -> np.ndarray:
        if log_intensity is None or not self.roof:
            return super().log_ratio(kind, precision, base_us)
        r = self.roof
        x = np.log10(np.maximum(np.atleast_1d(np.asarray(base_us, float)), 1e-3))
        i = np.broadcast_to(np.maximum(10 ** np.asarray(log_intensity, float) - 0.01, 1e-3), x.shape)
        q = "int8" if precision.startswith("int8") else "fp"
        # time per byte of the kernel on each side: the longer of its compute and its streaming
        tn = np.maximum(i / r["new"][q], 1.0 / r["new"]["bytes"])
        tb = np.maximum(i / r["base"][q], 1.0 / r["base"]["bytes"])
        cls = np.log(tn / tb)
        if r.get("big_flat"):  # memory-bound kernels over 1 ms on a side with the smaller LLC: no faster
            mem = (i / r["new"][q] <= 1.0 / r["new"]["bytes"]) & (i / r["base"][q] <= 1.0 / r["base"]["bytes"])
            cls = np.where(mem & (x > 3.0), 0.0, cls)
        x0 = math.log10(DISPATCH_US)
        t = np.clip((x - x0), 0.0, 1.0)  # log-linear from DISPATCH_US to ten times it
        return r["dispatch"] + t * (cls + r["log_clock"] - r["dispatch"])


def core_of(device: dict) -> tuple[dict | None, str]:
    """The MICROARCH entry of ``device`` (a device record) and how it was found ("" when unknown)."""
    vendor, fm = device.get("vendor") or "", device.get("cpu_family_model") or ""
    flags = set(device.get("cpu_flags") or [])
    fam, _, model = fm.partition("/") if fm else ("", "", "")
    if vendor == "AMD" and fam in AMD_CORES:
        first, models, other = AMD_CORES[fam]
        m = int(model) if model.isdigit() else -1
        return (MICROARCH[vendor, first if any(m in r for r in models) else other],
                f"family/model {fm}" if m >= 0 else f"family {fam}")
    if vendor == "Intel" and model in INTEL_MODELS:
        return MICROARCH[vendor, INTEL_MODELS[model]], f"family/model {fm}"
    if not fam or vendor == "Intel":
        for (v, need), guess in FAMILY_BY_FLAGS:
            if v == vendor and need <= flags:
                return MICROARCH[v, guess], f"inferred from its ISA flags ({', '.join(sorted(need))})"
    return None, ""


def description_model(base: dict, new: dict) -> TransferModel:
    """The transfer the two device descriptions imply, with no measurement (``base``, ``new``: device
    records as :func:`latency.profiles.host_device` gives them, with a clock (``clock_mhz`` or
    ``cpu_mhz``) when known).

    Physical classes, each ratio new/base = (base resource / new resource), an unknown fact counting
    as equal:

    * dispatch (kernels under :data:`DISPATCH_US` on the base): clock x IPC of the core family;
    * above it, each kernel by its arithmetic intensity I (FLOPs per byte, from the op registry) on
      the two devices' rooflines (:class:`DescriptionModel`): time per byte = max(I / compute roof,
      1 / stream roof), the compute roof being FMA pipes x the vector lanes the ISA and the core's
      datapath give (int8: x4 ops per lane, halved without VNNI, :data:`NO_VNNI_INT8`), the stream
      roof the bytes per cycle a kernel bigger than L1 gets: the core's loads, no more than its L2
      fills L1 (:func:`_stream_bits`); times the clock. A batch-1 matrix-vector product or a
      depthwise convolution is then memory-bound where the vector units outrun the L2 (AVX-512 and
      AVX2 on one Zen 5 core stream at the same 64 bytes per cycle), a dense convolution compute-bound;
      cache sizes enter only when they differ: a device whose last-level cache is smaller than the
      other's is not assumed faster on memory-bound kernels above 1 ms (they may stream from DRAM there;
      DRAM bandwidth is not in the description, so those count as equal);
    * without an intensity (:meth:`TransferModel.ratio` of a kind alone) compute kinds
      (:data:`COMPUTE_KINDS`) are taken compute-bound and the others memory-bound;

    between :data:`DISPATCH_US` and ten times it the curve goes log-linearly from the dispatch ratio
    to the class's. None of these factors is fitted: they are the ratios of the described resources.
    The spec says what was known."""
    known = []
    log_clock = 0.0
    mb, mn = _mhz(base), _mhz(new)
    if mb and mn:
        log_clock = math.log(mb / mn)
        known.append(f"clock {mb:g} vs {mn:g} MHz")
    cb, how_b = core_of(base)
    cn, how_n = core_of(new)
    log_ipc = 0.0
    if cb and cn:
        log_ipc = math.log(cb["ipc"] / cn["ipc"])
        if cb is not cn:
            known.append(f"core {cb['name']} ({how_b}) vs {cn['name']} ({how_n})")
    vb, vn = _vector_bits(base, cb), _vector_bits(new, cn)
    log_vec = math.log(vb / vn)
    lb, ln = _load_bits(base, cb), _load_bits(new, cn)
    sb, sn = _stream_bits(base, cb), _stream_bits(new, cn)
    log_load = math.log(sb / sn)
    if vb != vn:
        known.append(f"vector FMA width {vb} vs {vn} bits")
    if lb != ln:
        known.append(f"L1 loads {lb} vs {ln} bits/cycle")
    if sb != sn or lb != ln:
        known.append(f"streamed from L2 {sb} vs {sn} bits/cycle")
    log_int8 = math.log(NO_VNNI_INT8) * ((not _has_vnni(new)) - (not _has_vnni(base)))
    if log_int8:
        known.append(f"VNNI {'yes' if _has_vnni(base) else 'no'} vs {'yes' if _has_vnni(new) else 'no'}")
    same_vendor_intel = base.get("vendor") == new.get("vendor") == "Intel"
    log_amx = math.log(AMX_INT8) * (_has_amx(base) - _has_amx(new)) if same_vendor_intel else 0.0
    if log_amx:
        known.append(f"AMX {'yes' if _has_amx(base) else 'no'} vs {'yes' if _has_amx(new) else 'no'}")
    log_int8 += log_amx
    log_big = log_load  # memory-bound kernels over 1 ms: the LLC may not hold them on the smaller side
    llb, lln = base.get("llc_mb"), new.get("llc_mb")
    big_flat = False
    if llb and lln and llb != lln:
        known.append(f"LLC {llb:g} vs {lln:g} MB")
        if (lln < llb and log_load < 0) or (llb < lln and log_load > 0):
            log_big, big_flat = 0.0, True
    disp = log_clock + log_ipc
    x0, x1 = math.log10(DISPATCH_US), math.log10(DISPATCH_US) + 1

    def ramp(top, big=None):
        big = top if big is None else big
        out = []
        for x in KNOTS:
            t = min(1.0, max(0.0, (x - x0) / (x1 - x0)))
            out.append(disp + t * ((big if x > 3.0 else top) + log_clock - disp))
        return tuple(out)

    rb, rn = _roof(base, cb), _roof(new, cn)
    if log_amx:  # AMX on one Intel side only: its int8 GEMMs at AMX_INT8 times the VNNI rate
        (rn if _has_amx(new) else rb)["int8"] *= AMX_INT8
    curves = {}
    for k in COMPUTE_KINDS:
        for p in ("fp32", "fp16", "int8", "int8_dynamic"):
            curves[f"{k}/{p}"] = ramp(log_vec + (log_int8 if p.startswith("int8") else 0.0))
    other = ramp(log_load, log_big)
    spec = {"method": "description", "known": known or ["nothing that differs"],
            "dispatch_ratio": round(math.exp(disp), 4),
            "compute_ratio": round(math.exp(log_clock + log_vec), 4),
            "compute_int8_ratio": round(math.exp(log_clock + log_vec + log_int8), 4),
            "other_ratio": round(math.exp(log_clock + log_load), 4),
            "roofline": {"base": rb, "new": rn,
                         "units": "FLOPs (fp), int8 ops (int8) and bytes streamed from L2 per cycle"},
            "rationale": "ratios of described resources (clock, IPC, vector width, L1 load and L2 fill widths, VNNI, "
                         "AMX between Intel cores) "
                         "on each kernel's arithmetic intensity; none fitted"}
    roof = {"base": rb, "new": rn, "dispatch": disp, "log_clock": log_clock,
            "big_flat": big_flat}
    return DescriptionModel(other, {}, curves, {}, spec, roof=roof)


# -- no probe: the base's context and overhead moved with the description ---------------------------

#: overhead terms that are per-run or per-kernel dispatch work (scalar runtime code: the dispatch ratio)
_DISPATCH_TERMS = ("per_run_us", "per_kernel_us", "per_short_kernel_us", "per_long_kernel_us")
#: overhead and context terms in microseconds per MB of weights (memory traffic: the memory-bound ratio)
_MEMORY_TERMS = ("per_weight_mb_us", "per_lowint_conv_mb_us", "stream_us_per_mb", "memory_us_per_mb")


def transfer_calibration(model: TransferModel, context_in, overhead_in, context_out, overhead_out) -> dict:
    """Write the base's context and overhead files (``context_in``, ``overhead_in``; either may be None
    or missing, then nothing is written for it) moved to the new device by ``model`` (a
    :func:`description_model`): what ``--budget 0`` gives the new profile.

    Both files hold microseconds measured on the base. The per-run and per-kernel overhead terms are
    dispatch work (x the dispatch ratio: clock x IPC) and the split between short and long kernels a
    kernel time (x the memory-bound kinds' ratio at that time); the time per MB of weights fetched
    inside a model and of low-intensity convolution weights is memory traffic (x the memory-bound
    kinds' ratio). The dimensionless parts are the base's: the in-model log ratios (keyed by a kernel's
    time alone; re-keying them by each kind's ratio was tried: pair 1's median moved by under 2 points,
    the emulated-AVX2 pair lost 8 points within ±10% on one of its two ground truths) and the cache gates
    by working set (their memory level is DRAM's, which no description gives).
    Returns the ratios used and the terms scaled."""
    spec = model.spec or {}
    r_disp = float(spec.get("dispatch_ratio", 1.0))
    r_mem = float(spec.get("other_ratio", 1.0))
    done = {"dispatch_ratio": r_disp, "memory_ratio": r_mem, "scaled": []}
    note = (f"moved from the base by the device descriptions (no probe): dispatch terms x{r_disp:g}, memory "
            f"traffic terms x{r_mem:g}; in-model ratios and cache gates the base's")
    for path_in, path_out, what in ((context_in, context_out, "context"), (overhead_in, overhead_out, "overhead")):
        if not (path_in and os.path.exists(path_in)):
            continue
        with open(path_in) as f:
            d = json.load(f)
        for k in _DISPATCH_TERMS + _MEMORY_TERMS:
            if isinstance(d.get(k), (int, float)) and not isinstance(d.get(k), bool):
                d[k] = d[k] * (r_disp if k in _DISPATCH_TERMS else r_mem)
                done["scaled"].append(f"{what}.{k}")
        if isinstance(d.get("short_us"), (int, float)) and d["short_us"] > 0:
            d["short_us"] = d["short_us"] * float(model.ratio("Elementwise", "fp32", [d["short_us"]])[0])
            done["scaled"].append(f"{what}.short_us")
        d["transferred"] = note
        tmp = f"{path_out}.tmp"
        with open(tmp, "w") as f:  # atomically: a reader never sees half a file
            json.dump(d, f, indent=1)
        os.replace(tmp, path_out)
    return done
