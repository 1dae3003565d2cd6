"""Op coverage over the zoo and a corpus of real architectures (benchmarks/corpus.py: an OCR CRNN with a
bidirectional LSTM and its int8 twin, a GRU keyword spotter, a BERT encoder raw / fused by onnxruntime's
transformer optimizer / int8, a decoder LLM with a key/value cache in fp32 and 4-bit MatMulNBits at one
decode step and at a prefill), each beside its end-to-end measurement.

Per model: the share of nodes and of estimated kernel time priced from measured tables, from regressors,
by the per-kind prior (or another fallback), free (metadata-only), and the uncovered nodes; then the
estimate and the end-to-end latency measured with the robust protocol (profilers/e2e.py measure_models:
fresh-session phases, round-robin rounds, min of round medians, 1 thread), and the error.

    taskset -c 0 python benchmarks/coverage.py --profile PROFILE.db [--corpus DIR] [--remeasure]

The corpus is measured here and cached in benchmarks/results/coverage_e2e_<profile>.json (``--remeasure``
measures again); the zoo's end-to-end figures are read from benchmarks/accuracy.py's ground truth for the
same profile (benchmarks/results/e2e_<profile>.json), when it was measured on this host.
Goal: no uncovered node, >= 99% of estimated time from tables or regressors.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np  # noqa: E402

import corpus as corpus_mod  # noqa: E402

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")
MEASURED = ("table", "regressor")
#: decode step past length and prefill prompt length of the corpus LLM
DECODE_PAST, PREFILL = 128, 32


def corpus_cases(cdir: str) -> list[dict]:
    """name -> (file, shapes for the estimate, feeds for the measurement or None)."""
    from latency.graph import decode_step_shapes

    cases = []
    for n in ("crnn_ocr", "crnn_ocr_int8", "gru_kws", "bert_encoder", "bert_encoder_opt", "bert_encoder_opt_int8"):
        cases.append({"name": n, "path": corpus_mod.path(n, cdir), "shapes": None, "feeds": None})
    c = corpus_mod.LLM
    heads, d = c["heads"], c["hidden"] // c["heads"]
    rng = np.random.default_rng(0)
    for n in ("llm_decoder", "llm_decoder_int4"):
        p = corpus_mod.path(n, cdir)
        for label, past, s in (("decode%d" % DECODE_PAST, DECODE_PAST, 1), ("prefill%d" % PREFILL, 0, PREFILL)):
            feeds = {"input_ids": rng.integers(0, c["vocab"], (1, s)).astype(np.int64)}
            feeds.update({f"past_key_values.{i}.{w}": rng.standard_normal((1, heads, past, d)).astype(np.float32)
                          for i in range(c["layers"]) for w in ("key", "value")})
            cases.append({"name": f"{n}@{label}", "path": p, "shapes": decode_step_shapes(p, past, s), "feeds": feeds})
    return cases


def coverage(e) -> dict:
    """Shares of nodes and of estimated kernel time by where the price came from."""
    nodes, time_us = {}, {}
    for k in e.kernels:
        src = k.source if k.source in MEASURED + ("free",) else "prior/other"
        nodes[src] = nodes.get(src, 0) + max(1, len(k.nodes))
        time_us[src] = time_us.get(src, 0.0) + k.latency_us
    unc = len(e.uncovered)
    n_all = sum(nodes.values()) + unc
    t_all = sum(time_us.values())
    return {"nodes": n_all, "uncovered": unc,
            "node_share": {s: v / n_all for s, v in nodes.items()} | {"uncovered": unc / n_all if n_all else 0.0},
            "time_share": {s: v / t_all for s, v in time_us.items()} if t_all else {},
            "measured_time_share": sum(time_us.get(s, 0.0) for s in MEASURED) / t_all if t_all else 0.0,
            "uncovered_ops": sorted({f"{u.op_type}" for u in e.uncovered})}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--profile", required=True, help="the profile describing this host (.db)")
    ap.add_argument("--target", default="x86-avx512-ort")
    ap.add_argument("--corpus", default=corpus_mod.default_dir(), help="where benchmarks/corpus.py wrote the models")
    ap.add_argument("--remeasure", action="store_true", help="measure the corpus again")
    ap.add_argument("--no-measure", action="store_true", help="coverage only")
    ap.add_argument("--no-zoo", action="store_true")
    ap.add_argument("--tag", default="", help="suffix of the output file (coverage_<profile><tag>.json)")
    a = ap.parse_args(argv)

    from latency.estimator import Estimator
    from latency.targets import get_target
    from profilers import zoo

    missing = [n for n in corpus_mod.NAMES if not os.path.exists(corpus_mod.path(n, a.corpus))]
    if missing:
        sys.exit(f"error: corpus models missing in {a.corpus}: {', '.join(missing)}; run benchmarks/corpus.py first")
    target = get_target(a.target)
    est = Estimator(target, profile=a.profile).prepare()
    stem = os.path.splitext(os.path.basename(a.profile))[0]
    cases = corpus_cases(a.corpus)

    # ground truth: the corpus measured here, the zoo from accuracy.py's file of this profile
    gt_path = os.path.join(OUT, f"coverage_e2e_{stem}.json")
    gt = {}
    host = target.fingerprint()
    if os.path.exists(gt_path) and not a.remeasure:
        d = json.load(open(gt_path))
        if d.get("host") == host:
            gt = d["results"]
    todo = [c for c in cases if c["name"] not in gt]
    if todo and not a.no_measure:
        from profilers.e2e import PROTOCOL, measure_models

        print(f"measuring {len(todo)} corpus models end to end ...", file=sys.stderr)
        res = measure_models({c["name"]: c["path"] for c in todo},
                             feeds={c["name"]: c["feeds"] for c in todo if c["feeds"] is not None},
                             progress=lambda s: print("  " + s, file=sys.stderr))
        gt.update(res)
        with open(gt_path, "w") as f:
            json.dump({"host": host, "protocol": PROTOCOL, "results": gt}, f, indent=1)
    zoo_gt = {}
    zoo_path = os.path.join(OUT, f"e2e_{stem}.json")
    if os.path.exists(zoo_path):
        d = json.load(open(zoo_path))
        if d.get("host") == host:
            zoo_gt = d["results"]

    rows = []
    for c in cases:
        e = est.estimate(c["path"], shapes=c["shapes"])
        rows.append({"model": c["name"], "set": "corpus", **coverage(e), "estimate_ms": e.total_ms,
                     "measured_ms": (gt.get(c["name"]) or {}).get("latency_ms")})
    if not a.no_zoo:
        for n in zoo.NAMES:
            e = est.estimate(zoo.build(n))
            rows.append({"model": n, "set": "zoo", **coverage(e), "estimate_ms": e.total_ms,
                         "measured_ms": (zoo_gt.get(n) or {}).get("latency_ms")})

    print(f"host target {a.target}, profile {a.profile}; end to end: min of round medians, 1 thread, pinned "
          f"(corpus: {os.path.relpath(gt_path)}; zoo: {os.path.relpath(zoo_path)})")
    print(f"\n{'model':34s} {'set':6s} {'nodes':>5s} {'table':>6s} {'regr':>6s} {'prior':>6s} {'free':>5s} "
          f"{'unc':>4s} | {'t:table':>7s} {'t:regr':>7s} {'t:prior':>7s} | {'est ms':>8s} {'meas ms':>8s} {'err':>7s}")
    for r in rows:
        ns, ts = r["node_share"], r["time_share"]
        err = f"{100 * (r['estimate_ms'] / r['measured_ms'] - 1):+6.1f}%" if r["measured_ms"] else "     -"
        meas = f"{r['measured_ms']:8.3f}" if r["measured_ms"] else "       -"
        r["error"] = r["estimate_ms"] / r["measured_ms"] - 1 if r["measured_ms"] else None
        print(f"{r['model']:34s} {r['set']:6s} {r['nodes']:5d} {100 * ns.get('table', 0):5.1f}% "
              f"{100 * ns.get('regressor', 0):5.1f}% {100 * ns.get('prior/other', 0):5.1f}% "
              f"{100 * ns.get('free', 0):4.0f}% {r['uncovered']:4d} | {100 * ts.get('table', 0):6.1f}% "
              f"{100 * ts.get('regressor', 0):6.1f}% {100 * ts.get('prior/other', 0):6.1f}% | "
              f"{r['estimate_ms']:8.3f} {meas} {err}" + (f"  uncovered: {', '.join(r['uncovered_ops'])}"
                                                        if r["uncovered_ops"] else ""))
    print()
    for s in ("corpus", "zoo"):
        sel = [r for r in rows if r["set"] == s]
        if not sel:
            continue
        errs = [abs(r["error"]) for r in sel if r["error"] is not None]
        ok = sum(1 for r in sel if r["uncovered"] == 0 and r["measured_time_share"] >= 0.99)
        line = (f"{s}: {len(sel)} models, {sum(r['uncovered'] == 0 for r in sel)} with no uncovered node, {ok} also "
                f">= 99% of estimated time from tables/regressors")
        if errs:
            line += (f"; |error| median {100 * float(np.median(errs)):.1f}%, within 10%: "
                     f"{sum(e <= 0.10 for e in errs)}/{len(errs)}")
        print(line)
    with open(os.path.join(OUT, f"coverage_{stem}{a.tag}.json"), "w") as f:
        json.dump({"profile": a.profile, "target": a.target, "rows": rows}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
