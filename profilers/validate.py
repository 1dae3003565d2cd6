"""Validate an estimate on this device: the model measured end to end and kernel by kernel, beside the estimate.

Two measurements, both with onnxruntime on the CPU execution provider, one intra-op thread (the
caller pins the process to one core, as ``latency calibrate`` does):

* **end to end**: :func:`profilers.e2e.measure_models`, the robust protocol of the calibration
  (fresh sessions per phase, round-robin rounds, median per round, minimum over rounds, extra phases
  until a second round confirms the fastest), with fewer phases and rounds (:class:`ValidateProtocol`);
* **per kernel**: onnxruntime's per-node profile (:func:`profilers.e2e.kernel_profile`) in a few
  fresh sessions, each kernel's minimum over sessions of its median over runs, paired with the
  estimator's kernels by :func:`profilers.context.kernel_pairs`, the pairing the calibration uses.

:func:`validate` returns a plain dict with stable keys (the ``--json`` output of ``latency validate``).
Errors are ``100 * (predicted - measured) / measured`` in percent: positive means the estimate is slow.
"""

from __future__ import annotations

import dataclasses
import os
import re
import time
from dataclasses import dataclass

from latency.errors import LatencyError

from .e2e import CONFIRM

#: the keys of :func:`validate`'s result and of each of its kernels (the ``--json`` schema)
RESULT_KEYS = ("model", "target", "profile", "device", "protocol", "total", "kernel_sum", "matched_sum", "matching",
               "kernels", "unmatched_runtime_kernels", "warnings", "seconds")
KERNEL_KEYS = ("name", "kind", "precision", "sparsity", "nodes", "source", "isolated_us", "predicted_us",
               "measured_us", "error_pct", "runtime_node")


@dataclass(frozen=True)
class ValidateProtocol:
    """Measuring settings of a validation: the calibration's protocol, shortened.

    ``phases`` fresh-session phases of ``rounds // phases`` round-robin rounds (end to end); a model
    whose fastest round has no second round within ``confirm`` gets more phases, up to ``max_phases``.
    Per kernel: ``kernel_repeats`` fresh profiled sessions of ``kernel_runs`` runs each.
    """

    phases: int = 3
    rounds: int = 6
    max_phases: int = 6
    confirm: float = CONFIRM
    kernel_repeats: int = 3
    kernel_runs: int = 10
    threads: int = 1
    level: str = "all"

    def describe(self) -> str:
        return (f"end to end: {self.phases} phases x {self.rounds // self.phases} rounds, fresh sessions per phase, "
                f"up to {self.max_phases} phases until a second round is within {self.confirm:.0%} of the fastest, "
                f"min of round medians; per kernel: onnxruntime per-node profile, min over {self.kernel_repeats} "
                f"fresh sessions of the median of {self.kernel_runs} runs; {self.threads} thread, "
                f"graph optimization '{self.level}'")


def error_pct(predicted, measured):
    """``100 * (predicted - measured) / measured`` (percent), None when either is missing or measured <= 0."""
    if predicted is None or measured is None or measured <= 0:
        return None
    return 100.0 * (predicted - measured) / measured


class _FixedShapes:
    """A session whose inputs report the shapes the estimate used (``--shape``/``--batch`` applied), so
    :func:`profilers.e2e.make_inputs` feeds the runtime exactly what was priced."""

    def __init__(self, session, graph):
        self._session = session
        self._shapes = {t.name: list(t.shape) for t in graph.inputs if t.shape is not None}

    def get_inputs(self):
        out = []
        for i in self._session.get_inputs():
            shape = self._shapes.get(i.name, i.shape)
            out.append(type("Input", (), {"name": i.name, "type": i.type, "shape": shape}))
        return out


class _Priced:
    """Stands in for an Estimator in :func:`profilers.context.kernel_pairs`: returns an estimate made once."""

    def __init__(self, est):
        self._est = est

    def estimate(self, _model):
        return self._est


def _kernel_times(src, feed, repeats: int, runs: int, step) -> dict:
    """Per-kernel in-model times: min over ``repeats`` fresh profiled sessions of each kernel's median
    over ``runs`` runs (us); a repeat whose kernel list differs from the first is not used."""
    from .e2e import kernel_profile

    best, sums, runs_us = None, [], []
    for r in range(repeats):
        prof = kernel_profile(src, runs=runs, feed=feed)
        sums.append(prof["kernel_sum_us"])
        runs_us.append(prof["model_run_us"])
        ks = prof["kernels"]
        if best is None:
            best = [{"name": k["name"], "op_name": k["op_name"], "in_model_us": float(k["dur_us"])} for k in ks]
        elif [k["name"] for k in ks] == [b["name"] for b in best]:
            for b, k in zip(best, ks):
                b["in_model_us"] = min(b["in_model_us"], float(k["dur_us"]))
        step(f"kernel profile {r + 1}/{repeats}")
    return {"kernels": best or [], "kernel_sum_us": min(sums), "model_run_us": min(runs_us)}


_DEVICE_KEYS = ("cpu_model", "cpu_flags", "runtime_version")


def _diff(key: str, profile, host) -> str:
    if isinstance(profile, list) and isinstance(host, list):
        plus, minus = sorted(set(host) - set(profile)), sorted(set(profile) - set(host))
        return f"{key} on this host: " + " ".join([f"+{f}" for f in plus] + [f"-{f}" for f in minus])
    return f"{key}: profile {profile!r}, host {host!r}"


def _device(target, profile_path) -> dict:
    """The profile's measuring device and this host (CPU model, ISA flags, runtime version) and which differ."""
    from latency.store import Store

    host = target.fingerprint()
    prof: dict = {}
    if profile_path:
        with Store(profile_path, readonly=True) as st:
            tid = st.find_target(target.name)
            prof = ((st.target(tid) or {}).get("fingerprint") or {}) if tid else {}
    if isinstance(prof, str):
        import json

        prof = json.loads(prof)
    pick = {k: prof.get(k) for k in _DEVICE_KEYS}
    here = {k: host.get(k) for k in _DEVICE_KEYS}
    return {"profile": pick, "host": here, "differs": [k for k in _DEVICE_KEYS if prof and pick[k] != here[k]]}


def validate(model, target, profile=None, shapes=None, batch=None, protocol: ValidateProtocol | None = None,
             core: int | None = None, progress=None, trip_counts: dict | None = None) -> dict:
    """Measure ``model`` (an ONNX path) on this host and put it beside ``target``'s estimate.

    ``target``: a target name or :class:`latency.targets.Target` whose runtime this host runs (else
    :class:`LatencyError`). ``profile``: the profiling database to estimate from (default: the
    target's). ``shapes``/``batch``: as for an estimate; the runtime is fed the same shapes.
    ``core``: recorded in the protocol (the caller pins). ``trip_counts``: iterations of Loop nodes by
    name, for the estimate and, where a Loop's count is a graph input, fed to the measured run as that
    input. ``progress``: called as
    ``progress(done, total, note)`` after each measuring step. Returns a dict with the keys
    ``RESULT_KEYS``; times in ``*_us`` (microseconds) and ``*_ms`` (milliseconds).
    """
    import numpy as np
    import onnx

    from latency.estimator import Estimator
    from latency.graph import load_graph
    from latency.ops import kind_of_op
    from latency.targets import get_target

    from .context import kernel_pairs
    from .e2e import _session, make_inputs, measure_models

    t0 = time.time()
    proto_ = protocol or ValidateProtocol()
    t = get_target(target) if isinstance(target, str) else target
    ok, why = t.host_supported()
    if not ok:
        raise LatencyError(f"cannot validate on this host: {why}")
    if t.backend != "ort-cpu":
        raise LatencyError(f"cannot validate target {t.name} here: it is not measured with onnxruntime on this "
                           f"host's CPU (validate needs an onnxruntime CPU target)")
    if not isinstance(model, (str, os.PathLike)):
        raise LatencyError("validate takes the path of an ONNX file")
    path = os.fspath(model)
    # one-line ModelError/DynamicShapeError on bad input
    graph = load_graph(path, shapes=shapes, batch=batch, trip_counts=trip_counts)
    est = Estimator(t, profile=profile).estimate(graph)
    device = _device(t, est.profile)

    total_steps = proto_.rounds + proto_.kernel_repeats
    done = 0

    def step(note: str, grow: int = 0) -> None:
        nonlocal done, total_steps
        done += 1
        total_steps += grow
        if progress:
            progress(done, total_steps, note)

    def on_e2e(msg: str) -> None:
        nonlocal total_steps
        # measure_models reports every round ("phase 2/3 round 1/2: 0.05 s") and every phase start;
        # an extra phase ("phase 4 (extra, 1 models): ...") adds its rounds to the total
        if re.match(r"phase \S+ round \d+/\d+", msg):
            step(f"end to end, {msg.split(':')[0]}")
        elif "(extra" in msg and progress:
            m = re.search(r"(\d+) rounds$", msg)
            total_steps += int(m.group(1)) if m else 1

    try:
        sess = _session(path, proto_.threads, proto_.level)
        feed = make_inputs(_FixedShapes(sess, graph), path)
        del sess
        for node in onnx.load(path, load_external_data=False).graph.node:  # a Loop's count fed as asked
            if node.op_type == "Loop" and node.name in (trip_counts or {}) and node.input and node.input[0] in feed:
                m = feed[node.input[0]]
                feed[node.input[0]] = np.full(m.shape, int(trip_counts[node.name]), m.dtype)
    except Exception as e:  # noqa: BLE001 - the runtime's own refusal, in one line
        raise LatencyError(f"onnxruntime cannot run {path}: {type(e).__name__}: {str(e).splitlines()[0][:300]}") \
            from None
    e2e = measure_models({"model": path}, rounds=proto_.rounds, phases=proto_.phases, threads=proto_.threads,
                         level=proto_.level, feeds={"model": feed}, confirm=proto_.confirm,
                         max_phases=proto_.max_phases, progress=on_e2e)["model"]
    if e2e["error"]:
        raise LatencyError(f"onnxruntime cannot run {path}: {e2e['error']}")
    times = _kernel_times(path, feed, proto_.kernel_repeats, proto_.kernel_runs, step)

    # kernel_pairs names its pairs by config key; tagging each kernel's key with its index maps every pair
    # back to its kernel, also where two kernels share one config
    tagged = dataclasses.replace(est, kernels=tuple(dataclasses.replace(k, key=f"#{i}")
                                                    for i, k in enumerate(est.kernels)))
    light = onnx.load(path, load_external_data=False)
    pairs, match = kernel_pairs(light, _Priced(tagged), name="model", prof=times["kernels"])
    measured = {int(p["key"][1:]): p for p in pairs}

    kernels = []
    for i, k in enumerate(est.kernels):
        p = measured.get(i)
        m_us = p["in_model_us"] if p else None
        kernels.append({"name": k.name, "kind": k.kind, "precision": k.precision, "sparsity": k.sparsity,
                        "nodes": list(k.nodes), "source": k.source, "isolated_us": k.isolated_us,
                        "predicted_us": k.latency_us, "measured_us": m_us, "error_pct": error_pct(k.latency_us, m_us),
                        "runtime_node": p["runtime_node"] if p else None})
    paired_nodes = {p["runtime_node"] for p in pairs}
    unmatched = [{"name": k["name"], "op_name": k["op_name"], "kind": kind_of_op(k["op_name"]),
                  "measured_us": k["in_model_us"]} for k in times["kernels"] if k["name"] not in paired_nodes]
    pred_matched = sum(k["predicted_us"] for k in kernels if k["measured_us"] is not None)
    meas_matched = sum(k["measured_us"] for k in kernels if k["measured_us"] is not None)
    measured_ms = e2e["latency_ms"]
    priced = [k for k in est.kernels if k.source != "free"]
    warnings = list(est.warnings)
    if len(measured) < len(priced):
        warnings.append(f"{len(priced) - len(measured)} of {len(priced)} priced kernels could not be paired with "
                        f"a runtime kernel (their kind's kernel counts differ): no measured_us for them")
    if device["differs"]:
        warnings.append("this host is not the device the profile was measured on (" + "; ".join(
            _diff(k, device["profile"].get(k), device["host"].get(k)) for k in device["differs"])
            + "): the errors are this host against that device's profile")
    if not e2e["confirmed"]:
        warnings.append(f"the end-to-end minimum is unconfirmed: no second round within {proto_.confirm:.0%} of the "
                        f"fastest after {e2e['phases']} phases (a noisy machine); rerun, or with more --phases")
    return {
        "model": path,
        "target": est.target,
        "profile": est.profile,
        "device": device,
        "protocol": {**dataclasses.asdict(proto_), "core": core, "description": proto_.describe(),
                     "runtime": "onnxruntime CPUExecutionProvider"},
        "total": {"predicted_ms": est.total_ms, "measured_ms": measured_ms,
                  "error_pct": error_pct(est.total_ms, measured_ms),
                  "measured_median_ms": e2e["median_ms"], "measured_rounds_ms": e2e["rounds_ms"],
                  "spread": e2e["spread"], "phases": e2e["phases"], "confirmed": e2e["confirmed"],
                  "predicted_overhead_us": est.overhead_us,
                  "measured_source": "end to end (sess.run wall time), min of round medians"},
        "kernel_sum": {"predicted_us": est.kernel_sum_us, "measured_us": times["kernel_sum_us"],
                       "error_pct": error_pct(est.kernel_sum_us, times["kernel_sum_us"]),
                       "measured_source": "sum of every top-level kernel in onnxruntime's per-node profile, "
                                          "min over sessions of the median over runs"},
        "matched_sum": {"predicted_us": pred_matched, "measured_us": meas_matched,
                        "error_pct": error_pct(pred_matched, meas_matched), "kernels": len(measured)},
        "matching": {"priced_kernels": len(priced), "paired": len(measured), "by_name": match["by_name"],
                     "by_order": match["by_order"], "left_out": match["skipped"],
                     "runtime_kernels": len(times["kernels"])},
        "kernels": kernels,
        "unmatched_runtime_kernels": unmatched,
        "warnings": warnings,
        "seconds": time.time() - t0,
    }


def render(res: dict, top: int = 15) -> list[str]:
    """Text lines of a validation result: the total, the kernel sums, then the ``top`` kernels by measured
    time (0: all) with predicted, measured and error."""
    def pct(v):
        return f"{v:+7.1f}%" if v is not None else "      -"

    def num(v, fmt="{:11.1f}"):
        return fmt.format(v) if v is not None else f"{'-':>11}"

    tot, ks, m = res["total"], res["kernel_sum"], res["matched_sum"]
    out = [f"model     {res['model']}", f"target    {res['target']}  profile {res['profile'] or '-'}",
           f"protocol  {res['protocol']['description']}; pinned to core {res['protocol']['core']}",
           "",
           f"{'':24s} {'predicted':>11} {'measured':>11} {'error':>8}",
           f"{'total (ms)':24s} {tot['predicted_ms']:11.3f} {tot['measured_ms']:11.3f} {pct(tot['error_pct'])}"
           f"   [end to end; {tot['phases']} phases, spread {100 * (tot['spread'] or 0):.1f}%"
           f"{'' if tot['confirmed'] else ', unconfirmed'}]",
           f"{'kernel sum (us)':24s} {ks['predicted_us']:11.1f} {ks['measured_us']:11.1f} {pct(ks['error_pct'])}"
           f"   [all runtime kernels, per-node profile]",
           f"{'paired kernels (us)':24s} {m['predicted_us']:11.1f} {m['measured_us']:11.1f} {pct(m['error_pct'])}"
           f"   [{m['kernels']} of {res['matching']['priced_kernels']} priced kernels paired]",
           ""]
    rows = [k for k in res["kernels"] if k["source"] != "free"]
    rows.sort(key=lambda k: -(k["measured_us"] if k["measured_us"] is not None else k["predicted_us"]))
    if top:
        rows = rows[:top]
    out.append(f"{'predicted_us':>12} {'measured_us':>11} {'error':>8}  {'source':22s} {'kind':12s} {'prec':5s} kernel")
    for k in rows:
        out.append(f"{k['predicted_us']:12.1f} {num(k['measured_us'])} {pct(k['error_pct'])}  {k['source']:22s} "
                   f"{k['kind']:12s} {k['precision']:5s} {k['name']}")
    un = res["unmatched_runtime_kernels"]
    if un:
        free = sum(1 for u in un if u["kind"] == "Free")
        out.append(f"\nruntime kernels not paired with a priced kernel: {len(un)}, "
                   f"{sum(u['measured_us'] for u in un):.1f} us in all"
                   + (f" ({free} of them metadata ops the estimate prices as free)" if free else ""))
    return out
