"""Figures and one self-contained HTML page about a model's estimate (``latency report``) and about a
profile (``latency db plot``).

Pure with respect to measuring: it takes :class:`latency.estimator.Estimate` objects and validation
dicts (from ``profilers.validate``), reads profile databases, and writes PNG files and an HTML page.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import LatencyError

__all__ = ["profile_plots", "write_report"]


def _profile_figures(df, target: str, out: Path, kinds: list, highlight: str | None) -> list:
    from . import data, figures

    figs = []
    ratios = data.precision_ratios(df)
    for kd in kinds:
        figs.append(figures.latency_vs_ops(df, kd, target, out / f"profile-{kd}-latency.png"))
        figs.append(figures.precision_ratio(ratios, kd, target, out / f"profile-{kd}-precision.png"))
    figs.append(figures.sparsity(data.sparsity_ratios(df), target, out / "profile-sparsity.png", kind=highlight))
    if target == "fake":  # the test target's "profile" is a formula: say so wherever its rows are shown
        import dataclasses

        figs = [dataclasses.replace(f, caption=f.caption + " The fake target's rows come from a closed formula, "
                                    "not from a device.") for f in figs]
    return figs


def profile_plots(db, out_dir, kind: str, target: str | None = None) -> list:
    """Latency vs work and precision ratio for ``kind``, and the sparsity curves of every kind, from a
    profiling database; writes PNGs under ``out_dir`` and returns their :class:`figures.FigureFile` s."""
    from ..ops import get_kind
    from . import data

    get_kind(kind)  # an unknown kind name fails here, listing the valid ones
    df, target = data.profile_rows(db, target)
    have = sorted(set(df["kind"]))
    if kind not in have:
        raise LatencyError(f"{db} has no measured {kind} rows for target {target}; it has: {', '.join(have) or 'none'}")
    return _profile_figures(df, target, Path(out_dir), [kind], kind)


def _fmt(v, nd=1):
    return "-" if v is None else f"{v:.{nd}f}"


def _pct(v):
    return "-" if v is None else f"{v:+.1f}%"


def write_report(model: str, estimates: dict, out_dir, validation: dict | None = None, derived: dict | None = None,
                 skipped: dict | None = None, top: int = 15, profile_kinds: int = 2, progress=None) -> dict:
    """Write the report of ``model`` (a label) under ``out_dir``: PNG figures and ``report.html``.

    ``estimates``: target name -> Estimate, the first is the target of the breakdown, roofline and profile
    figures. ``validation``: the dict of ``profilers.validate.validate`` for that target (adds the predicted
    vs measured figure and measured points on the roofline). ``derived``: target name -> why its numbers
    are not measured (spec sheet). ``skipped``: target name -> why it has no estimate. ``profile_kinds``: how
    many of the model's biggest op kinds get profile plots. ``progress``: called as ``progress(done, total, what)``
    after each section. Returns {"html": path, "figures": [paths]}.
    """
    from ..targets import get_target
    from . import data, figures
    from .html import table, write_html

    if not estimates:
        raise LatencyError("nothing to report: no target could estimate the model")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    derived, skipped = dict(derived or {}), dict(skipped or {})
    primary = next(iter(estimates))
    est = estimates[primary]
    sections = []
    n_done = 0

    def done(what):
        nonlocal n_done
        n_done += 1
        if progress:
            progress(n_done, 5, what)

    # the estimate
    figs = [figures.breakdown(est, out / "breakdown.png", model, top=top)]
    ks = sorted((k for k in est.kernels if k.source != "free"), key=lambda k: -k.latency_us)[:top]
    rows = [(k.name, k.kind, k.precision, k.sparsity, _fmt(k.latency_us), _fmt(k.isolated_us),
             f"{100 * k.share:.1f}%", k.source) for k in ks]
    text = [f"Estimated total {est.total_ms:.3f} ms on {primary}: kernels {est.kernel_sum_us / 1000:.3f} ms + overhead "
            f"{est.overhead_us / 1000:.3f} ms ({est.overhead_source}). Profile: {est.profile or 'none'}. "
            f"In-model context: {est.context_source}."]
    text += [f"warning: {w}" for w in est.warnings]
    if est.uncovered:
        text.append(f"warning: {len(est.uncovered)} node(s) could not be priced and are not in the total: "
                    + ", ".join(f"{u.node} [{u.op_type}]" for u in est.uncovered[:10]))
    sections.append({"heading": f"Per-kernel breakdown on {primary}", "text": text, "figures": figs,
                     "html": table(["kernel", "kind", "precision", "sparsity", "latency_us (in model)",
                                    "isolated_us (alone)", "share", "source"], rows, left=4)})
    done("breakdown")

    # across targets
    if len(estimates) > 1:
        f = figures.targets(estimates, out / "targets.png", model, derived)
        rows = [(n, f"{e.total_ms:.3f}", f"{e.kernel_sum_us / 1000:.3f}", f"{e.overhead_us / 1000:.3f}",
                 "derived: " + derived[n] if n in derived else "measured profile",
                 ", ".join(f"{k}: {v}" for k, v in sorted(e.sources.items()))) for n, e in estimates.items()]
        text = [f"{n}: not estimated ({why})" for n, why in skipped.items()]
        sections.append({"heading": "The same model across targets", "figures": [f], "text": text,
                         "html": table(["target", "total_ms", "kernels_ms", "overhead_ms", "numbers", "sources"],
                                       rows, left=1)})
    done("targets")

    # roofline
    precs = sorted({k.precision for k in est.kernels if k.source != "free"}, key=lambda p: p != "fp32")[:2] or ["fp32"]
    points = data.kernel_points(est)
    df = None
    if est.profile:
        df, _ = data.profile_rows(est.profile, est.target)
        ceil = data.ceilings(df, precs)
        spec = False
    else:
        spec = get_target(est.target).spec
        ceil = data.spec_ceilings(spec, precs) if spec else {"compute": {}, "bandwidth": None}
    measured = None
    if validation:
        meas = {k["name"]: k["measured_us"] for k in validation["kernels"] if k["measured_us"]}
        measured = data.kernel_points(est, meas)
    if points:
        names = {p["name"] for p in points}
        rest = [k for k in est.kernels if k.source != "free" and k.name not in names]
        left_out = (len(rest), sum(k.latency_us for k in rest) / max(est.kernel_sum_us, 1e-9))
        f = figures.roofline(points, ceil, out / "roofline.png", model, primary, measured=measured, derived=bool(spec),
                             left_out=left_out)
        sections.append({"heading": f"Roofline on {primary}", "figures": [f]})
    done("roofline")

    # validation
    if validation:
        v = validation
        f = figures.validation(v, out / "validation.png", model)
        tot, ksum = v["total"], v["kernel_sum"]
        rows = [("total (end to end), ms", _fmt(tot["predicted_ms"], 3), _fmt(tot["measured_ms"], 3),
                 _pct(tot["error_pct"])),
                ("kernel sum (per-node profile), us", _fmt(ksum["predicted_us"]), _fmt(ksum["measured_us"]),
                 _pct(ksum["error_pct"]))]
        vk = sorted((k for k in v["kernels"] if k["measured_us"]), key=lambda k: -k["measured_us"])[:top]
        krows = [(k["name"], k["kind"], k["source"], _fmt(k["predicted_us"]), _fmt(k["measured_us"]),
                  _pct(k["error_pct"])) for k in vk]
        text = [f"Measured on this host: {v['protocol']['description']}; pinned to core {v['protocol']['core']}."]
        text += [f"warning: {w}" for w in v["warnings"] if w not in est.warnings]
        sections.append({"heading": f"Predicted vs measured on {v['target']}", "text": text, "figures": [f],
                         "html": table(["", "predicted", "measured", "error"], rows)
                         + table(["kernel", "kind", "source", "predicted_us", "measured_us", "error"], krows, left=3)})
    done("validation")

    # the profile behind the estimate
    if df is not None and len(df):
        by_kind: dict = {}
        for k in est.kernels:
            if k.source != "free":
                by_kind[k.kind] = by_kind.get(k.kind, 0.0) + k.latency_us
        have = set(df["kind"])
        kinds = [k for k in sorted(by_kind, key=lambda x: -by_kind[x]) if k in have][:profile_kinds]
        figs = _profile_figures(df, est.target, out, kinds, kinds[0] if kinds else None)
        sections.append({"heading": f"The {primary} profile: {len(df)} measured rows",
                         "text": [f"From {est.profile} (the model's {', '.join(kinds) or 'kinds'} shown)."],
                         "figures": figs})
    done("profile plots")

    intro = [f"Model: {model}. Targets: {', '.join(estimates)}"
             + (f" (not estimated: {', '.join(skipped)})" if skipped else "") + ". Every number says where it came "
             "from: measured (profile table, validate), regressor or prior (derived from the profile), or spec sheet "
             "(derived, nothing measured)."]
    html_path = write_html(out / "report.html", f"Latency report: {model}", sections, intro)
    paths = [f.path for s in sections for f in s.get("figures", [])]
    return {"html": str(html_path), "figures": paths}
