"""The compression what-if judged against real compressed models, measured end to end on this host.

For each zoo architecture, one plan is prepared from the fp32 model alone and prices every variant;
then each variant is really made with the tools users run and measured with the robust end-to-end
protocol (profilers.e2e.measure_models), side by side in one run:

- int8 static QDQ (quant_pre_process first, then quantize_static with a random calibration reader),
  whole model and three mixes whose fp32 nodes go to ``nodes_to_exclude`` (the list the what-if returns);
- int8 dynamic (quantize_dynamic);
- fp16 with a block list (onnxconverter-common convert_float_to_float16, keep_io_types=True);
- 4-bit weight-only (MatMulNBitsQuantizer, defaults) on models with constant-weight MatMuls;
- channel pruning of every prunable node by 50% (the ONNX file rewritten smaller: the what-if's own
  channel groups say which weight axes shrink; the file is then sliced here and loaded by onnxruntime);
- 50% unstructured sparsity (smallest-magnitude weights set to zero in the fp32 file).

A precision the API refuses at run time is reported as "not priced (reason)", never dropped silently.
Every model is also measured twice (the fp32 model and an identical copy, side by side): that control's
paired change is the protocol's noise on this host, and a variant's change counts as resolved (its sign
measured) only when its per-phase paired ratios lie mostly on one side of 1 (RESOLVED_SHARE); signs are
scored both by the fixed 2% rule and by resolution.
Reported: share of variants within +-10%, MAPE, per-model Kendall tau over its variants, whether
the sign of each change against fp32 is right; and the loop closed for three models (pareto with a
budget between the all-int8 and the all-fp32 prediction; quantize with the nodes_to_exclude it
returns; measure). Run pinned to one core:

    taskset -c 0 python benchmarks/whatif.py [--profile DB] [--quick] [--models a,b[:size]] [--rounds N]
                                             [--clock wall|thread] [--emulate avx2]

The second shipped CPU profile, on this host with AVX-512 hidden from onnxruntime (as it was measured):

    taskset -c 0 python benchmarks/whatif.py --target x86-avx2-ort --emulate avx2 \
        --profile tables/x86-avx2-ort.epyc-zen5-emulated.db

``--clock thread`` times each run by the calling thread's CPU time instead of wall time (onnxruntime
with one intra-op thread runs the model on the calling thread): for a host whose core is shared with
other work, where wall time counts the other processes' slices. The output says which clock it used.
"""

from __future__ import annotations

import os

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_v, "1")

import argparse  # noqa: E402
import logging  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402

import numpy as np  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

# (zoo name, size override); transformers get the 4-bit weight-only variant
MODELS = [("resnet18", 96), ("resnet20_cifar", None), ("mobilenet_v2_050", 128), ("squeezenet1_1", 96),
          ("shufflenet_v2_x0_5", 128), ("efficientnet_b0", 96), ("bert_tiny", None), ("bert_mini", 64),
          ("vit_tiny", 112), ("distilgpt2", 16)]
QUICK = [("resnet20_cifar", None), ("bert_tiny", None)]
#: the noise control: the fp32 model again (a second copy, its own sessions), measured beside the variants;
#: its paired change against the fp32 model is the protocol's noise on this host. Not a variant: left out of
#: the scores, reported on its own
CONTROL = "fp32 again (control)"
CLOSED_LOOP = ("resnet18", "mobilenet_v2_050", "bert_mini")
CLOSED_LOOP_QUICK = ("resnet20_cifar",)


# ---------------------------------------------------------------------------------------------------
# making the variants with the real tools


def preprocessed(model, tmp):
    """quant_pre_process of the fp32 model, as users run it before quantize_static: path."""
    from profilers.quantized import pre_process

    return pre_process(model, tmp)


def int8_static(pre_path, tmp, exclude, tag):
    from profilers.quantized import quantize_qdq

    return quantize_qdq(pre_path, os.path.join(tmp, f"{tag}.onnx"), exclude)


def int8_dynamic(pre_path, tmp):
    from onnxruntime.quantization import quantize_dynamic

    out = os.path.join(tmp, "int8dyn.onnx")
    quantize_dynamic(pre_path, out)
    return out


def _copy(model):
    """A private copy: some tools rewrite the ModelProto they are given in place."""
    import onnx

    m = onnx.ModelProto()
    m.CopyFrom(model)
    return m


def fp16(model, block):
    from onnxconverter_common import float16

    model = _copy(model)

    m = float16.convert_float_to_float16(model, keep_io_types=True, node_block_list=list(block))
    # the tool leaves stale float value_info on some Cast outputs (onnxruntime refuses the file);
    # the runtime re-infers every intermediate shape and type without them
    del m.graph.value_info[:]
    return m


def int4_weight(model):
    from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer

    q = MatMulNBitsQuantizer(_copy(model))
    q.process()
    return q.model.model


def sparsified(model, nodes, ratio):
    """Copy of ``model`` with the smallest-magnitude ``ratio`` of each weight of ``nodes`` set to zero."""
    import onnx
    from onnx import numpy_helper

    m = onnx.ModelProto()
    m.CopyFrom(model)
    want = {n.input[1] for n in m.graph.node if n.name in nodes and len(n.input) > 1}
    for init in m.graph.initializer:
        if init.name in want:
            w = numpy_helper.to_array(init).copy()
            k = int(round(w.size * ratio))
            if k:
                idx = np.argsort(np.abs(w), axis=None)[:k]
                w.reshape(-1)[idx] = 0
            init.CopyFrom(numpy_helper.from_array(w, init.name))
    return m


def pruned(model, groups, ratio):
    """Copy of ``model`` with each channel group's head output channels cut to the kept share: every
    weight / per-channel constant the group lists is sliced on its axis, depthwise ``group`` attributes
    follow. ``groups``: the what-if's ChannelGroup per head (which axes shrink)."""
    import onnx
    from onnx import numpy_helper

    from latency.whatif.rewrite import kept_channels

    m = onnx.ModelProto()
    m.CopyFrom(model)
    inits = {i.name: i for i in m.graph.initializer}
    nodes = {n.name: n for n in m.graph.node}
    for n in m.graph.node:  # constants written as Constant nodes are sliced the same way
        if n.op_type == "Constant" and n.output[0] not in inits:
            for at in n.attribute:
                if at.name == "value":
                    inits[n.output[0]] = at.t
    for grp in groups:
        keep = kept_channels(grp.channels, ratio)
        done = set()
        for (node, w), ax in grp.weights:
            if w in done or w not in inits:
                continue
            arr = numpy_helper.to_array(inits[w])
            if ax >= arr.ndim or arr.shape[ax] != grp.channels:
                continue
            done.add(w)
            inits[w].CopyFrom(numpy_helper.from_array(np.take(arr, np.arange(keep), axis=ax).copy(),
                                                      inits[w].name))
        for d in grp.depthwise:
            for a in nodes[d].attribute:
                if a.name == "group":
                    a.i = keep
    del m.graph.value_info[:]
    return m


# ---------------------------------------------------------------------------------------------------


def variants(plan, model, name, transformer):
    """[(label, what-if choice, maker)]: maker(tmp, pre_path) -> ONNX path or ModelProto."""
    units = plan.structure.units
    weighted = [u.name for u in units if u.weighted and "int8" in u.families]
    out = [("fp32", {}, lambda tmp, pre: model), (CONTROL, {}, lambda tmp, pre: _copy(model))]

    def static(choice, tag):
        def make(tmp, pre):
            excl = plan.evaluate(choice).nodes_to_exclude if choice.get("fp32_nodes") else ()
            return int8_static(pre, tmp, excl, tag)
        return make

    out.append(("int8 static", {"precision": "int8"}, static({"precision": "int8"}, "int8")))
    if len(weighted) >= 2:
        mixes = [("int8, first+last fp32", [weighted[0], weighted[-1]]),
                 ("int8, first half fp32", weighted[: len(weighted) // 2]),
                 ("int8, every 2nd fp32", weighted[::2])]
        for i, (label, fp32n) in enumerate(mixes):
            ch = {"precision": "int8", "fp32_nodes": fp32n}
            out.append((label, ch, static(ch, f"mix{i}")))
    if transformer or plan.baseline_ms < 1.0:  # ConvInteger runs 5-10x slower than fp32: small CNNs only
        out.append(("int8 dynamic", {"precision": "int8-dynamic"}, lambda tmp, pre: int8_dynamic(pre, tmp)))
    wall = [u.name for u in units if u.op in ("Conv", "Gemm", "MatMul")]
    block = [wall[0], wall[-1]] if len(wall) >= 2 else wall
    out.append(("fp16, first+last fp32", {"precision": "fp16", "fp32_nodes": block},
                lambda tmp, pre: fp16(model, block)))
    if transformer:
        out.append(("int4 weight-only", {"precision": "int4-weight"}, lambda tmp, pre: int4_weight(model)))
    outputs = {o.name for o in model.graph.output}
    prunable = [u for u in units if u.prunable and not any(t in outputs for t, _ in u.group.tensors)]
    if prunable:
        heads = {u.name for u in prunable}
        # a consumer's head: groups overlapping in a weight on the same axis are cut once (first one)
        groups, seen = [], set()
        for u in prunable:
            keys = {(w, ax) for (_, w), ax in u.group.weights}
            if keys & seen:
                heads.discard(u.name)
                continue
            seen |= keys
            groups.append(u.group)
        out.append((f"prune 50% ({len(groups)} groups)", {"nodes": {h: {"prune": 0.5} for h in heads}},
                    lambda tmp, pre: pruned(model, groups, 0.5)))
    sw = [u.name for u in units if u.weighted and u.op in ("Conv", "Gemm", "MatMul")]
    out.append(("sparsity 50%", {"nodes": {n: {"sparsity": 0.5} for n in sw}},
                lambda tmp, pre: sparsified(model, set(sw), 0.5)))
    return out


def is_transformer(model):
    return any(n.op_type == "MatMul" for n in model.graph.node) and not any(n.op_type == "Conv"
                                                                              for n in model.graph.node)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--target", default="x86-avx512-ort")
    ap.add_argument("--profile", default=None, help="profile database (default: the one the target uses here)")
    ap.add_argument("--quick", action="store_true", help="2 small models, for development")
    ap.add_argument("--models", default=None, help="comma-separated zoo names (name or name:size)")
    ap.add_argument("--rounds", type=int, default=None, help="e2e rounds (default: the protocol's)")
    ap.add_argument("--rescore", default=None, metavar="FILE",
                    help="re-score the variant rows a run printed (saved output): the summary again, nothing "
                         "measured (the closed loop is not re-scored)")
    ap.add_argument("--clock", choices=("wall", "thread"), default="wall",
                    help="time each run by wall clock (the protocol's) or by the CPU time of the calling thread "
                         "(onnxruntime with 1 thread runs on it): for a host whose core is shared with other work")
    ap.add_argument("--emulate", choices=("avx2",), default=None,
                    help="measure with this ISA level emulated (AVX-512, AVX-VNNI and AMX hidden from onnxruntime by "
                         "a CPUID mask, profilers/emulate.py): with --target x86-avx2-ort and the emulated profile")
    a = ap.parse_args()
    if a.emulate:
        import subprocess

        from profilers import emulate

        if emulate.active_level() != a.emulate:
            why = emulate.host_problem()
            if why:
                print(f"error: {why}", file=sys.stderr)
                sys.exit(2)
            env = emulate.emulated_env(a.emulate)
            env["PYTHONPATH"] = ROOT + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
            sys.exit(subprocess.run([sys.executable, os.path.abspath(__file__), *sys.argv[1:]], env=env).returncode)
    warnings.filterwarnings("ignore")
    logging.disable(logging.WARNING)

    from scipy.stats import kendalltau

    if a.rescore:
        return rescore(a.rescore, kendalltau)

    from latency import Estimator
    from latency.errors import LatencyError
    from profilers import zoo
    from profilers.e2e import PROTOCOL, measure_models

    if a.clock == "thread":
        import profilers.e2e as e2e

        e2e.time = _ThreadClock()
    if a.models:
        models = [(s.split(":")[0], int(s.split(":")[1]) if ":" in s else None) for s in a.models.split(",")]
    else:
        models = QUICK if a.quick else MODELS
    loop_models = CLOSED_LOOP_QUICK if a.quick else CLOSED_LOOP
    est = Estimator(a.target, profile=a.profile).prepare()
    import platform

    cpu = next((ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo") if ln.startswith("model name")), "?")
    print(f"what-if vs measured, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; host {cpu}, "
          f"{os.cpu_count()} vCPUs, {platform.machine()}; affinity {sorted(os.sched_getaffinity(0))}; "
          f"load average at start {os.getloadavg()[0]:.2f}")
    print(f"target {a.target}; profile {est.profile_path_}")
    print(f"measured: onnxruntime CPU, 1 thread, {PROTOCOL}"
          + ("; clock: CPU time of the calling thread (time.thread_time), not wall time" if a.clock == "thread"
             else "; clock: wall time")
          + ("" if a.rounds is None else f"; {a.rounds} phases x 1 round"))
    print("predicted: plan prepared from the fp32 model alone, plan.evaluate(choice).total_ms\n")
    rows, refused, loops, prep = [], [], [], {}
    kw = {} if a.rounds is None else {"rounds": a.rounds, "phases": a.rounds}
    from profilers.transfer import StateReference

    ref = StateReference.of_profile(est.target, est.profile_path_)
    states = [ref("before the first model")["ratio"]]
    print(f"machine state before: x{states[0]:.3f} (24 of the profile's fp32 rows re-measured, now / profile, "
          f"median)\n", flush=True)
    for name, size in models:
        model = zoo.build(name, size=size)
        tag = f"{name}" + (f"@{size}" if size else "")
        t0 = time.perf_counter()
        plan = est.plan(model)
        prep[tag] = time.perf_counter() - t0
        trans = is_transformer(model)
        files, preds = {}, {}
        with tempfile.TemporaryDirectory() as tmp:
            pre = preprocessed(model, tmp)
            for label, choice, make in variants(plan, model, name, trans):
                try:
                    p = plan.evaluate(choice).total_ms if choice else plan.baseline_ms
                except LatencyError as e:
                    refused.append((tag, label, f"not priced ({e})"))
                    continue
                except Exception as e:  # a failure inside the API: reported, never dropped silently
                    refused.append((tag, label, f"not priced (error in the what-if: {type(e).__name__}: {e})"))
                    continue
                try:
                    files[label] = make(tmp, pre)
                except Exception as e:  # the tool itself failed: reported, not measured
                    refused.append((tag, label, f"not made ({type(e).__name__}: {str(e)[:120]})"))
                    continue
                preds[label] = p
            if name in loop_models:
                try:
                    lp = closed_loop_prepare(plan, model, pre, tmp)
                    files["pareto pick"] = lp["path"]
                    loops.append((tag, lp))
                except LatencyError as e:
                    refused.append((tag, "pareto pick", f"not priced ({e})"))
            t = time.perf_counter()
            meas = measure_models(files, progress=None, **kw)
            mt = time.perf_counter() - t
        base = meas["fp32"]["latency_ms"]
        serial = any(r.get("one_at_a_time") for r in meas.values())
        print(f"{tag}: plan prepared in {prep[tag]:.2f} s, {len(files)} variants measured in {mt:.0f} s"
              + (" (sessions one at a time: together they would not fit in memory)" if serial else ""))
        for label, p in preds.items():
            m = meas[label]
            if m["error"]:
                refused.append((tag, label, f"measurement failed: {m['error'][:120]}"))
                continue
            change = paired_change(m, meas["fp32"])
            rows.append({"model": tag, "variant": label, "pred_ms": p, "meas_ms": m["latency_ms"],
                         "base_pred": plan.baseline_ms, "base_meas": base, "spread": m["spread"],
                         "meas_change": change, "resolved": resolved(m, meas["fp32"])})
            print(f"  {label:28s} predicted {p:9.3f} ms  measured {m['latency_ms']:9.3f} ms  "
                  f"err {100 * (p / m['latency_ms'] - 1):+6.1f}%"
                  + ("" if label == "fp32" or change is None else
                     f"  change vs fp32: predicted {100 * (p / plan.baseline_ms - 1):+6.1f}%, "
                     f"measured (paired) {100 * change:+6.1f}%"
                     + ("" if rows[-1]["resolved"] is not False else " (unresolved)")))
        for t_, lp in loops:
            if t_ == tag and "meas_ms" not in lp:
                m = meas["pareto pick"]
                lp["meas_ms"] = m["latency_ms"]
        sys.stdout.flush()

    states.append(ref("after the last model")["ratio"])
    state = float(np.sqrt(states[0] * states[1])) if states[0] and states[1] else None
    print(f"\nmachine state after: x{states[1]:.3f}")
    report(rows, refused, loops, prep, kendalltau, state)
    print(f"\nload average at end {os.getloadavg()[0]:.2f}")


class _ThreadClock:
    """``time`` with perf_counter / perf_counter_ns reading the calling thread's CPU time."""

    def __getattr__(self, name):
        if name == "perf_counter":
            return time.thread_time
        if name == "perf_counter_ns":
            return time.thread_time_ns
        return getattr(time, name)


def closed_loop_prepare(plan, model, pre, tmp):
    """pareto with a budget halfway between the all-int8 and the all-fp32 prediction; the model
    quantized with the nodes_to_exclude it returns."""
    rng = np.random.default_rng(0)
    scores = {u: float(rng.random()) for u in plan.units}  # a stand-in label-free proxy, seeded
    all8 = plan.evaluate({"precision": "int8"}).total_ms
    budget = 0.5 * (all8 + plan.baseline_ms)
    front = plan.pareto(scores, budget_ms=budget)
    if front.best is None:
        return {"path": model, "budget": budget, "pred_ms": None, "excl": [], "all8": all8}
    path = int8_static(pre, tmp, front.nodes_to_exclude, "pareto")
    return {"path": path, "budget": budget, "pred_ms": float(front.best["latency_ms"]),
            "excl": list(front.nodes_to_exclude), "n_fp32": int(front.best["n_fp32"]), "all8": all8,
            "fp32": plan.baseline_ms}


def paired_ratios(var, base):
    """Per phase both ran in, the ratio of the variant's round median to the fp32 model's (the two ran side
    by side in that phase, so a slow stretch of the host moves both)."""
    b = dict(zip(base.get("rounds_phase", []), base.get("rounds_ms", [])))
    return [v / b[ph] for ph, v in zip(var.get("rounds_phase", []), var.get("rounds_ms", [])) if b.get(ph)]


def paired_change(var, base):
    """The measured change of a variant against the fp32 model as a paired comparison: the median of
    :func:`paired_ratios`, minus 1 (the ratio of the two minima compares rounds from different moments).
    None without a common phase."""
    r = paired_ratios(var, base)
    return float(np.median(r)) - 1.0 if r else None


#: a measured change is resolved (its sign measured) when at least this share of its per-phase paired ratios
#: lie on the side of 1 its median lies on; with 9 phases and no true change, 8 or 9 of 9 on one side comes
#: out by chance 4% of the time (the identical-copy control of every model checks the rule on this host)
RESOLVED_SHARE = 0.8


def resolved(var, base) -> bool | None:
    """Whether the variant's change against the fp32 model is resolved (see RESOLVED_SHARE); None without
    at least five common phases."""
    r = np.asarray(paired_ratios(var, base))
    if len(r) < 5:
        return None
    side = np.sign(np.median(r) - 1.0)
    return bool(side != 0 and np.mean(np.sign(r - 1.0) == side) >= RESOLVED_SHARE)


def rescore(path, kendalltau):
    """The summary of a saved run's variant rows (``model: plan prepared in X s`` headers and ``label
    predicted P ms measured M ms`` lines), computed again; nothing is measured."""
    import re

    head = re.compile(r"^(\S+): plan prepared in ([0-9.]+) s")
    line = re.compile(r"^  (.+?)\s+predicted\s+([0-9.]+) ms\s+measured\s+([0-9.]+) ms"
                      r"(?:.*measured \(paired\)\s+([-+0-9.]+)%)?")
    rows, prep, cur, base = [], {}, None, {}
    with open(path) as f:
        text = f.read()
    controlled = CONTROL in text
    for ln in text.splitlines(keepends=True):
        m = head.match(ln)
        if m:
            cur = m.group(1)
            prep[cur] = float(m.group(2))
            continue
        m = line.match(ln)
        if m and cur:
            label, p, ms = m.group(1).strip(), float(m.group(2)), float(m.group(3))
            if label == "fp32":
                base[cur] = (p, ms)
            # runs with the noise control mark unresolved changes; older runs say nothing either way
            res = (("(unresolved)" not in ln) if m.group(4) else None) if controlled else None
            rows.append({"model": cur, "variant": label, "pred_ms": p, "meas_ms": ms, "spread": float("nan"),
                         "meas_change": float(m.group(4)) / 100 if m.group(4) else None, "resolved": res})
    if not rows:
        raise SystemExit(f"{path}: no variant rows to re-score")
    for r in rows:
        if r["model"] not in base:
            raise SystemExit(f"{path}: model {r['model']} has no fp32 row")
        r["base_pred"], r["base_meas"] = base[r["model"]]
    print(f"re-scored from {path} (nothing measured)")
    report(rows, [], [], prep, kendalltau)


def report(rows, refused, loops, prep, kendalltau, state=None):
    import pandas as pd

    df = pd.DataFrame(rows)
    print("\n== summary ==")
    if not len(df):
        print("no variant measured")
        return
    ctl = df[df.variant == CONTROL]
    df = df[df.variant != CONTROL].copy()
    if len(ctl):
        ch = pd.to_numeric(ctl.meas_change, errors="coerce")
        res = ctl.get("resolved", pd.Series([None] * len(ctl), index=ctl.index))
        print(f"noise control (the fp32 model measured twice, side by side; not counted below): paired change "
              f"median |{100 * ch.abs().median():.1f}|%, max |{100 * ch.abs().max():.1f}|% over {len(ctl)} models; "
              f"resolved as a change (>= {100 * RESOLVED_SHARE:.0f}% of phases on one side): "
              f"{int((res == True).sum())}/{int(res.notna().sum())}")  # noqa: E712
    df["err"] = df.pred_ms / df.meas_ms - 1
    within = (df.err.abs() <= 0.10).mean()
    print(f"variants compared: {len(df)} over {df.model.nunique()} models")
    print(f"within +-10%: {100 * within:.0f}% ({int((df.err.abs() <= 0.10).sum())}/{len(df)}); "
          f"MAPE {100 * df.err.abs().mean():.1f}%; median error {100 * df.err.median():+.1f}%")
    if state:
        # diagnosis only: the measured times brought to the state the profile was measured in (the host moves
        # whole models by 10-25% between runs; FACTS section 9)
        eb = (1 + df.err) * state - 1
        print(f"  (diag.) against the times divided by the machine state x{state:.3f}: within +-10% "
              f"{int((eb.abs() <= 0.10).sum())}/{len(df)}; MAPE {100 * eb.abs().mean():.1f}%; "
              f"median {100 * eb.median():+.1f}%")
    nb = df[df.variant != "fp32"].copy()
    # a predicted change under 0.5% is "no change" (not the sign of a rounding difference): right only where
    # the measured change is within the noise too
    pc = nb.pred_ms / nb.base_pred - 1
    nb["sign_pred"] = np.where(pc.abs() < 0.005, 0.0, np.sign(pc))
    # the measured change: paired per phase where the run recorded it (see paired_change), else the ratio of
    # the two minima (runs saved before the pairing)
    ratio_of_minima = nb.meas_ms / nb.base_meas - 1
    paired = pd.to_numeric(nb["meas_change"], errors="coerce") if "meas_change" in nb else ratio_of_minima * np.nan
    nb["mchange"] = paired.fillna(ratio_of_minima)
    print(f"measured change vs fp32 taken paired per phase for {int(paired.notna().sum())} of {len(nb)} variants")
    nb["sign_meas"] = np.sign(nb.mchange)
    # a measured change under 2% is within the protocol's noise: either sign counts as right
    small = nb.mchange.abs() < 0.02
    ok = (nb.sign_pred == nb.sign_meas) | small
    print(f"sign of the change vs fp32 right: {int(ok.sum())}/{len(nb)} "
          f"({int(small.sum())} measured changes under 2% count as right either way)")
    res = nb["resolved"] if "resolved" in nb else pd.Series([None] * len(nb), index=nb.index)
    unres = res == False  # noqa: E712  (None: not known, a saved run)
    if res.notna().any():
        ok2 = (nb.sign_pred == nb.sign_meas) | unres
        print(f"  judged by resolution instead (a change whose per-phase paired ratios do not lie >= "
              f"{100 * RESOLVED_SHARE:.0f}% on one side counts as right either way): {int(ok2.sum())}/{len(nb)} "
              f"({int(unres.sum())} unresolved)")
    for v, g in nb[~ok].iterrows():
        print(f"  wrong sign: {g.model} {g.variant}: predicted {100 * (g.pred_ms / g.base_pred - 1):+.1f}%, "
              f"measured {100 * g.mchange:+.1f}%" + (" (unresolved)" if unres.get(v, False) else ""))
    # what a compression search acts on: the change against the plain model, predicted as the ratio of the
    # two predictions and measured as the ratio of the two measurements (the fp32 model's own error, shared
    # by all of its variants, cancels)
    nb["rel_err"] = (nb.pred_ms / nb.base_pred) / (1 + nb.mchange) - 1
    print(f"change against the fp32 model (predicted ratio / measured ratio - 1): within +-5% "
          f"{int((nb.rel_err.abs() <= 0.05).sum())}/{len(nb)}, within +-10% {int((nb.rel_err.abs() <= 0.10).sum())}"
          f"/{len(nb)}; MAPE {100 * nb.rel_err.abs().mean():.1f}%; median {100 * nb.rel_err.median():+.1f}%")
    print("\nper model: Kendall tau over its variants (measured vs predicted order), within +-10%, MAPE, prepare")
    # the measured order of a model's variants: by their paired change against its fp32 model where the run
    # recorded it (one common scale per phase), else by their minima; tau over the minima printed beside it
    df["mchange"] = 0.0
    df.loc[nb.index, "mchange"] = nb.mchange
    taus, taus_min = [], []
    for mname, g in df.groupby("model", sort=False):
        tau = kendalltau(g.pred_ms, g.mchange).statistic if len(g) > 1 else float("nan")
        tau_min = kendalltau(g.pred_ms, g.meas_ms).statistic if len(g) > 1 else float("nan")
        taus.append(tau)
        taus_min.append(tau_min)
        print(f"  {mname:22s} tau {tau:+.2f} (over minima {tau_min:+.2f})  within {int((g.err.abs() <= 0.1).sum())}"
              f"/{len(g)}  MAPE {100 * g.err.abs().mean():5.1f}%  prepare {prep[mname]:.2f} s")
    print(f"  mean tau {np.nanmean(taus):+.2f}, min {np.nanmin(taus):+.2f} (over minima: mean "
          f"{np.nanmean(taus_min):+.2f}, min {np.nanmin(taus_min):+.2f})")
    print("\nper variant type: within +-10%, MAPE, median error")
    df["kind"] = df.variant.str.replace(r",.*| \(.*", "", regex=True)
    for k, g in df.groupby("kind", sort=False):
        print(f"  {k:18s} {int((g.err.abs() <= 0.1).sum())}/{len(g)}  MAPE {100 * g.err.abs().mean():5.1f}%  "
              f"median {100 * g.err.median():+6.1f}%")
    print("\nlargest misses:")
    for _, r in df.reindex(df.err.abs().sort_values(ascending=False).index).head(8).iterrows():
        print(f"  {r.model:22s} {r.variant:28s} predicted {r.pred_ms:8.3f} measured {r.meas_ms:8.3f} "
              f"({100 * r.err:+.1f}%)")
    if refused:
        print("\nnot priced / not made:")
        for t, label, why in refused:
            print(f"  {t} {label}: {why}")
    print("\nclosed loop (pareto with a budget halfway between all-int8 and all-fp32 predictions):")
    for t, lp in loops:
        if lp["pred_ms"] is None:
            print(f"  {t}: no front point under the budget {lp['budget']:.3f} ms")
            continue
        m = lp.get("meas_ms")
        err = (lp["pred_ms"] / m - 1) if m else float("nan")
        print(f"  {t}: all-int8 {lp['all8']:.3f} ms, all-fp32 {lp['fp32']:.3f} ms (predicted); budget "
              f"{lp['budget']:.3f} ms; pick: {lp['n_fp32']} nodes fp32 ({len(lp['excl'])} in nodes_to_exclude), "
              f"predicted {lp['pred_ms']:.3f} ms, measured {m:.3f} ms ({100 * err:+.1f}%): "
              f"{'within' if abs(err) <= 0.1 else 'outside'} +-10%, "
              f"{'under' if m <= lp['budget'] else 'OVER'} the budget")


if __name__ == "__main__":
    main()
