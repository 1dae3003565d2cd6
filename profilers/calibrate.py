"""Calibrate a profile against whole models: the in-model context model and the overhead model.

The table says what each kernel takes alone. Two things turn a sum of those into a model's
latency, and both are fitted here from the training corpus (profilers.zoo.FIT) run on the device:

1. the **context model** (:mod:`latency.context`): every FIT kernel timed inside its model
   (onnxruntime's per-node profile) against its price alone: the weight-fetch rate and the per-kind
   curves, gated by the model's working set against the core's private cache (curves) and against
   the last-level cache a cache probe measures (weight fetch)
   (:func:`profilers.chains.gate_curve`). The private-cache bound and the working-set scale of the
   last-level gate are chosen among a few candidates by the FIT models' end-to-end error, the
   context and overhead models refitted for each;
2. the **overhead model** (:func:`latency.estimator.fit_overhead`): end-to-end latency (the
   robust protocol of :func:`profilers.e2e.measure_models`) minus the context-corrected kernel sum,
   as per-run + per-kernel terms. The per-run term is measured on synthetic dispatch chains
   (:mod:`profilers.chains`), timed in the same round-robin run as the models, and held fixed; the
   per-kernel terms are fitted on the models around it.

Both fits compare times measured now (in-model, end to end) with the profile's prices, measured at
another time. On a shared VM the whole machine drifts between states minutes apart (a calibration
measured ~6% faster than the probes of the profile it calibrated), and a context fitted across two
states absorbs the difference as if it were an in-model effect. With a ``reference``
(:class:`profilers.transfer.StateReference`: a sample of the profile's own measured rows re-measured
with the profile's protocol) the calibration measures it before the end-to-end run, between it and the
in-model run and after that; the median ratio now / in the profile, averaged over the two
measurements around each run, is the state of the machine during that run, and that run's times are
divided by it before anything is fitted (:func:`state_scales`), so in-model / alone compares one
state of the machine. The measured times are kept as measured in the raw file, the ratios beside them.

Writes ``<profile>.context.json``, ``<profile>.overhead.json`` and the raw data they came from,
``<profile>.calibration.json`` (every kernel pair and every end-to-end round), next to the profile.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import numpy as np

from latency.context import (MIN_US, ContextModel, cache_gate, fit_context, footprint_gate, l2_mb, llc_mb,
                             private_gate)
from latency.errors import LatencyError
from latency.estimator import Estimator, fit_overhead, overhead_us, weight_mb
from latency.overhead import OverheadModel
from latency.graph import load_graph

from . import chains as dispatch_chains
from . import zoo
from .context import in_model_times, kernel_pairs
from .e2e import PROTOCOL, measure_models

#: candidate bounds of the private-cache gate, in units of the L2 size (the FIT set has models of
#: 0.3, 1.6, 3.2, 8.4, 10.7 and 14.5 MB working set: larger scales would be unconstrained)
PRIVATE_GATE_SCALES = (0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0)
#: candidate scales from a model's estimated working set (weights + half the activations) to the
#: cache probe's (the weights of a matrix-vector chain) for the last-level gate
FOOTPRINT_SCALES = (1.0, 1.25, 1.5, 2.0)
PROTOCOL_E2E = f"e2e: {PROTOCOL}; 1 thread, ORT_ENABLE_ALL"
#: convolutions with weights bigger than the core's private cache and less time alone than this per
#: MB of weights get an end-to-end term of their own (:func:`latency.estimator.lowint_conv_mb`): in
#: the kernel pairs they take ~60 us per MB of weights more inside the model than alone up to
#: 100-150 us/MB, 20-25 above 200, where their compute hides the fetch
LOWINT_US_PER_MB = 150.0
#: candidates whose calibration error is within this fraction of the best one's are taken as tied
#: (below the run-to-run noise of the calibration models' end-to-end times): among them the
#: smallest working-set scale wins, nearest the cache probe's own measure (x1)
TIED_ERROR = 0.05
#: a state ratio beyond these bounds is not a drift of the machine but a reference that does not
#: match the profile (another device, a broken row): it is recorded and not applied
STATE_BOUNDS = (0.67, 1.5)


def state_scales(records: list) -> dict:
    """The machine's state during the end-to-end and in-model runs from the reference measurements
    taken before, between and after them (``records``: dicts with ``ratio``, measured / profile, in
    that order). Each run's scale is the geometric mean of the two measurements around it; a run
    with one of them missing takes the other, with none 1.0 (not normalised). A scale outside
    :data:`STATE_BOUNDS` is recorded and replaced by 1.0."""
    r = [x.get("ratio") if x else None for x in list(records) + [None] * 3][:3]

    def around(a, b):
        v = [x for x in (a, b) if x and x > 0]
        return math.exp(sum(math.log(x) for x in v) / len(v)) if v else 1.0

    out = {}
    for name, (a, b) in (("e2e_scale", (r[0], r[1])), ("in_model_scale", (r[1], r[2]))):
        s = around(a, b)
        if not STATE_BOUNDS[0] <= s <= STATE_BOUNDS[1]:
            out[f"{name}_rejected"] = round(s, 4)
            s = 1.0
        out[name] = round(s, 4)
    return out


def _normalised(e2e: dict, pairs: list, state: dict | None) -> tuple[dict, list]:
    """Copies of ``e2e`` and ``pairs`` with their measured times divided by the state scales
    (:func:`state_scales`), i.e. brought to the state the profile was measured in."""
    se, si = (state or {}).get("e2e_scale", 1.0), (state or {}).get("in_model_scale", 1.0)
    e = {n: ({**r, "latency_ms": r["latency_ms"] / se} if r.get("latency_ms") else r) for n, r in e2e.items()}
    p = [{**q, "in_model_us": q["in_model_us"] / si} for q in pairs]
    return e, p


def choose(trials: dict, tied: float = TIED_ERROR) -> tuple:
    """The (private-cache scale, working-set scale) pair to keep from ``trials`` ({pair: (error, ...)}).

    Errors within ``tied`` (relative) of the best are a tie: the calibration models' end-to-end
    times move by more than that from run to run (models of 10-30 MB working set by 5-15%, with
    the cache other tenants leave), and the working-set scale such a tie picks flipped between 1
    and 2 over calibrations of one machine. Among tied pairs the smallest working-set scale, then the
    lowest error, then the pair nearest (1, 1)."""
    best = min(v[0] for v in trials.values())
    near = [k for k, v in trials.items() if v[0] <= best * (1.0 + tied)]
    return min(near, key=lambda k: (k[1], round(trials[k][0], 2), abs(math.log(k[0])) + abs(math.log(k[1]))))


def calibrate(target, profile=None, models=None, repeats: int = 5, runs: int = 20, progress=None,
              refit: bool = False, chain_families=None, probes: bool = True, step=None, reference=None) -> dict:
    """Fit and save the context and overhead models of ``profile`` (default: the target's shipped one).

    ``models``: name -> ModelProto (default: the zoo's FIT models). ``refit``: measure nothing, refit
    both models from the raw data a previous calibration kept (``<profile>.calibration.json``), e.g.
    after the fitting code changed. ``chain_families``: the dispatch-chain families to measure for
    the per-run term (default all; empty: no chains, the per-run term is fitted with the rest).
    ``probes``: also measure the cache probe that sets the cache gate (else the gate's bounds come
    from the cache size in sysfs). ``progress``: called with one-line messages; ``step``: called as
    ``step(done, total, what)`` after each stage (end-to-end run, in-model kernel times, each private-cache
    bound tried), for a progress bar. ``reference``: called as ``reference(label)`` before the end-to-end
    run, between it and the in-model run and after it, returns a dict with ``ratio`` (this moment's
    state against the profile's, :class:`profilers.transfer.StateReference`); the runs' times are
    normalised by it (:func:`state_scales`); ``"profile"``: 24 of the profile's own measured rows
    (:meth:`profilers.transfer.StateReference.of_profile`), what ``latency calibrate`` passes. Returns a
    summary dict.
    """
    say = progress or (lambda msg: None)
    n_steps = len(PRIVATE_GATE_SCALES) + (0 if refit else 2)
    stepped = [0]

    def advance(what):
        stepped[0] += 1
        if step:
            step(stepped[0], n_steps, what)

    base = Estimator(target, profile=profile, overhead=False, context=False, check_host=False).prepare()
    if reference == "profile":  # the profile's own rows (a plain calibration of a full sweep); a refit measures none
        from .transfer import StateReference

        own = None if refit else StateReference.of_profile(base.target, base.profile_path_)
        reference = own if own is not None and own.rows else None
    stem = Path(base.profile_path_)
    paths = {k: stem.with_name(stem.stem + f".{k}.json") for k in ("context", "overhead", "calibration")}
    host = base.target.fingerprint()
    t0 = time.time()
    gate_spec = footprint_gate(llc_mb())
    if refit:
        if not paths["calibration"].exists():
            raise LatencyError(f"nothing to refit from: {paths['calibration']} does not exist; run a calibration first")
        raw = json.loads(paths["calibration"].read_text())
        host, e2e, match, pairs = raw["host"], raw["e2e"], raw["match"], raw["pairs"]
        state = raw.get("state")
        gate_spec = footprint_gate((raw.get("gate") or {}).get("llc_mb") or llc_mb())
        models = models or {n: zoo.build(n) for n in e2e if ":" not in n}
        chain_models = {n: dispatch_chains.build(n) for n in e2e if n.startswith("chain:")}
        probe_models = {n: dispatch_chains.build_probe(n) for n in e2e if n.startswith("probe:")}
        say(f"refitting from {paths['calibration']} ({len(pairs)} kernel pairs, {len(e2e)} models)")
    else:
        state, refs = None, []
        models = models or {n: zoo.build(n) for n in zoo.FIT}
        chain_models = dispatch_chains.chains(chain_families) if chain_families is None or chain_families else {}
        probe_models = dispatch_chains.cache_probes() if probes else {}
        say(f"end-to-end: {len(models)} calibration models, {len(chain_models)} dispatch chains and "
            f"{len(probe_models)} cache probes in one round-robin run")
        if reference is not None:
            refs.append(reference("before the end-to-end run"))
        e2e = measure_models({n: m.SerializeToString() for n, m in {**models, **chain_models, **probe_models}.items()},
                             progress=say)
        advance("end-to-end run done")
        if reference is not None:
            refs.append(reference("between the end-to-end and the in-model runs"))
        say(f"in-model kernel times: {len(models)} models, {repeats} round-robin repeats")
        times = in_model_times({n: m.SerializeToString() for n, m in models.items()}, repeats=repeats, runs=runs)
        pairs, match = [], {}
        for name, m in models.items():
            p, s = kernel_pairs(m, base, name=name, prof=times[name])
            pairs += p
            match[name] = s
            say(f"in-model kernels of {name}: {len(p)} paired ({s['skipped']} left out)")
        advance("in-model kernel times done")
        if reference is not None:
            refs.append(reference("after the in-model run"))
            state = {**state_scales(refs), "reference": refs,
                     "basis": "a sample of the profile's measured rows re-measured with its protocol before, between "
                              "and after the runs; scale = geometric mean of the median ratio (now / profile) of the "
                              "two measurements around a run; that run's times are divided by it before the fits"}
            say(f"machine state against the profile's: end-to-end run x{state['e2e_scale']:.3f}, in-model run "
                f"x{state['in_model_scale']:.3f} (normalised)")
    measured_e2e, measured_pairs = e2e, pairs
    e2e, pairs = _normalised(e2e, pairs, state)
    run_term = dispatch_chains.per_run_us(base, e2e, chain_models) if chain_models else None
    if chain_models and run_term is None:
        say("no dispatch chain could be priced from this profile: the per-run term is fitted with the rest")
    curve = dispatch_chains.gate_curve(base, e2e, run_term["per_run_us"] if run_term else 0.0, probe_models) \
        if probe_models else None
    if curve:
        gate_spec = {**gate_spec, "curve": curve,
                     "basis": "measured at calibration by the cache probe (matrix-vector chains of 1-50 MB of "
                              "weights): time per product from its cache-resident to its from-memory level"}
    elif probe_models:
        say("the cache probe shows no cache-resident/from-memory step: the gate's bounds come from sysfs")
    fps = {n: base.estimate(m).footprint_mb for n, m in models.items()}
    for q in pairs:
        q["weight_mb"] = weight_mb(q["key"])
    source = {"source": f"fitted from {len(pairs)} kernels of {len(models)} models timed inside the model "
                        f"(onnxruntime per-node profile) on {host.get('cpu_model')}",
              "fitted_at": time.strftime("%Y-%m-%d"), "models": list(models), "host": host}
    if state:
        source["state"] = {k: v for k, v in state.items() if k != "reference"}
    ok = [n for n in models if e2e[n]["latency_ms"]]
    meas = [e2e[n]["latency_ms"] * 1000 for n in ok]
    # two bounds are fitted on the calibration models: the private-cache gate (a multiple of the L2
    # size) and the scale from a model's estimated working set to the cache probe's. For each pair
    # of candidates the context model (its weight-fetch rate and curves depend on the gates) and
    # the overhead are refitted; :func:`choose` keeps one (near-ties go to the smaller working-set scale)
    l2, trials = l2_mb(), {}
    lowint = {"min_weight_mb": l2 or 1.0, "max_us_per_mb": LOWINT_US_PER_MB, "cap_mb": gate_spec["llc_mb"],
              "basis": "Conv kernels with weights from the L2 size to the last-level cache size and less time alone "
                       "per MB of weights than max_us_per_mb; weight MB x last-level gate"}
    est = Estimator(target, profile=base.profile_path_, overhead=False, context=False, check_host=False).prepare()
    graphs = {n: load_graph(models[n]) for n in ok}  # parsed once for the candidates below

    def set_gates(scale, fp_scale):
        cg = private_gate(l2, scale)
        for q in pairs:
            q["gate"] = cache_gate(fp_scale * fps[q["model"]], gate_spec["footprint_mb"], gate_spec.get("curve"))
        return cg

    for scale in PRIVATE_GATE_SCALES:
        for fp_scale in FOOTPRINT_SCALES:
            cg = set_gates(scale, fp_scale)
            spec = {**fit_context(pairs, llc=gate_spec["llc_mb"]), "curve_gate": cg, **source,
                    "gate": {**gate_spec, "footprint_scale": fp_scale}}
            trial = est.using(context=ContextModel(spec), overhead=OverheadModel.none())
            ests = [trial.estimate(graphs[n]) for n in ok]
            # weights are priced per kernel by the context model's fetch term: the overhead keeps
            # per-run and per-kernel terms only
            ov = fit_overhead(ests, meas, weight_term=False, short_us=MIN_US,
                              per_run_us=run_term["per_run_us"] if run_term else None, lowint_conv=lowint)
            err = sorted(abs((e.kernel_sum_us + overhead_us(e.kernels, ov, e.cache_gate)) / m - 1)
                         for e, m in zip(ests, meas))
            err = err[:len(err) - len(err) // 10]  # robust: the worst tenth of the models do not choose
            trials[scale, fp_scale] = (100 * sum(err) / len(err), ov, spec)
        advance(f"fitted with the private-cache bound at {scale:g}x L2")
    scale, fp_scale = choose(trials)
    ov, spec = trials[scale, fp_scale][1], trials[scale, fp_scale][2]
    set_gates(scale, fp_scale)  # the pairs kept in the raw file carry the chosen gates
    spec["curve_gate"] = {**spec["curve_gate"], "fit": {
        "scale": scale, "footprint_scale": fp_scale,
        "trimmed_mean_abs_error_pct": {f"{k[0]:g}x L2, footprint x{k[1]:g}": round(v[0], 3) for k, v in trials.items()},
        "basis": "bounds = scale x (L2, 2 x L2) and the last-level gate's footprint scale: each pair tried with the "
                 "context and overhead models refitted, the lowest mean absolute error over the calibration models "
                 f"without their worst tenth kept; pairs within {TIED_ERROR:.0%} of it are tied: the smallest footprint "
                 "scale among them"}}
    if paths["context"].exists():  # curves of their own for int8 kernels (int8_context) stay until measured again
        try:
            old = json.loads(paths["context"].read_text())
        except (OSError, ValueError):
            old = {}
        kept = {k: v for k, v in (old.get("kinds") or {}).items() if ":" in k}
        if kept and old.get("precision_curves"):
            spec["kinds"] = {**spec["kinds"], **kept}
            if old.get("small_kinds"):
                spec["small_kinds"] = old["small_kinds"]
            spec["precision_curves"] = {**old["precision_curves"], "note": "kept from the context model this "
                                        "calibration replaced; 'latency calibrate --int8-context' measures them again"}
    ContextModel(spec).save(paths["context"])
    ov.update({"fitted_on": ok, "host": host, "fitted_at": time.strftime("%Y-%m-%d"), "protocol": PROTOCOL_E2E,
               "context": spec["source"]})
    if state:
        ov["state"] = source["state"]
    if run_term:
        ov["dispatch_chains"] = {**run_term, "n_chains": len(chain_models),
                                 "basis": "per family and size: end-to-end minus kernel sum against kernel count "
                                          "over chain lengths; intercept = per run, slope = per kernel; medians"}
    OverheadModel(ov).save(paths["overhead"])
    if not refit:
        with open(paths["calibration"], "w") as f:
            json.dump({"host": host, "seconds": time.time() - t0, "repeats": repeats, "runs": runs, "gate": gate_spec,
                       "match": match, "e2e": measured_e2e, "state": state,
                       # the times as measured (the fits used them divided by the state scales)
                       "pairs": [{**q, "in_model_us": m["in_model_us"]} for q, m in zip(pairs, measured_pairs)]},
                      f, indent=0)
    return {"pairs": len(pairs), "models": len(models), "context": str(paths["context"]),
            "overhead": str(paths["overhead"]), "raw": str(paths["calibration"]), "per_run_us": ov["per_run_us"],
            "per_kernel_us": ov.get("per_kernel_us"), "per_short_kernel_us": ov.get("per_short_kernel_us"),
            "per_long_kernel_us": ov.get("per_long_kernel_us"), "per_weight_mb_us": ov["per_weight_mb_us"],
            "per_lowint_conv_mb_us": ov.get("per_lowint_conv_mb_us", 0.0),
            "stream_us_per_mb": spec["stream_us_per_mb"],
            "private_gate_scale": scale, "footprint_scale": fp_scale, "residual_rel_median": ov["residual_rel_median"],
            "seconds": time.time() - t0, "state": {k: v for k, v in (state or {}).items() if k != "reference"},
            "gate": "cache probe" if curve else "sysfs cache size"}


#: the quantized models whose kernels give the int8 in-model curves (none of them in benchmarks/whatif.py,
#: which scores the int8 estimates): two transformers and four CNNs
INT8_CONTEXT_MODELS = ("bert_small:64", "distilbert:32", "resnet34:96", "mobilenet_v3_small:128", "regnet_x_400mf:96",
                       "googlenet:96")


def int8_context(target, profile=None, models=None, repeats: int = 3, runs: int = 20, progress=None) -> dict:
    """Add in-model curves of their own for static int8 (QDQ) kernels to ``profile``'s context model.

    The quantized models (``models``: "NAME[:SIZE]" zoo names, default :data:`INT8_CONTEXT_MODELS`, quantized with
    :func:`profilers.quantized.qdq_int8`) and their fp32 originals are timed inside the model in one round-robin
    run; each int8 kernel's time is paired with its price alone and the ratio left after the weight fetch fitted
    per kind (:func:`latency.context.fit_precision_curves`), for kernels of at least ``MIN_US`` alone. The fp32
    kernels of the same run say how the machine runs now against the calibration the context model came from
    (the median of their in-model time over what the context model prices them at): the int8 times are divided
    by it. The fp32 curves, the weight fetch and the gates stay as calibrated. Writes the context model back
    (with the run's provenance under ``precision_curves``) and keeps the pairs in ``<profile>.int8-context.json``.
    """
    from latency.context import SMALL_CURVE_KINDS, fit_precision_curves, fit_small_quant_curve, fit_small_quant_from_pairs

    from .chains import QDQ_SIZES, qdq_chains, qdq_pair_us
    from .quantized import qdq_int8

    say = progress or (lambda msg: None)
    base = Estimator(target, profile=profile, overhead=False, context=False, check_host=False).prepare()
    stem = Path(base.profile_path_)
    path = stem.with_name(stem.stem + ".context.json")
    if not path.exists():
        raise LatencyError(f"{path} does not exist: calibrate the profile first ('latency calibrate'), then add the "
                           "int8 curves")
    cm = ContextModel.load(path)
    names = tuple(models or INT8_CONTEXT_MODELS)
    built = {}
    for spec in names:
        name, _, size = spec.partition(":")
        fp = zoo.build(name, size=int(size)) if size else zoo.build(name)
        built[f"fp32 {spec}"] = fp
        built[f"int8 {spec}"] = qdq_int8(fp)
        say(f"quantized {spec}")
    t0 = time.time()
    times = in_model_times({n: m.SerializeToString() for n, m in built.items()}, repeats=repeats, runs=runs)
    pairs = {"fp32": [], "int8": []}
    for n, m in built.items():
        p, s = kernel_pairs(m, base, name=n, prof=times[n])
        footprint = base.estimate(m).footprint_mb  # the model's gates, as the calibrated context reads them
        for x in p:
            x.update(model=n, gate=cm.gate(footprint), private_gate=cm.curve_gate(footprint))
        pairs[n.split()[0]] += p
        say(f"{n}: {len(p)} kernels paired ({s['skipped']} left out)")
    ratios = []
    for x in pairs["fp32"]:
        iso = x["isolated_us"]
        if iso >= MIN_US and x["in_model_us"] > 0 and x["kind"] in ("Conv", "MatMul"):
            priced = iso * cm.factor(x["kind"], iso, x["private_gate"]) + \
                cm.stream_us(weight_mb(x["key"]), x["gate"], isolated_us=iso, key=x["key"])
            ratios.append(x["in_model_us"] / priced)
    if len(ratios) < 16:
        raise LatencyError(f"only {len(ratios)} fp32 Conv/MatMul kernels of {MIN_US:g} us or more paired: too few to "
                           "tell the machine's state; pass larger models")
    state = float(np.median(ratios))
    curves = fit_precision_curves(pairs["int8"], "int8", cm, state=state)
    if not curves:
        raise LatencyError(f"no int8 kind had 16 kernels of {MIN_US:g} us or more alone among {len(pairs['int8'])} "
                           "pairs: pass larger models")
    # small Q / DQ kernels: chains measured end to end right after, divided by the same state
    say("Q + DQ chains")
    ch = qdq_chains()
    e2e = measure_models({n: m.SerializeToString() for n, m in ch.items()}, progress=None)
    pair = qdq_pair_us(e2e)
    alone = {}
    for c in QDQ_SIZES:
        ks = base.estimate(ch[f"qdq:{c}:1"]).kernels
        q = [k.isolated_us for k in ks if k.kind == "Quant" and k.op_types == ("QuantizeLinear",)]
        dq = [k.isolated_us for k in ks if k.kind == "Quant" and k.op_types == ("DequantizeLinear",)]
        if q and dq:
            alone[c] = (float(q[0]), float(dq[0]))
    ov = OverheadModel.load(stem.with_name(stem.stem + ".overhead.json"))  # the profile's, as the estimate reads it
    per_short = float(ov.get("per_short_kernel_us", ov.get("per_kernel_us", 0.0)) or 0.0)
    # the curve from the real models' own Q / DQ pairs (the chains only where those are too few: a chain keeps
    # its data hot and made them look 30-45% cheaper than they run in real int8 models)
    small = fit_small_quant_from_pairs(pairs["int8"], pairs["fp32"], MIN_US) or \
        fit_small_quant_curve(pair, alone, per_short, state=state)
    spec = dict(cm.spec)
    spec["kinds"] = {**{k: v for k, v in spec.get("kinds", {}).items() if not k.endswith(":int8")}, **curves}
    spec.pop("small_kinds", None)
    if small:
        spec["small_kinds"] = {SMALL_CURVE_KINDS[0]: small}
    spec["precision_curves"] = {"int8": {
        "models": list(names), "pairs": len(pairs["int8"]), "curves": sorted(curves), "state": round(state, 4),
        "fitted_at": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "host": base.target.fingerprint(),
        "basis": "static int8 (quantize_static QDQ) kernels timed inside these models (onnxruntime's per-node profile, "
                 f"{repeats} round-robin repeats of {runs} runs, minimum) against their price alone, the weight fetch "
                 "taken off, per kind for kernels of at least MIN_US alone; the in-model times divided by 'state', the "
                 "median in-model / priced of the fp32 originals' Conv and MatMul kernels in the same run",
        "small": {"curve": SMALL_CURVE_KINDS[0] if small else None, "curve_from": (small or {}).get("basis", "chains"),
                  "per_short_kernel_us": round(per_short, 4),
                  "pair_us": {str(c): round(v, 4) for c, v in pair.items()},
                  "alone_us": {str(c): [round(x, 4) for x in v] for c, v in alone.items()},
                  "basis": "Q / DQ kernels shorter than min_us alone: chains x -> [Q -> DQ -> Tanh] x n against "
                           "x -> [Tanh] x n on [1, C], n = 1 and 16, measured end to end "
                           "(profilers.e2e.measure_models, wall clock); one pair's slope divided by 'state', less the "
                           "overhead model's two "
                           "per-kernel terms, over the two kernels' prices alone"}}}
    ContextModel(spec).save(path)
    raw = stem.with_name(stem.stem + ".int8-context.json")
    tmp = raw.with_name(raw.name + ".tmp")
    tmp.write_text(json.dumps({"state": state, "pairs": pairs, "qdq_chains": {
        "pair_us": {str(c): v for c, v in pair.items()}, "alone_us": {str(c): v for c, v in alone.items()},
        "e2e": {n: {k: r.get(k) for k in ("latency_ms", "rounds_ms", "error")} for n, r in e2e.items()}}}, indent=0))
    tmp.replace(raw)
    return {"context": str(path), "raw": str(raw), "state": state, "curves": {k: v["pairs"] for k, v in curves.items()},
            "small": {"pair_us": pair, "alone_us": alone, "ratio": [round(math.exp(v), 3) for v in
                                                                    (small or {}).get("log_ratio", [])]},
            "pairs": len(pairs["int8"]), "seconds": time.time() - t0}
