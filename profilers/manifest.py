"""Write the manifest of a shipped profile: how, where and when it was measured, and what it holds.

    python -m profilers.manifest tables/x86-avx2-ort.db > tables/MANIFEST.md
"""

from __future__ import annotations

import json
import os
import sys

import numpy as np

from latency.ops import Config
from latency.store import Store


def ratios(df, precision_from: str, precision_to: str = None, sparse: bool = False) -> dict:
    """Median measured ratio (other/fp32-dense) per kind over configs measured both ways."""
    lat = dict(zip(df["key"], df["latency_us"]))
    out: dict = {}
    for key, v in lat.items():
        c = Config.from_key(key)
        if sparse:
            if c.sparsity == "0" or c.precision != precision_from:
                continue
            base = lat.get(Config(c.kind, c.params, c.precision, "0").key)
            label = (c.kind, f"{c.precision} {c.sparsity}")
        else:
            if c.precision != precision_from or c.sparsity != "0":
                continue
            base = lat.get(Config(c.kind, c.params, "fp32", "0").key)
            label = (c.kind, c.precision)
        if base:
            out.setdefault(label, []).append(v / base)
    return {k: (float(np.median(r)), float(np.percentile(r, 10)), float(np.percentile(r, 90)), len(r))
            for k, r in sorted(out.items())}


def main(path: str) -> None:
    st = Store(path, readonly=True)
    lines = [f"# Profile manifest: `{os.path.basename(path)}`", ""]
    for t in st.targets():
        tid = t["target_id"]
        fp = t["fingerprint"] if isinstance(t["fingerprint"], dict) else json.loads(t["fingerprint"])
        df = st.measurements(tid)
        ok = df[df["error"].isna()]
        runs = st._rows("select * from runs where target_id = ? order by started_at", (tid,))
        protos = st._rows("select * from protocols")
        lines += [f"## Target `{t['name']}` (id `{tid}`)", "",
                  f"* host CPU: {fp.get('cpu_model')} ({fp.get('arch')}); ISA flags: {', '.join(fp.get('cpu_flags', []))}",
                  f"* runtime: {fp.get('runtime')} {fp.get('runtime_version')}, {fp.get('provider')}, "
                  f"{fp.get('threads')} intra-op thread, process pinned to one core",
                  f"* measured: {df['measured_at'].min()[:16]} to {df['measured_at'].max()[:16]} UTC "
                  f"in {len(runs)} sweep run(s): " + "; ".join(f"`{r['argv']}` ({r['status']}, "
                                                              f"{r['n_measured']} ok, {r['n_failed']} failed)"
                                                              for r in runs),
                  f"* rows: {len(df)} ({len(ok)} measured, {len(df) - len(ok)} failed and kept with their error); "
                  f"file size {os.path.getsize(path) / 1e6:.1f} MB",
                  f"* unstable after re-measurement (two lowest rounds > 5% apart): {int(ok['unstable'].sum())} rows",
                  ""]
        for p in protos:
            spec = p["spec"] if isinstance(p["spec"], dict) else json.loads(p["spec"])
            lines.append(f"* protocol `{p['name']}` (id `{p['protocol_id']}`): " +
                         ", ".join(f"{k}={v}" for k, v in spec.items()))
        lines += ["", "### Coverage (measured rows)", "", "| kind | fp32 | int8 | int8_dynamic | fp16 | sparse (any level) |",
                  "|---|---|---|---|---|---|"]
        for kind, g in ok.groupby("kind"):
            dense = g[g["sparsity"] == "0"]
            c = dense.groupby("precision").size().to_dict()
            lines.append(f"| {kind} | {c.get('fp32', 0)} | {c.get('int8', 0)} | {c.get('int8_dynamic', 0)} | "
                         f"{c.get('fp16', 0)} | {int((g['sparsity'] != '0').sum())} |")
        lines += ["", "### What the measurements say about precision and sparsity here",
                  "", "Median latency ratio against the same shape in dense fp32 (p10-p90, number of pairs). "
                  "Each row times the op's own kernel: casts, layout reorders and edge (de)quantization the "
                  "runtime adds around an isolated op are stored apart in `extra.edge_us`. Sparse rows compare "
                  "with the dense row of the same shape and precision.", "",
                  "| kind | variant | median | p10 | p90 | pairs |", "|---|---|---|---|---|---|"]
        for prec in ("int8", "int8_dynamic", "fp16"):
            for (kind, lab), (m, lo, hi, n) in ratios(ok, prec).items():
                lines.append(f"| {kind} | {lab} | {m:.2f} | {lo:.2f} | {hi:.2f} | {n} |")
        for prec in ("fp32", "int8"):
            for (kind, lab), (m, lo, hi, n) in ratios(ok, prec, sparse=True).items():
                lines.append(f"| {kind} | {lab} sparse vs dense | {m:.2f} | {lo:.2f} | {hi:.2f} | {n} |")
        lines.append("")
    print("\n".join(lines))


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "tables/x86-avx2-ort.db")
