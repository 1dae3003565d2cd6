"""The onnxruntime CPU measuring backend and its protocol.

Protocol (see the project's measured facts on this kind of shared VM): 1 intra-op thread, the
process pinned to one core; a chunk of configs is measured together in *phases*; each phase creates
fresh sessions for every config (session-level slowness is a property of the session), warms them,
then runs round-robin *rounds* over the chunk. In each round a config runs ``n`` times and the
round's value is the interquartile mean of the per-run kernel times (onnxruntime's per-node
profile, integer microseconds; the interquartile mean keeps sub-microsecond resolution while
discarding outliers). The headline ``latency_us`` is the minimum over rounds (the machine's fast
state); every round's value, a reference-kernel (canary) value per round and the edge kernels the
runtime adds around an isolated op (layout reorders, casts, edge (de)quantization) are kept.
Configs whose two lowest rounds differ by more than ``unstable_spread`` get one more phase.
v2 (the default) skips a config's third phase when its first two settled it (``settle_after``) and
runs kernels of 10 ms or more 3 times a round instead of 5 (``long_kernel_us``); :data:`V1` is the
protocol before, which the shipped profiles were measured with.
"""

from __future__ import annotations

import bisect
import json
import os
import statistics
import tempfile
import time
from dataclasses import asdict, dataclass

import numpy as np

from latency.ops import REORDERS, Config

from .builders import NotBuildable, build, feeds


@dataclass(frozen=True)
class Protocol:
    name: str = "rr-fresh-iqm-v2"
    phases: int = 3
    rounds_per_phase: int = 3
    warmup: int = 3
    min_runs: int = 5
    max_runs: int = 31
    round_budget_us: float = 16000.0
    unstable_spread: float = 0.05
    remeasure_phases: int = 1
    #: adaptive length: after this many phases (0: off, every phase runs) a config whose two lowest
    #: rounds came from different phases (fresh sessions) and agree within ``settled_spread`` is done;
    #: the others run the remaining phases
    settle_after: int = 2
    settled_spread: float = 0.02
    #: kernels of at least this latency (us; 0: off) run ``long_min_runs`` per round, not ``min_runs``
    long_kernel_us: float = 10000.0
    long_min_runs: int = 3
    threads: int = 1
    opt_level: str = "all"
    statistic: str = "iqm of per-run kernel-time sums; headline = min over rounds"

    def spec(self) -> dict:
        """The fields, less the adaptive ones where they are off (so :data:`V1`'s record is the one
        the profiles measured before they existed carry)."""
        d = asdict(self)
        if not self.settle_after:
            d.pop("settle_after"), d.pop("settled_spread")
        if not self.long_kernel_us:
            d.pop("long_kernel_us"), d.pop("long_min_runs")
        return d


#: the protocol the shipped profiles were measured with: every config 3 phases, 5-31 runs per round.
#: The default (v2) stops a config after 2 phases when its two lowest rounds, from two sessions, agree
#: within 2%, and runs kernels of 10 ms or more 3 times per round: on the Xeon guest, configs drawn from
#: the plan's four latency bands and measured by both alternately gave v2 / v1 x0.98-1.01 per band, a
#: pass-to-pass spread of 1.8-3.3% (v1 1.4-4.3%), and a full sweep 22% shorter (1.81 -> 1.41 h at that hour's
#: cost per config; benchmarks/results/protocol_compare_x86-avx512-ort.xeon-amx.txt)
V1 = Protocol(name="rr-fresh-iqm-v1", settle_after=0, long_kernel_us=0.0)


#: ops the runtime inserts around an isolated kernel that do not belong to it inside a network
_INSERTED_EDGE_OPS = {*REORDERS, "Transpose", "Cast", "QuantizeLinear", "DequantizeLinear"}


def iqm(values) -> float:
    """Interquartile mean: the mean of the middle half of the sorted values."""
    v = sorted(values)
    n = len(v)
    if n < 4:
        return float(statistics.median(v))
    lo, hi = n // 4, n - n // 4
    return float(sum(v[lo:hi]) / (hi - lo))


def pin_to_core(core: int | None) -> None:
    if core is not None and hasattr(os, "sched_setaffinity"):
        try:
            os.sched_setaffinity(0, {core})
        except OSError:
            pass


def _session(model_bytes: bytes, protocol: Protocol, prof_prefix: str | None):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = protocol.threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = {
        "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
        "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
        "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
        "disabled": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
    }[protocol.opt_level]
    so.log_severity_level = 3
    if prof_prefix:
        so.enable_profiling = True
        so.profile_file_prefix = prof_prefix
    return ort.InferenceSession(model_bytes, so, providers=["CPUExecutionProvider"])


class _Canary:
    """MatMul 64x512x512 fp32: a reference kernel timed once per round (wall clock, microseconds)."""

    def __init__(self, protocol):
        cfg = Config("MatMul", {"a": [64, 512], "b": [512, 512], "const_b": 1, "bias": 0, "scale": 0,
                                "trans_b": 0, "act": "none"})
        self.sess = _session(build(cfg).SerializeToString(), protocol, None)
        self.feed = feeds(build(cfg))
        for _ in range(3):
            self.sess.run(None, self.feed)

    def __call__(self) -> float:
        ts = []
        for _ in range(7):
            t0 = time.perf_counter_ns()
            self.sess.run(None, self.feed)
            ts.append((time.perf_counter_ns() - t0) / 1000.0)
        return float(statistics.median(ts))


def _own_mask_fn(cfg: Config, model_nodes: set[str]):
    """Which profiled kernel events belong to the config's own kernel."""
    if cfg.kind in ("Reorder", "Quant"):
        target = cfg.params["op"]
        return lambda node, op: op == target
    own_ops = {"Transpose"} if cfg.kind == "Transpose" else set()
    if cfg.kind == "Activation" and cfg.params.get("op") == "Cast":
        own_ops.add("Cast")

    def is_own(node: str, op: str) -> bool:
        if node.startswith(("edge_", "aux_")) or "aux_" in node:
            return False
        if node in model_nodes:
            return True
        # renamed by fusion or inserted by the runtime
        return not (op in _INSERTED_EDGE_OPS and op not in own_ops)

    return is_own


def _parse_profile(path: str, is_own, own_ops: set | None = None) -> list[tuple[float, dict]]:
    """Per model_run: (own kernel time us, {edge op name: us}) in run order; ``own_ops`` collects the
    runtime op names that were timed as the config's own kernel."""
    with open(path) as f:
        events = json.load(f)
    runs = sorted((e["ts"], e["ts"] + e["dur"]) for e in events
                  if e.get("cat") == "Session" and e.get("name") == "model_run")
    starts = [r[0] for r in runs]
    own = [0.0] * len(runs)
    edges: list[dict] = [dict() for _ in runs]
    for e in events:
        if e.get("cat") != "Node" or not e.get("name", "").endswith("_kernel_time"):
            continue
        i = bisect.bisect_right(starts, e["ts"]) - 1
        if i < 0 or e["ts"] > runs[i][1]:
            continue
        node = e["name"][: -len("_kernel_time")]
        op = e.get("args", {}).get("op_name", "")
        if is_own(node, op):
            own[i] += e["dur"]
            if own_ops is not None:
                own_ops.add(op)
        else:
            edges[i][op] = edges[i].get(op, 0.0) + e["dur"]
    return list(zip(own, edges))


@dataclass
class _Item:
    cfg: Config
    model: bytes | None = None
    feed: dict | None = None
    nodes: set | None = None
    n: int = 0
    rounds: list | None = None
    runs: int = 0
    edges: dict | None = None
    kernel_ops: set | None = None
    error: str | None = None
    remeasured: int = 0
    phase_of: list | None = None
    phases: int = 0


def _phase(items: list[_Item], protocol: Protocol, tmp: str, canary: _Canary, canary_vals: list) -> None:
    """One phase: fresh sessions for every item, warmup, ``rounds_per_phase`` round-robin rounds."""
    live = []
    for it in items:
        if it.error:
            continue
        it.phases += 1
        try:
            sess = _session(it.model, protocol, os.path.join(tmp, f"p{id(it)}_{len(it.rounds)}"))
            walls = []
            for _ in range(protocol.warmup):
                t0 = time.perf_counter_ns()
                sess.run(None, it.feed)
                walls.append((time.perf_counter_ns() - t0) / 1000.0)
            if not it.n:
                lat = max(1.0, min(walls))
                lo = (protocol.long_min_runs if protocol.long_kernel_us and lat >= protocol.long_kernel_us
                      else protocol.min_runs)
                it.n = int(min(protocol.max_runs, max(lo, protocol.round_budget_us / lat)))
            live.append((it, sess))
        except Exception as e:  # a failed measurement is data
            it.error = f"{type(e).__name__}: {str(e).splitlines()[0][:300] if str(e) else ''}"
    for _ in range(protocol.rounds_per_phase):
        canary_vals.append(canary())
        for it, sess in live:
            try:
                for _ in range(it.n):
                    sess.run(None, it.feed)
            except Exception as e:
                it.error = f"{type(e).__name__}: {str(e).splitlines()[0][:300] if str(e) else ''}"
    for it, sess in live:
        path = sess.end_profiling()
        try:
            if it.error:
                continue
            per_run = _parse_profile(path, _own_mask_fn(it.cfg, it.nodes), it.kernel_ops)
            timed = per_run[protocol.warmup:]
            for r in range(protocol.rounds_per_phase):
                chunk = timed[r * it.n:(r + 1) * it.n]
                if len(chunk) < it.n:
                    it.error = f"profile has {len(timed)} timed runs, expected {protocol.rounds_per_phase * it.n}"
                    break
                it.rounds.append(iqm([c[0] for c in chunk]))
                it.phase_of.append(it.phases)
                it.runs += len(chunk)
                for c in chunk:
                    for op, us in c[1].items():
                        it.edges.setdefault(op, []).append(us)
        finally:
            try:
                os.remove(path)
            except OSError:
                pass


def _settled(it: _Item, protocol: Protocol) -> bool:
    """Its two lowest rounds come from two phases (two sessions) and agree within ``settled_spread``."""
    if it.error:
        return True
    if len(it.rounds) < 2:
        return False
    lo = sorted(range(len(it.rounds)), key=it.rounds.__getitem__)[:2]
    return it.phase_of[lo[0]] != it.phase_of[lo[1]] and _spread(it.rounds) <= protocol.settled_spread


def _spread(rounds: list[float]) -> float:
    s = sorted(rounds)
    if len(s) < 2 or s[0] <= 0:
        return 0.0
    return s[1] / s[0] - 1.0


def measure_chunk(configs: list[Config], protocol: Protocol = Protocol(), seed: int = 0) -> list[dict]:
    """Measure a chunk of configs with the protocol; one result dict per config (failures included).

    Each dict has the measurement columns of the profiling database (latency_us, median_us,
    spread, n_rounds, n_runs, rounds_us, canary_us, unstable, remeasured, kernel_ops, error, extra).
    """
    items = []
    for cfg in configs:
        it = _Item(cfg, rounds=[], edges={}, kernel_ops=set(), phase_of=[])
        try:
            m = build(cfg, seed)
            it.model = m.SerializeToString()
            it.feed = feeds(m, seed)
            it.nodes = {n.name for n in m.graph.node}
        except NotBuildable as e:
            it.error = f"not buildable: {e}"
        except Exception as e:
            it.error = f"build failed: {type(e).__name__}: {str(e).splitlines()[0][:300] if str(e) else ''}"
        items.append(it)
    canary_vals: list[float] = []
    with tempfile.TemporaryDirectory(prefix="latency-prof-") as tmp:
        canary = _Canary(protocol)
        for ph in range(protocol.phases):
            todo = items
            if protocol.settle_after and ph >= protocol.settle_after:
                todo = [it for it in items if not _settled(it, protocol)]
                if not todo:
                    break
            _phase(todo, protocol, tmp, canary, canary_vals)
        for _ in range(protocol.remeasure_phases):
            again = [it for it in items if not it.error and _spread(it.rounds) > protocol.unstable_spread]
            if not again:
                break
            for it in again:
                it.remeasured += 1
            _phase(again, protocol, tmp, canary, canary_vals)
    out = []
    for it in items:
        ok = not it.error and it.rounds
        row = {
            "latency_us": float(min(it.rounds)) if ok else None,
            "median_us": float(statistics.median(it.rounds)) if ok else None,
            "spread": _spread(it.rounds) if ok else None,
            "n_rounds": len(it.rounds),
            "n_runs": it.runs,
            "rounds_us": [round(r, 3) for r in it.rounds],
            "canary_us": [round(c, 2) for c in canary_vals],
            "unstable": int(bool(ok and _spread(it.rounds) > protocol.unstable_spread)),
            "remeasured": it.remeasured,
            "kernel_ops": sorted(it.kernel_ops),
            "error": None if ok else (it.error or "no timed runs"),
            "extra": {"edge_us": {op: round(float(np.median(v)), 2) for op, v in it.edges.items()},
                      "runs_per_round": it.n, "phases": it.phases},
        }
        out.append(row)
    return out
