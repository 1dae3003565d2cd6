"""The report's matplotlib figures. Pure: each function takes estimates / records / frames, writes one PNG
and returns a :class:`FigureFile` (path, title, caption saying what is shown and where the numbers came from).

Figures are drawn on matplotlib's Agg canvas directly (``matplotlib.figure.Figure``), so making them
neither needs a display nor changes the backend of a session that imported pyplot.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

DPI = 110
#: sources that are measurements of the exact config; every other source is derived (model or prior)
MEASURED_SOURCES = ("table", "table:dense-equivalent")


@dataclass(frozen=True)
class FigureFile:
    path: str
    title: str
    caption: str


def _tight(fig) -> None:
    """tight_layout, quietly where a figure's labels leave it no room (a one-kernel model)."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        fig.tight_layout()


def _figure(w: float, h: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(w, h), dpi=DPI)
    FigureCanvasAgg(fig)
    return fig


def _save(fig, path, title: str, caption: str) -> FigureFile:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI)
    return FigureFile(str(path), title, caption)


def kind_colors(kinds) -> dict:
    """A fixed colour per op kind (registry order), the same in every figure."""
    from matplotlib import colormaps

    from ..ops import kinds as all_kinds

    order = list(all_kinds())
    cmap = colormaps["tab20"]
    return {k: cmap((order.index(k) if k in order else len(order)) % 20) for k in kinds}


def _short(name: str, n: int = 34) -> str:
    return name if len(name) <= n else "..." + name[-(n - 3):]


def _sources(est) -> str:
    return ", ".join(f"{k}: {v}" for k, v in sorted(est.sources.items()))


def breakdown(est, path, model: str, top: int = 15) -> FigureFile:
    """Top kernels by estimated latency (left) and the estimate grouped by op kind (right)."""
    from matplotlib.patches import Patch

    ks = sorted((k for k in est.kernels if k.source != "free"), key=lambda k: -k.latency_us)
    shown = ks[:top]
    by_kind: dict = {}
    for k in ks:
        by_kind[k.kind] = by_kind.get(k.kind, 0.0) + k.latency_us
    kinds = sorted(by_kind, key=lambda x: -by_kind[x])
    col = kind_colors(kinds)
    fig = _figure(12.5, max(4.2, 0.3 * len(shown) + 1.8))
    ax, ax2 = fig.subplots(1, 2, gridspec_kw={"width_ratios": [1.7, 1]})
    y = range(len(shown))
    ax.barh(y, [k.latency_us for k in shown], color=[col[k.kind] for k in shown], edgecolor="black", linewidth=0.4,
            hatch=None)
    for i, k in enumerate(shown):
        if k.source not in MEASURED_SOURCES:
            ax.barh(i, k.latency_us, color="none", edgecolor="black", hatch="///", linewidth=0.4)
    ax.set_yticks(list(y), [f"{_short(k.name)} [{k.precision}]" for k in shown], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("estimated latency inside the model (us)")
    ax.set_title(f"top {len(shown)} of {len(ks)} kernels", fontsize=10)
    handles = [Patch(color=col[k], label=k) for k in kinds if any(s.kind == k for s in shown)]
    if any(k.source not in MEASURED_SOURCES for k in shown):
        handles.append(Patch(facecolor="white", edgecolor="black", hatch="///", label="derived (regressor/prior)"))
    ax.legend(handles=handles, fontsize=8, loc="lower right")
    total_us = sum(by_kind.values()) or 1.0
    ax2.barh(range(len(kinds)), [by_kind[k] / 1000 for k in kinds], color=[col[k] for k in kinds],
             edgecolor="black", linewidth=0.4)
    for i, k in enumerate(kinds):
        share = 100 * by_kind[k] / total_us
        ax2.text(by_kind[k] / 1000, i, f" {by_kind[k] / 1000:.3g} ms ({share:.0f}%)" if share >= 10 else
                 f" {by_kind[k] / 1000:.3g} ms ({share:.1f}%)", va="center", fontsize=8)
    ax2.set_yticks(range(len(kinds)), kinds, fontsize=8)
    ax2.invert_yaxis()
    ax2.set_xlabel("estimated latency (ms)")
    ax2.set_xlim(0, max(by_kind.values()) / 1000 * 1.35 if by_kind else 1)
    ax2.set_title("by op kind (% of kernel sum)", fontsize=10)
    title = f"{model} on {est.target}: estimated {est.total_ms:.2f} ms"
    fig.suptitle(title, fontsize=11)
    _tight(fig)
    caption = (f"Estimated latency of each kernel inside the model (the profile's price alone, corrected by the "
               f"in-model context model), the {len(shown)} largest of {len(ks)} priced kernels, coloured by op kind; "
               f"hatched bars are derived (regressor or prior), the others are table hits (measured configs). "
               f"Right: the same summed per kind. Sources: {_sources(est)}. Total {est.total_ms:.3f} ms = kernels "
               f"{est.kernel_sum_us / 1000:.3f} ms + overhead {est.overhead_us / 1000:.3f} ms "
               f"({est.overhead_source or 'no overhead model'}). Profile: {est.profile or 'none (spec sheet)'}.")
    return _save(fig, path, title, caption)


def targets(ests: dict, path, model: str, derived: dict | None = None) -> FigureFile:
    """The same model on several targets: total (left), share of time per op kind (right).

    ``ests``: target name -> Estimate; ``derived``: target name -> why its numbers are derived."""
    derived = derived or {}
    names = list(ests)
    totals = [ests[n].total_ms for n in names]
    fig = _figure(12.5, max(3.6, 0.55 * len(names) + 2.0))
    ax, ax2 = fig.subplots(1, 2, gridspec_kw={"width_ratios": [1, 1.25]})
    colors = ["#bbbbbb" if n in derived else "#4c72b0" for n in names]
    # totals a factor 20 or more apart go on a log axis, as dots: a bar's length means nothing there
    log = len(totals) > 1 and min(totals) > 0 and max(totals) / min(totals) > 20
    for i, n in enumerate(names):
        if log:
            ax.scatter([totals[i]], [i], s=90, color=colors[i], edgecolor="black", zorder=3,
                       marker="s" if n in derived else "o")
        else:
            ax.barh(i, totals[i], color=colors[i], edgecolor="black", linewidth=0.4,
                    hatch="///" if n in derived else None)
        ax.text(totals[i] * (1.15 if log else 1.0), i, f" {totals[i]:.3g} ms", va="center", fontsize=8)
    ax.set_yticks(range(len(names)), [n + ("\n(derived: spec sheet)" if n in derived else "") for n in names],
                  fontsize=8)
    ax.invert_yaxis()
    if log:
        ax.set_xscale("log")
        pos = [t for t in totals if t > 0]  # a model of free ops only estimates 0 ms on some target
        if pos:
            ax.set_xlim(min(pos) / 3, max(pos) * 8)
        ax.set_ylim(len(names) - 0.5, -0.5)
        ax.grid(True, axis="x", which="major", alpha=0.3)
    else:
        ax.set_xlim(0, max(max(totals) * 1.25, 1e-3))  # every total 0 (nothing priced): still a valid axis
    ax.set_xlabel("estimated total latency (ms" + (", log scale)" if log else ")"))
    ax.set_title("total per target", fontsize=10)
    kinds_all: dict = {}
    for e in ests.values():
        for k in e.kernels:
            kinds_all[k.kind] = kinds_all.get(k.kind, 0.0) + k.latency_us / max(e.kernel_sum_us, 1e-9)
    kinds = [k for k in sorted(kinds_all, key=lambda x: -kinds_all[x]) if kinds_all[k] > 0][:9]
    col = kind_colors(kinds)
    left = [0.0] * len(names)
    for kd in kinds + ["other"]:
        vals = []
        for n in names:
            e = ests[n]
            s = sum(k.latency_us for k in e.kernels if (k.kind == kd) or (kd == "other" and k.kind not in kinds))
            vals.append(100 * s / max(e.kernel_sum_us, 1e-9))
        ax2.barh(range(len(names)), vals, left=left, color=col.get(kd, "#dddddd"), edgecolor="black", linewidth=0.3,
                 label=kd)
        left = [a + b for a, b in zip(left, vals)]
    ax2.set_yticks(range(len(names)), names, fontsize=8)
    ax2.invert_yaxis()
    ax2.set_xlim(0, 100)
    ax2.set_xlabel("share of the kernel sum (%)")
    ax2.set_title("where the time goes, per op kind", fontsize=10)
    ax2.legend(fontsize=7, ncol=1, loc="center left", bbox_to_anchor=(1.0, 0.5))
    title = f"{model} across targets"
    fig.suptitle(title, fontsize=11)
    _tight(fig)
    why = "; ".join(f"{n}: {w}" for n, w in derived.items())
    caption = ("Estimated total latency of the same model on each target (left) and how the kernel sum splits by "
               "op kind (right). Blue marks come from each target's measured profile (table hits, regressors and "
               "priors fitted on it, see the sources per target below); grey marks (hatched bars, squares) are "
               "derived from a "
               "spec sheet, nothing measured" + (f" ({why})" if why else "") + ". Sources: "
               + "; ".join(f"{n}: {_sources(e)}" for n, e in ests.items()) + ".")
    return _save(fig, path, title, caption)


def _roof(ax, ceil, xs, how: str = "best measured in the profile"):
    import numpy as np

    bw = (ceil.get("bandwidth") or {}).get("gbs")
    styles = ["-", "--", ":"]
    x = np.logspace(np.log10(min(xs) / 3), np.log10(max(xs) * 3), 200)
    for i, (prec, c) in enumerate(ceil.get("compute", {}).items()):
        y = np.minimum(c["gops"], bw * x) if bw else np.full_like(x, c["gops"])
        ax.plot(x, y, color="black", linestyle=styles[i % 3], linewidth=1.2,
                label=f"{prec} roof ({how}): {c['gops']:.0f} GOP/s")
    if bw:
        top = max((c["gops"] for c in ceil.get("compute", {}).values()), default=bw * x[-1])
        xb = x[bw * x <= 2 * top]  # past the ridge the slope is no roof: stop it there (keeps the y range useful)
        ax.plot(xb, bw * xb, color="grey", linewidth=0.8, linestyle="-.",
                label=f"bandwidth roof ({how}): {bw:.0f} GB/s")


def roofline(points: list, ceil: dict, path, model: str, target: str, measured: list | None = None,
             derived: bool = False, left_out: tuple = (0, 0.0)) -> FigureFile:
    """Kernels on a roofline: achieved GOP/s against operations per byte moved, log-log.

    ``points``: :func:`latency.report.data.kernel_points` of the estimate; ``measured``: the same at measured
    latencies (hollow markers); ``ceil``: :func:`latency.report.data.ceilings` (or ``spec_ceilings``);
    ``left_out``: (kernels, share of the kernel sum) without arithmetic, which a roofline cannot place."""
    fig = _figure(9.5, 6.2)
    ax = fig.subplots()
    kinds = sorted({p["kind"] for p in points})
    col = kind_colors(kinds)
    total = sum(p["latency_us"] for p in points) or 1.0
    for kd in kinds:
        ps = [p for p in points if p["kind"] == kd]
        ax.scatter([p["intensity"] for p in ps], [p["gops"] for p in ps], s=[12 + 600 * p["latency_us"] / total
                   for p in ps], color=col[kd], edgecolor="black", linewidth=0.4, alpha=0.85,
                   label=f"{kd} (estimated)")
    if measured:
        for kd in kinds:
            ps = [p for p in measured if p["kind"] == kd]
            if ps:
                ax.scatter([p["intensity"] for p in ps], [p["gops"] for p in ps], s=28, facecolor="none",
                           edgecolor=col[kd], linewidth=1.2, marker="D")
        ax.scatter([], [], s=28, facecolor="none", edgecolor="black", marker="D", label="measured (validate)")
    xs = [p["intensity"] for p in points] or [1.0]
    if ceil.get("compute") or ceil.get("bandwidth"):
        _roof(ax, ceil, xs, "spec sheet" if derived else "best measured in the profile")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("arithmetic intensity (operations per byte moved)")
    ax.set_ylabel("achieved throughput (GOP/s, multiply-add = 2 ops)")
    title = f"Roofline of {model} on {target}" + (" (spec-sheet roofs)" if derived else "")
    ax.set_title(title, fontsize=11)
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    _tight(fig)
    roofs = "; ".join(f"{p} compute roof {c['gops']:.0f} GOP/s: {c['basis']}"
                      for p, c in ceil.get("compute", {}).items())
    if ceil.get("bandwidth"):
        roofs += f"; bandwidth roof {ceil['bandwidth']['gbs']:.0f} GB/s: {ceil['bandwidth']['basis']}"
    caption = ("Each priced kernel of the model at its estimated latency (marker area: share of the kernel sum): "
               "operations (from the op registry, multiply-add = 2) and bytes moved (every tensor touched once) over "
               "the estimated time. " + ("Hollow diamonds: the same kernels at their measured in-model time "
               "on this host (onnxruntime per-node profile, latency validate); the roofs are the profile's. "
               if measured else "")
               + (f"Left out: {left_out[0]} kernels without arithmetic (copies, transposes, gathers: "
                  f"{100 * left_out[1]:.1f}% of the kernel sum). " if left_out[0] else "")
               + "Roofs: " + (roofs or "none (the profile has too few rows)")
               + (". The roofs are best achieved rates, not the device's datasheet peaks." if not derived else "."))
    return _save(fig, path, title, caption)


def validation(res: dict, path, model: str) -> FigureFile:
    """Predicted against measured time per kernel (log-log) with y = x and +/-10% lines."""
    import numpy as np

    ks = [k for k in res["kernels"] if k["measured_us"] and k["predicted_us"] and k["measured_us"] > 0
          and k["predicted_us"] > 0]
    fig = _figure(7.8, 7.0)
    ax = fig.subplots()
    kinds = sorted({k["kind"] for k in ks})
    col = kind_colors(kinds)
    for kd in kinds:
        sel = [k for k in ks if k["kind"] == kd]
        ax.scatter([k["measured_us"] for k in sel], [k["predicted_us"] for k in sel], s=26, color=col[kd],
                   edgecolor="black", linewidth=0.4, label=f"{kd} ({len(sel)})", zorder=3)
    vals = [k["measured_us"] for k in ks] + [k["predicted_us"] for k in ks] or [1.0, 10.0]
    lo, hi = min(vals) / 1.5, max(vals) * 1.5
    x = np.array([lo, hi])
    ax.plot(x, x, color="black", linewidth=1, label="predicted = measured")
    ax.plot(x, 1.1 * x, color="grey", linestyle="--", linewidth=0.8, label="±10%")
    ax.plot(x, 0.9 * x, color="grey", linestyle="--", linewidth=0.8)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlim(lo, hi)
    ax.set_ylim(lo, hi)
    ax.set_aspect("equal")
    ax.set_xlabel("measured inside the model (us, onnxruntime per-node profile)")
    ax.set_ylabel("predicted inside the model (us)")
    tot = res["total"]
    within = sum(1 for k in ks if abs(k["error_pct"]) <= 10)
    title = f"{model} on {res['target']}: predicted vs measured"
    ax.set_title(title, fontsize=11)
    ax.text(0.03, 0.97, f"total: predicted {tot['predicted_ms']:.3g} ms, measured {tot['measured_ms']:.3g} ms "
            f"({tot['error_pct']:+.1f}%)\nkernels within ±10%: {within} of {len(ks)}", transform=ax.transAxes,
            va="top", fontsize=8.5, bbox={"facecolor": "white", "alpha": 0.85, "edgecolor": "grey"})
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    _tight(fig)
    caption = (f"One point per kernel paired with the runtime ({len(ks)} of {res['matching']['priced_kernels']} "
               f"priced kernels): x is its time measured inside the model on this host (onnxruntime per-node "
               f"profile, min over {res['protocol']['kernel_repeats']} sessions of the median of "
               f"{res['protocol']['kernel_runs']} runs; the profiler reports whole microseconds), y the estimate's "
               f"in-model latency (table / regressor / "
               f"prior, see the breakdown). Above the line the estimate is slow. The total in the box is measured "
               f"{res['protocol']['description'].split(';')[0]}.")
    return _save(fig, path, title, caption)


def _plain_log_y(ax):
    """Log y axis labelled 0.2, 0.5, 1, 2, 5 rather than 2x10^-1 (ratios read as plain numbers)."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    ax.yaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.yaxis.set_minor_formatter(NullFormatter())


def _rows_are(target: str) -> str:
    """What a profile's rows are: measurements, except on the formula-priced test target."""
    return "fake formula, not a measurement" if target == "fake" else "measured"


_PREC_COLORS = {"fp32": "#4c72b0", "fp16": "#55a868", "int8": "#c44e52", "int8_dynamic": "#8172b2"}


def latency_vs_ops(df, kind: str, target: str, path) -> FigureFile:
    """A profile's measured latency against operations for one kind, dense rows, coloured by precision."""
    d = df[(df["kind"] == kind) & (df["sparsity"] == "0") & (df["ops"] > 0)]
    fig = _figure(8.5, 6.6)
    ax = fig.subplots()
    for prec in [p for p in _PREC_COLORS if p in set(d["precision"])]:
        s = d[d["precision"] == prec]
        ax.scatter(s["ops"], s["latency_us"], s=6 if len(s) > 500 else 14, alpha=0.45 if len(s) > 500 else 0.8,
                   color=_PREC_COLORS[prec], label=f"{prec} ({len(s)} shapes)", linewidths=0)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("operations per run (multiply-add = 2)")
    ax.set_ylabel(f"latency (us, {_rows_are(target)})")
    title = f"{kind} on {target}: latency vs work"
    ax.set_title(title, fontsize=11)
    ax.grid(True, which="major", alpha=0.3)
    # below the axes: a dense cloud leaves no free corner for a legend
    leg = ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.11), ncol=2, frameon=False)
    for h in leg.legend_handles:
        h.set_alpha(1)
        if hasattr(h, "set_sizes"):
            h.set_sizes([30])  # one marker size in the legend, whatever the cloud's density
    _tight(fig)
    caption = (f"Every dense {kind} row of the profile ({len(d)} measured configs): the latency stored by the "
               f"profiler (min over rounds of the per-node kernel time, one thread) against the config's operation "
               f"count from the op registry. Spread at equal work is shape and layout, what the regressor learns.")
    return _save(fig, path, title, caption)


def precision_ratio(ratios, kind: str, target: str, path) -> FigureFile:
    """Latency at int8 / fp16 / int8_dynamic over fp32 for the same shapes, against the fp32 latency."""
    import numpy as np

    d = ratios[ratios["kind"] == kind] if len(ratios) else ratios
    fig = _figure(8.5, 6.6)
    ax = fig.subplots()
    precs = [p for p in _PREC_COLORS if p != "fp32" and p in set(d["precision"])]
    for prec in precs:
        s = d[d["precision"] == prec]
        med = float(np.median(s["ratio"]))
        ax.scatter(s["base_us"], s["ratio"], s=8 if len(s) > 300 else 16, alpha=0.5 if len(s) > 300 else 0.8,
                   color=_PREC_COLORS[prec], linewidths=0, label=f"{prec}/fp32: median {med:.2f} ({len(s)} shapes)")
    ax.axhline(1.0, color="black", linewidth=1, label="as fast as fp32")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel(f"fp32 latency of the same shape (us, {_rows_are(target)})")
    ax.set_ylabel("latency ratio to fp32 (below 1: faster)")
    _plain_log_y(ax)
    title = f"{kind} on {target}: precision ratio"
    ax.set_title(title, fontsize=11)
    ax.grid(True, which="both", alpha=0.25)
    if not precs:
        ax.text(0.5, 0.5, "no shape measured at fp32 and another precision", transform=ax.transAxes, ha="center")
    # below the axes: a dense cloud leaves no free corner for a legend
    leg = ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.11), ncol=2, frameon=False)
    for h in leg.legend_handles:
        h.set_alpha(1)
        if hasattr(h, "set_sizes"):
            h.set_sizes([30])  # one marker size in the legend, whatever the cloud's density
    _tight(fig)
    caption = (f"For each {kind} shape the profile measured at fp32 and at another precision (dense weights), the "
               f"ratio of the two measured latencies, against the fp32 latency. int8 is static QDQ (the int8 kernel "
               f"only), int8_dynamic quantizes its activations at run time, fp16 runs whatever kernels the "
               f"runtime has for it.")
    return _save(fig, path, title, caption)


def sparsity(sr, target: str, path, kind: str | None = None) -> FigureFile:
    """Median latency ratio sparse/dense against the fraction of zero weights, per kind and precision."""
    import numpy as np

    fig = _figure(8.5, 6.0)
    ax = fig.subplots()
    groups = sorted({(k, p) for k, p in zip(sr["kind"], sr["precision"])}) if len(sr) else []
    col = kind_colors({k for k, _ in groups})
    styles = {"fp32": "-", "int8": "--", "fp16": ":", "int8_dynamic": "-."}
    n = 0
    for kd, prec in groups:
        s = sr[(sr["kind"] == kd) & (sr["precision"] == prec)]
        unstr = s[s["sparsity"] != "2:4"]
        fr = sorted(set(unstr["fraction"]))
        med = [float(np.median(unstr[unstr["fraction"] == f]["ratio"])) for f in fr]
        p10 = [float(np.percentile(unstr[unstr["fraction"] == f]["ratio"], 10)) for f in fr]
        p90 = [float(np.percentile(unstr[unstr["fraction"] == f]["ratio"], 90)) for f in fr]
        lw = 2.2 if kd == kind else 1.2
        ax.plot([0.0] + fr, [1.0] + med, color=col[kd], linestyle=styles.get(prec, "-"), marker="o", linewidth=lw,
                label=f"{kd} {prec} ({len(s)} rows)")
        ax.fill_between(fr, p10, p90, color=col[kd], alpha=0.12)
        st = s[s["sparsity"] == "2:4"]
        if len(st):
            ax.scatter([0.5], [float(np.median(st["ratio"]))], marker="*", s=140, color=col[kd], edgecolor="black",
                       zorder=4)
        n += len(s)
    if groups:
        ax.scatter([], [], marker="*", s=140, color="white", edgecolor="black", label="2:4 structured (median)")
    ax.axhline(1.0, color="black", linewidth=0.8)
    ax.set_xlim(-0.03, 1.0)
    # at least 0.8-1.2 on the y axis: a few % of noise must not look like an effect
    lo, hi = ax.get_ylim()
    ax.set_ylim(min(lo, 0.8), max(hi, 1.2))
    ax.set_xlabel("fraction of weights that are zero")
    ax.set_ylabel("latency ratio sparse / dense, same shape (below 1: faster)")
    title = f"Sparsity on {target}: does it make kernels faster?"
    ax.set_title(title, fontsize=11)
    ax.grid(True, alpha=0.3)
    if not groups:
        ax.text(0.5, 0.5, "the profile has no sparse rows with a dense twin", transform=ax.transAxes, ha="center")
    else:
        ax.legend(fontsize=8, loc="best")
    _tight(fig)
    caption = (f"Median ratio of measured latency with zeroed weights to the same shape dense ({n} sparse rows of "
               f"the profile), band: 10th to 90th percentile over shapes; stars: 2:4 structured sparsity. A flat "
               f"line at 1 means the runtime's kernels do not exploit sparsity on this target"
               + (f"; {kind} drawn thicker." if kind else "."))
    return _save(fig, path, title, caption)
