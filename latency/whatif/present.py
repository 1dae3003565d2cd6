"""What ``latency whatif`` turns its flags into and prints: a choice from command-line flags, the
one-screen text of an answer, and the sensitivity table as text (the CLI stays a thin wrapper)."""

from __future__ import annotations


def choice_from_flags(precision=None, fp32_nodes=None, sparsity=None, prune=None, prune_nodes=None) -> dict:
    """A plan choice (see :mod:`latency.whatif.plan`) from the CLI's flags: ``fp32_nodes`` and
    ``prune_nodes`` comma-separated names; ``prune`` applies to ``prune_nodes`` when given (refused there
    when impossible), else to every node that can be pruned."""
    from .plan import PRECISIONS, InvalidChoice, prune_digit, sparsity_digit
    from .tools import TOOL_PRECISIONS

    choice: dict = {}
    if precision:
        if precision == "best":  # a GPU builder's own choice per layer (TensorRT): the whole model, nothing else
            if fp32_nodes or sparsity not in (None, "") or prune not in (None, ""):
                raise InvalidChoice("--precision best (the builder picks each layer's precision) cannot be combined "
                                    "with --fp32-nodes, --sparsity or --prune")
            return {"precision": "best"}
        if precision not in PRECISIONS + TOOL_PRECISIONS:
            raise InvalidChoice(f"unknown precision {precision!r}; valid: {', '.join(PRECISIONS + TOOL_PRECISIONS)}, "
                                "best (GPU targets)")
        if precision in TOOL_PRECISIONS and (sparsity not in (None, "") or prune not in (None, "")):
            raise InvalidChoice(f"--precision {precision} cannot be combined with --sparsity or --prune (one candidate "
                                f"is converted by one tool); valid with it: --fp32-nodes")
        choice["precision"] = precision
    if fp32_nodes:
        choice["fp32_nodes"] = [n for n in fp32_nodes.split(",") if n]
    if sparsity not in (None, ""):
        choice["sparsity"] = sparsity if str(sparsity).strip() == "2:4" else _ratio(sparsity, "sparsity")
        sparsity_digit(choice["sparsity"])  # a bad ratio fails before the model is loaded
    if prune not in (None, ""):
        r = _ratio(prune, "prune")
        prune_digit(r)
        names = [n for n in (prune_nodes or "").split(",") if n]
        if names:
            choice["nodes"] = {n: {"prune": r} for n in names}
        else:
            choice["prune"] = r
    return choice


def _ratio(v, what):
    from .plan import InvalidChoice

    try:
        return float(v)
    except (TypeError, ValueError):
        raise InvalidChoice(f"{what} {v!r} is not a number in [0, 1)" + (" or '2:4'" if what == "sparsity" else "")) \
            from None


def text(result, top: int = 10) -> str:
    """The answer to one choice: total against the plain model, where the time goes, what changed."""
    e = result.estimate
    lines = [f"what-if on {e.target}: {result.total_ms:.3f} ms against {result.baseline_ms:.3f} ms for the plain "
             f"model (x{result.baseline_ms / result.total_ms:.2f})" if result.total_ms > 0 else "no kernels priced",
             f"  precision: {result.family}" + (f" ({len(result.nodes_to_exclude)} node(s) kept fp32: "
                                                f"nodes_to_exclude={list(result.nodes_to_exclude)[:6]}"
                                                + (" ..." if len(result.nodes_to_exclude) > 6 else "") + ")"
                                                if result.nodes_to_exclude else ""),
             f"  weights read: {result.weight_mb:.1f} MB (plain model {result.baseline_weight_mb:.1f} MB); kernels "
             f"{len(e.kernels)}; sources {e.sources}"]
    if e.uncovered:
        lines.append(f"  {len(e.uncovered)} node(s) NOT priced (not in the total), e.g. {e.uncovered[0].node}: "
                     f"{e.uncovered[0].reason}")
    ch = sorted(result.changes, key=lambda c: -abs(c["delta_us"]))
    if ch:
        lines.append(f"  largest changes ({len(ch)} parts of the model changed):")
        for c in ch[:top]:
            lines.append(f"    {c['delta_us']:+10.1f} us  {c['owner']}  ({len(c['kernels_before'])} -> "
                         f"{len(c['kernels'])} kernels)")
    ks = sorted(e.kernels, key=lambda k: -k.latency_us)[:top]
    if ks:
        lines.append("  top kernels:")
        for k in ks:
            lines.append(f"    {k.latency_us:10.1f} us  {k.kind:12s} {k.precision:12s} {k.source:24s} {k.name}")
    for n in result.notes:
        lines.append(f"  note: {n}")
    return "\n".join(lines)


def sensitivity_text(df, top: int = 20) -> str:
    """The sensitivity table, largest savings first (ms; negative = faster)."""
    import pandas as pd

    cols = [c for c in df.columns if c not in ("node", "op")]
    with pd.option_context("display.width", 200, "display.max_columns", 20):
        best = df.assign(_best=df[cols].min(axis=1)).sort_values("_best").drop(columns="_best").head(top)
        out = [f"change of the total (ms, negative = faster) when only that node changes; plain model "
               f"{df.attrs.get('baseline_ms', float('nan')):.3f} ms", best.to_string(index=False, float_format="%.3f")]
    out += [f"note: {n}" for n in df.attrs.get("notes", [])]
    return "\n".join(out)
