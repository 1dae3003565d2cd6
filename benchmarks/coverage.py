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

``--nodes`` adds the kernel-level evidence for the decoder's cases (written to
coverage_nodes_<profile>.txt): per kind (matrix-vector products apart), the estimate's kernels alone and
in the model beside onnxruntime's own per-node profile of the model (``SessionOptions.enable_profiling``,
the fastest of 5 profiled sessions of 20 runs each), and the model's weight-bearing products alone in a
model of their own (a chain), end to end with the robust protocol, beside what the estimate prices them at.
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


def _products_model(path: str):
    """The weight-bearing MatMul / MatMulNBits nodes of a decoder, alone: each reads one of two inputs (a
    [1, 1, K] row for each K) and writes a graph output, with the model's own weights."""
    import onnx
    from onnx import TensorProto, helper

    m = onnx.load(path)
    inits = {t.name: t for t in m.graph.initializer}
    nodes, used, outs, ks = [], set(), [], {}
    for n in m.graph.node:
        if n.op_type not in ("MatMul", "MatMulNBits") or len(n.input) < 2 or n.input[1] not in inits:
            continue
        if n.op_type == "MatMul":
            k, out = inits[n.input[1]].dims
        else:
            at = {a.name: a.i for a in n.attribute}
            k, out = at["K"], at["N"]
        ks[k] = f"x{k}"
        nn = helper.make_node(n.op_type, [ks[k]] + list(n.input[1:]), ["y_" + n.name], name=n.name, domain=n.domain)
        nn.attribute.extend(n.attribute)
        nodes.append(nn)
        used.update(i for i in n.input[1:] if i)
        outs.append(helper.make_tensor_value_info("y_" + n.name, TensorProto.FLOAT, [1, 1, out]))
    g = helper.make_graph(nodes, "products", [helper.make_tensor_value_info(x, TensorProto.FLOAT, [1, 1, k])
                                              for k, x in ks.items()], outs, [inits[u] for u in sorted(used)])
    mm = helper.make_model(g, opset_imports=list(m.opset_import))
    mm.ir_version = m.ir_version
    return mm, {x: np.random.default_rng(0).standard_normal((1, 1, k)).astype(np.float32) for k, x in ks.items()}


def node_evidence(est, cases, out) -> None:
    """Print (to ``out``) the decoder cases' kernels by kind: alone, as estimated in the model, and in
    onnxruntime's per-node profile of the model; then their products alone end to end."""
    from latency.context import matrix_vector
    from profilers import e2e

    def say(line=""):
        print(line)
        out.write(line + "\n")

    chains, chain_feeds, chain_est = {}, {}, {}
    for c in cases:
        if not c["name"].startswith("llm_") or c["feeds"] is None:
            continue
        b = open(c["path"], "rb").read()
        e2e.kernel_profile(b, runs=3, feed=c["feeds"])  # a process's first sessions run slow
        best = None
        for _ in range(5):
            ks = e2e.kernel_profile(b, runs=20, feed=c["feeds"])["kernels"]
            if best is None:
                best = {k["name"]: k for k in ks}
            for k in ks:
                if k["name"] in best:
                    best[k["name"]]["dur_us"] = min(best[k["name"]]["dur_us"], k["dur_us"])
        e = est.estimate(c["path"], shapes=c["shapes"])
        groups: dict = {}
        seen = set()
        for k in e.kernels:
            if k.source == "free":
                continue
            label = k.kind + (" matrix-vector" if k.key and matrix_vector(k.key) else "")
            g = groups.setdefault(label, [0, 0.0, 0.0, 0.0, 0])
            g[0] += 1
            g[1] += k.isolated_us or 0.0
            g[2] += k.latency_us
            hit = next((best[n] for n in (k.name, *k.nodes) if n in best), None)
            if hit is not None:
                g[3] += hit["dur_us"]
                g[4] += 1
                seen.add(hit["name"])
        rest = [k for n, k in best.items() if n not in seen]
        say(f"\n{c['name']}: estimate {e.total_ms:.3f} ms; onnxruntime per-node profile (fastest of 5 sessions)")
        say(f"  {'kind':28s} {'n':>4s} {'alone us':>9s} {'estimate us':>11s} {'in model us':>11s} (matched)")
        for label, g in sorted(groups.items(), key=lambda x: -x[1][2]):
            say(f"  {label:28s} {g[0]:4d} {g[1]:9.1f} {g[2]:11.1f} {g[3]:11.1f} ({g[4]})")
        say(f"  runtime kernels the estimate has no kernel for: {len(rest)}, {sum(k['dur_us'] for k in rest):.1f} us "
            f"in the profile ({', '.join(sorted({k['op_name'] for k in rest}))})")
        base = c["name"].split("@")[0]
        if base not in chains:
            chains[base], chain_feeds[base] = _products_model(c["path"])
            chain_est[base] = est.estimate(chains[base])
    if chains:
        from profilers.e2e import measure_models

        res = measure_models({n: m.SerializeToString() for n, m in chains.items()}, feeds=chain_feeds)
        say("\nthe decoders' weight-bearing products alone (a model of their own), end to end, min of round medians:")
        for n, r in res.items():
            ms, e = r.get("latency_ms"), chain_est[n]
            say(f"  {n:22s} {sum(1 for k in e.kernels if k.source != 'free'):3d} products  measured "
                f"{ms:.3f} ms  estimate {e.total_ms:.3f} ms  ({100 * (e.total_ms / ms - 1):+.1f}%)")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--profile", required=True, help="the profile describing this host (.db)")
    ap.add_argument("--target", default="x86-avx512-ort")
    ap.add_argument("--corpus", default=corpus_mod.default_dir(), help="where benchmarks/corpus.py wrote the models")
    ap.add_argument("--remeasure", action="store_true", help="measure the corpus again")
    ap.add_argument("--no-measure", action="store_true", help="coverage only")
    ap.add_argument("--no-zoo", action="store_true")
    ap.add_argument("--tag", default="", help="suffix of the output file (coverage_<profile><tag>.json)")
    ap.add_argument("--nodes", action="store_true", help="also the decoder's kernel-level evidence "
                    "(onnxruntime's per-node profile, its products alone)")
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
    if a.nodes:
        with open(os.path.join(OUT, f"coverage_nodes_{stem}{a.tag}.txt"), "w") as f:
            load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
            f.write(f"host target {a.target}, profile {a.profile}; 1 thread, pinned; load average before: {load} "
                    f"(other work on the machine inflates the in-model and end-to-end figures)\n")
            node_evidence(est, cases, f)
    return 0


if __name__ == "__main__":
    sys.exit(main())
