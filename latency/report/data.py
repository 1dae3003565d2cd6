"""What the report's figures plot, as plain records: kernel work, roofline ceilings, profile rows.

Work per kernel comes from the op registry (:mod:`latency.ops`): ``get_kind(kind).work(params)["flops"]``
(a multiply-add counts 2) and :func:`latency.ops.bytes_moved` (each tensor touched once). Roofline
ceilings are *estimated from the profile's own fastest measured kernels*, never taken from a spec
sheet (except for a target that has nothing but a spec sheet, and then they say so).
"""

from __future__ import annotations

from ..errors import LatencyError
from ..ops import Config, bytes_moved, get_kind

#: a ceiling is the median of this many best rows (one lucky row does not set the roof)
BEST_ROWS = 5
#: kinds whose registry byte count is what they really move (each tensor read or written once); Gather and
#: Slice are left out of the bandwidth roof: they count a whole table or input of which they read a part
STREAM_KINDS = ("Elementwise", "Activation", "Copy", "Transpose", "Concat", "Split", "Reorder", "Norm", "Pool",
                "Reduce", "Pad")


def kernel_work(key: str) -> tuple[float, float]:
    """(operations, bytes moved) of one kernel config ``key``: a multiply-add counts 2 operations."""
    c = Config.from_key(key)
    kind = get_kind(c.kind)
    return float(kind.work(c.params)["flops"]), float(bytes_moved(kind, c.params, c.precision))


def kernel_points(est, latencies_us: dict | None = None) -> list[dict]:
    """One record per priced kernel of an :class:`latency.estimator.Estimate` with work: name, kind,
    precision, source, ops, bytes, intensity (ops/byte), latency_us (the estimate's, or ``latencies_us[name]``
    when given, e.g. measured) and gops (10^9 operations per second at that latency)."""
    out = []
    for k in est.kernels:
        if k.source == "free" or not k.key:
            continue
        lat = latencies_us.get(k.name) if latencies_us is not None else k.latency_us
        if lat is None or lat <= 0:
            continue
        ops, by = kernel_work(k.key)
        if ops <= 0 or by <= 0:
            continue
        out.append({"name": k.name, "kind": k.kind, "precision": k.precision, "source": k.source, "ops": ops,
                    "bytes": by, "intensity": ops / by, "latency_us": lat, "gops": ops / lat / 1e3})
    return out


def profile_rows(db, target: str | None = None, kind: str | None = None):
    """Successful measurements of ``target`` (default: the database's only target) as a DataFrame with the
    kind, precision, sparsity, key, latency_us, plus ops, bytes and ``shape`` (the key of the same shape
    at fp32, dense: rows with equal ``shape`` differ only in precision or sparsity). Returns (frame, target name).
    """
    from ..store import Store

    with Store(db, readonly=True) as st:
        names = sorted({t["name"] for t in st.targets()})
        if target is None:
            if len(names) != 1:
                raise LatencyError(f"{db} holds {len(names)} targets ({', '.join(names) or 'none'}); "
                                   f"name one with --target")
            target = names[0]
        tid = st.find_target(target)
        if tid is None:
            raise LatencyError(f"{db} has no target {target!r}; it has: {', '.join(names) or 'none'}")
        df = st.measurements(tid, kind=kind, ok_only=True)
    df = df[df["latency_us"].notna() & (df["latency_us"] > 0)].copy()
    cfgs = [Config.from_key(k) for k in df["key"]]
    work = [kernel_work(k) for k in df["key"]]
    df["ops"] = [w[0] for w in work]
    df["bytes"] = [w[1] for w in work]
    df["shape"] = [Config(c.kind, c.params, "fp32", "0").key for c in cfgs]
    return df[["kind", "precision", "sparsity", "key", "shape", "latency_us", "ops", "bytes"]].reset_index(drop=True), \
        target


def ceilings(df, precisions=("fp32",)) -> dict:
    """Roofline ceilings from profile rows (:func:`profile_rows`): per precision the compute roof (GOP/s)
    and one bandwidth roof (GB/s), each the median of the ``BEST_ROWS`` best rows, with what they came from.
    These are achieved rates of the profile's own kernels, so a lower bound of the device's peaks."""
    import numpy as np

    out = {"compute": {}, "bandwidth": None}
    dense = df[df["sparsity"] == "0"]
    for p in precisions:
        sub = dense[(dense["precision"] == p) & (dense["ops"] > 0)]
        if len(sub) < BEST_ROWS:
            continue
        rate = (sub["ops"] / sub["latency_us"] / 1e3).sort_values(ascending=False)
        best = rate.iloc[:BEST_ROWS]
        kinds = sorted(set(sub.loc[best.index, "kind"]))
        out["compute"][p] = {"gops": float(np.median(best)), "basis": f"median of the {BEST_ROWS} fastest {p} "
                             f"kernels of the profile ({', '.join(kinds)}), measured", "n_rows": int(len(sub))}
    sub = dense[(dense["bytes"] > 0) & dense["kind"].isin(STREAM_KINDS)]
    if len(sub) >= BEST_ROWS:
        bw = (sub["bytes"] / sub["latency_us"] / 1e3).sort_values(ascending=False).iloc[:BEST_ROWS]
        kinds = sorted(set(sub.loc[bw.index, "kind"]))
        out["bandwidth"] = {"gbs": float(np.median(bw)), "basis": f"median of the {BEST_ROWS} highest bytes/s "
                            f"data-movement kernels of the profile ({', '.join(kinds)}), measured; their tensors "
                            f"can sit in cache, so this is not a DRAM bandwidth"}
    return out


def spec_ceilings(spec: dict, precisions=("fp32",)) -> dict:
    """Ceilings of a spec-sheet-only target (derived from its datasheet, nothing measured)."""
    src = spec.get("source", "spec sheet")
    return {"compute": {p: {"gops": float(spec["peak_gflops"].get(p, spec["peak_gflops"]["fp32"])),
                            "basis": f"{src} peak (derived, not measured)"} for p in precisions},
            "bandwidth": {"gbs": float(spec["mem_gbs"]), "basis": f"{src} memory bandwidth (derived, not measured)"}}


def precision_ratios(df, base: str = "fp32"):
    """Rows at another precision (dense) beside their ``base`` twin of the same shape: precision, ops,
    base_us, latency_us, ratio (latency / base latency)."""
    import pandas as pd

    dense = df[df["sparsity"] == "0"]
    ref = dense[dense["precision"] == base].set_index("shape")["latency_us"]
    ref = ref[~ref.index.duplicated()]
    other = dense[(dense["precision"] != base) & dense["shape"].isin(ref.index)].copy()
    if other.empty:
        return pd.DataFrame(columns=["precision", "ops", "base_us", "latency_us", "ratio"])
    other["base_us"] = other["shape"].map(ref)
    other["ratio"] = other["latency_us"] / other["base_us"]
    return other[["kind", "precision", "ops", "base_us", "latency_us", "ratio"]].reset_index(drop=True)


def sparsity_ratios(df):
    """Sparse rows beside their dense twin (same shape and precision): kind, precision, sparsity,
    fraction (zeros in the weights, 2:4 = 0.5), ratio (sparse latency / dense latency)."""
    import pandas as pd

    from ..ops import sparsity_fraction

    key = df["shape"] + "|" + df["precision"]
    dense = pd.Series(df["latency_us"].to_numpy(), index=key)[(df["sparsity"] == "0").to_numpy()]
    dense = dense[~dense.index.duplicated()]
    sp = df[df["sparsity"] != "0"].copy()
    sp["dense_us"] = (sp["shape"] + "|" + sp["precision"]).map(dense)
    sp = sp[sp["dense_us"].notna()]
    if sp.empty:
        return pd.DataFrame(columns=["kind", "precision", "sparsity", "fraction", "ratio"])
    sp["fraction"] = [sparsity_fraction(s) for s in sp["sparsity"]]
    sp["ratio"] = sp["latency_us"] / sp["dense_us"]
    return sp[["kind", "precision", "sparsity", "fraction", "ratio"]].reset_index(drop=True)
