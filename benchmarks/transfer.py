"""Transfer calibration: held-out accuracy against the number of probes, base profile -> this host.

The pair: the shipped x86-avx512-ort profile (measured on another AMD EPYC) -> this host. Ground
truth: held-out zoo models (none in ``profilers.zoo.FIT``, which choose the probe shares and fit the
in-model context) measured end to end here with the robust protocol (``profilers.e2e.measure_models``:
fresh-session phases, round-robin rounds, min of round medians; every round kept in the run folder),
in two passes after the probes, the faster of the two kept.

Probes: the first N of the order ``latency calibrate --from`` measures (``profilers.transfer.choose_probes``:
the base rows spread by ``latency.transfer.probe_order``, groups weighted by typical models' time), measured once here with the sweep's protocol (the largest N;
any prefix is the smaller probe set). For each N a profile is made as the command makes it: the N
probes, every other base row scaled by the curves fitted on them (source ``transferred``), regressors
retrained on that table; then it is scored two ways:

* ``context here``: the in-model context and overhead fitted on this host (one calibration measured
  here on the largest-N profile; for the others its raw pairs are re-priced with their own table and
  refitted, ``profilers.calibrate`` with ``refit``);
* ``base context``: the base profile's context and overhead copied, what a small budget gives.

These rows are a FIXED-COUNT CURVE, not the command: every ``context here`` row shares the one
calibration run of this script (measured after the ground truth), so that run's own error (a few %
on a shared VM, the same sign for every row) is in all of them; the command a user runs measures as
many probes as its budget allows and calibrates right after them. ``--cli`` runs that command itself
(``profilers.transfer.transfer``) and measures the held-out models right after it, and cuts the
same curve from its own probes with its own calibration (:func:`cli_run`).

With no probe: the closest profile as is (its own context and overhead), and the base scaled by what
the two device descriptions say (``latency.transfer.description_model``: clock, IPC, vector width,
L1 load width, VNNI; the base's family is inferred from its flags), with the base's context and
overhead moved by the same description as ``--budget 0`` writes them
(``latency.transfer.transfer_calibration``), and, for comparison, copied unchanged.

Evaluation only (nothing is fitted on them): when this host's own full sweep exists
(tables/<target>.epyc-zen5.db, shipped with its context and overhead) it is scored as the
ceiling, and every transfer variant is scored row by row against it (:class:`RowScore`).

``--pair avx2``: the second pair, this host's full AVX-512 sweep -> this host with AVX-512 hidden
(target x86-avx2-ort emulated through the CPUID mask, ``profilers.emulate``): the script re-runs
itself under the mask, so the probes, the calibration and the held-out ground truth are all measured
with onnxruntime's AVX2 kernels.

The machine's state: a shared VM drifts between states minutes apart. The calibration normalises
its runs by a sample of the probes re-measured around them (``profilers.transfer.StateReference``,
as ``latency calibrate --from`` does); the same reference is also measured after the probes and after
each ground-truth pass (measured right after the probes), and printed (evaluation only: it says whether the ground truth was
measured in the probes' state; nothing is corrected with it): a last column scores every variant
against the ground truth divided by that state (diagnosis only, the other columns use it as measured),
and a "not normalised" row refits the same calibration without its state ratios.

    python benchmarks/transfer.py [--pair host|avx2] [--probes 0,30,100,300,1000] [--core 0] [--cached]
                                  [--tag NAME] [--out FILE]
    python benchmarks/transfer.py --cli [--budget 10m] [--core 1] [--cached] [--tag NAME]   # the command a user runs,
                                  # the held-out models measured right after it (see cli_run)
    python benchmarks/transfer.py --profile NEW.db [--core 1] [--out FILE]   # a profile `latency calibrate --from`
                                  # wrote, scored with its own context against the held-out models measured now

Output: benchmarks/results/transfer_<host>[.<tag>].txt; raw data in benchmarks/results/runs/transfer_<host>[.<tag>]/
(ground_truth.json and ground_truth_2.json with every round, probes.db with every probe's rounds,
calibration.json, state.json). A new ``--tag`` measures everything afresh in a folder of its own;
``--cached`` on a folder with its ground truth measures nothing (a probe of today's probe order that
probes.db lacks, the base having changed since, is left out of every curve, never measured in another state).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import sys
import tempfile
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from latency.estimator import Estimator  # noqa: E402
from latency.errors import LatencyError  # noqa: E402
from latency.ops import Config  # noqa: E402
from latency.profiles import closest, companion, device_distance, host_device, read_cpu, read_profile  # noqa: E402
from latency.regressor import train_all  # noqa: E402
from latency.store import Store  # noqa: E402
from latency.targets import get_target  # noqa: E402
from latency.transfer import description_model, fit_transfer  # noqa: E402
from latency.transfer import transfer_calibration  # noqa: E402
from profilers import zoo  # noqa: E402
from profilers.calibrate import calibrate  # noqa: E402
from profilers.e2e import PROTOCOL as E2E_PROTOCOL, measure_models  # noqa: E402
from profilers.measure import pin_to_core  # noqa: E402
from profilers.sweep import run_sweep  # noqa: E402
from profilers.transfer import StateReference, _slug, choose_probes, write_transferred  # noqa: E402

TARGET = "x86-avx512-ort"
#: the target the transfer writes (pair "avx2": x86-avx2-ort, measured under the CPUID mask)
NEW_TARGET = TARGET
PAIRS = {"host": "the closest shipped x86-avx512-ort profile measured on another device -> this host",
         "avx2": "this host's full x86-avx512-ort sweep -> this host with AVX-512 hidden (emulated AVX2, CPUID mask)"}
#: held-out architectures at modest sizes (1-30 ms here): none is in zoo.FIT
HELD = (("resnet34", 128, 1), ("regnet_x_400mf", 160, 1), ("mobilenet_v3_small", 160, 1), ("mnasnet1_0", 160, 1),
        ("shufflenet_v2_x0_5", 160, 1), ("densenet121", 128, 1), ("googlenet", 128, 1), ("alexnet", 128, 1),
        ("convnext_tiny_d6", 128, 1), ("mobilenet_v2_075", 160, 1), ("vit_small", 128, 1), ("distilbert", 64, 1),
        ("resnet20_cifar", 32, 4))


def say(msg):
    print(msg, file=sys.stderr, flush=True)


def metrics(pred, meas) -> dict:
    err = np.asarray(pred) / np.asarray(meas) - 1.0
    ae = np.abs(err)
    return {"n": len(err), "within10": 100 * float((ae <= 0.10).mean()), "within20": 100 * float((ae <= 0.20).mean()),
            "mape": 100 * float(ae.mean()), "median_abs": 100 * float(np.median(ae)),
            "median_signed": 100 * float(np.median(err))}


def held_models() -> dict:
    out = {}
    for name, size, batch in HELD:
        assert name not in zoo.FIT, name
        out[f"{name}@{size}x{batch}"] = zoo.build(name, batch=batch, size=size)
    return out


def ref_bounds() -> str:
    from profilers.transfer import REFERENCE_US

    return f"{REFERENCE_US[0]:g}-{REFERENCE_US[1]:g} us"


def uptime() -> str:
    """The host's load as ``uptime`` prints it (load averages over 1, 5, 15 minutes)."""
    import subprocess

    try:
        return subprocess.run(["uptime"], capture_output=True, text=True, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "load average " + " ".join(f"{x:.2f}" for x in os.getloadavg())


def ground_truth(models, path, cached):
    if cached and os.path.exists(path):
        with open(path) as f:
            return json.load(f)["results"]
    t0 = time.time()
    res = measure_models({n: m.SerializeToString() for n, m in models.items()}, progress=say)
    with open(path, "w") as f:
        json.dump({"host": get_target(NEW_TARGET).fingerprint(), "protocol": E2E_PROTOCOL, "seconds": time.time() - t0,
                   "at": time.strftime("%Y-%m-%dT%H:%M:%S"), "results": res}, f, indent=1)
    return res


def make_profile(path, target, base_rows, base_path, model, probe_rows):
    """A profile as `latency calibrate --from` writes it: the probe rows measured here (copied with
    their rounds) and every other base row scaled by ``model``; regressors retrained."""
    with Store(path) as st:
        tid = st.ensure_target(target.name, target.fingerprint())
        if probe_rows:
            st.upsert_measurements([{**r, "target_id": tid} for r in probe_rows])
        write_transferred(st, tid, model, base_rows, {Config.from_key(r["key"]).hash for r in probe_rows}, base_path)
    with Store(path, readonly=True) as st:
        train_all(st, st.find_target(target.name), companion(path, ".regressors"))


def refit_context(path, target, raw_path, fit_models):
    """This host's calibration (raw pairs and end-to-end rounds) refitted for the profile at ``path``: every
    pair's isolated price re-read from this profile's table, then ``calibrate(refit=True)``."""
    raw = json.load(open(raw_path))
    est = Estimator(target.name, profile=str(path), context=False, overhead=False, check_host=False)
    iso = {}
    for name in {p["model"] for p in raw["pairs"]}:
        for k in est.estimate(fit_models[name]).kernels:
            iso.setdefault((name, k.key), k.isolated_us)
    for p in raw["pairs"]:
        p["isolated_us"] = iso.get((p["model"], p["key"]), p["isolated_us"])
    with open(companion(path, ".calibration.json"), "w") as f:
        json.dump(raw, f)
    calibrate(target, profile=str(path), refit=True, models={n: fit_models[n] for n in raw["e2e"] if ":" not in n})


def _shipped_measured(target: str = TARGET) -> list:
    """The shipped profiles of ``target`` measured on a device (not emulated, derived or transferred)."""
    return [i for i in get_target(target).profiles() if i.origin == "shipped" and i.provenance == "measured"]


def full_sweep_here(host, target: str = TARGET) -> str:
    """The shipped ``target`` profile measured on this host's device (its device record differs from the host
    in nothing :func:`latency.profiles.device_distance` weighs), or "" when none was: evaluation only."""
    return next((i.path for i in _shipped_measured(target) if device_distance(i.device, host)[0] == 0), "")


def unmasked_host() -> dict:
    """This host's device record as it is, also under the CPUID mask (which hides flags from it)."""
    level = os.environ.pop("CPUIDMASK_LEVEL", None)
    try:
        return host_device()
    finally:
        if level is not None:
            os.environ["CPUIDMASK_LEVEL"] = level


def base_for(host, full_path: str) -> str:
    """Pair 1's base: the shipped TARGET profile closest to this host among those measured elsewhere."""
    best, _ = closest([i for i in _shipped_measured() if i.path != full_path], host)
    if best is None:
        raise SystemExit(f"no shipped {TARGET} profile measured on another device to transfer from")
    return str(best.path)


ROW_GROUPS = ("Conv/fp32", "MatMul/fp32", "Conv/int8", "MatMul/int8", "Conv/int8_dynamic", "memory-bound")
SIZE_BINS = ((0, 10), (10, 100), (100, 1000), (1000, float("inf")))


def _rows_by_hash(path):
    with Store(path, readonly=True) as st:
        df = st.measurements(st.find_target(TARGET), ok_only=True)
        df = df[df["source"] == "measured"] if "source" in df else df
    return {h: (k, float(v)) for h, k, v in zip(df["key_hash"], df["key"], df["latency_us"]) if v and v > 0}


class RowScore:
    """Row-level score of a transferred profile against this host's full sweep (evaluation only)."""

    def __init__(self, full_path, base_path, models, names):
        self.full = _rows_by_hash(full_path)
        base = _rows_by_hash(base_path)
        self.common = [h for h in base if h in self.full]
        self.keys = [base[h][0] for h in self.common]
        self.base_us = np.array([base[h][1] for h in self.common])
        self.full_us = np.array([self.full[h][1] for h in self.common])
        cfgs = [Config.from_key(k) for k in self.keys]
        self.group = np.array([f"{c.kind}/{c.precision}" if c.kind in ("Conv", "MatMul") else "memory-bound"
                               for c in cfgs])
        self.models = {n: models[n] for n in names}
        self.full_kernels = self._kernels(full_path)

    def _kernels(self, path):
        est = Estimator(TARGET, profile=path, context=False, overhead=False, check_host=False)
        out = []
        for n, m in self.models.items():
            e = est.estimate(m)
            out += [(n, k.key, k.latency_us, e.kernel_sum_us) for k in e.kernels if k.source != "free"]
        return out

    def group_names(self):
        return list(ROW_GROUPS)

    def score(self, path, model) -> dict:
        t = model.apply_keys(list(zip(self.keys, self.base_us)))
        e = np.log(t / self.full_us)
        groups = {}
        for g in ROW_GROUPS:
            cells = []
            for lo, hi in SIZE_BINS:
                s = (self.group == g) & (self.base_us >= lo) & (self.base_us < hi)
                cells.append(f"{100 * np.median(np.abs(e[s])):.0f}" if s.sum() >= 5 else "-")
            groups[g] = "/".join(cells)
        mine = {(n, k): v for n, k, v, _ in self._kernels(path)}
        ke, kw = [], []
        for n, k, v, tot in self.full_kernels:
            if (n, k) in mine and v > 0 and mine[n, k] > 0:
                ke.append(math.log(mine[n, k] / v))
                kw.append(v / tot)
        ke, kw = np.array(ke), np.array(kw)
        o = np.argsort(np.abs(ke))
        cw = np.cumsum(kw[o]) / kw.sum()
        return {"rows_abs": 100 * float(np.median(np.abs(e))), "rows_signed": 100 * float(np.median(e)),
                "kern_abs": 100 * float(np.abs(ke)[o][np.searchsorted(cw, 0.5)]),
                "kern_signed": 100 * float(np.sum(kw * ke) / kw.sum()), "groups": groups}


def score_profile(a):
    """``--profile PATH``: the held-out models measured now (two passes, the state reference of the
    profile's own measured rows after each), estimated by the profile with its own context and overhead."""
    pin_to_core(a.core)
    target = get_target(NEW_TARGET)
    t0 = time.time()
    lines = []

    def out(line=""):
        print(line, flush=True)
        lines.append(line)

    info = read_profile(a.profile, "user")[0]
    with Store(a.profile, readonly=True) as st:
        d = st.measurements(st.find_target(target.name), ok_only=True)
    mine = d[d["source"] == "measured"]
    doc = json.load(open(companion(a.profile, ".transfer.json")))
    cal = json.load(open(companion(a.profile, ".calibration.json"))) if companion(a.profile, ".calibration.json").exists() \
        else {}
    out(f"# `latency calibrate --from` profile scored against the held-out models measured now "
        f"({time.strftime('%Y-%m-%d %H:%M')} UTC)")
    out(f"uptime at start: {uptime()}")
    out(f"profile: {a.profile}: {info.provenance}, {info.note}; {len(mine)} rows measured here, "
        f"{len(d) - len(mine)} transferred; made {doc.get('made_at')}")
    st8 = cal.get("state") or {}
    if st8:
        out("its calibration's state reference: " + ", ".join(f"{r['label']} x{r['ratio']}" for r in st8.get("reference", [])
                                                                 if r.get("ratio"))
            + f" -> end-to-end run x{st8.get('e2e_scale')}, in-model run x{st8.get('in_model_scale')}")
    ref = StateReference.from_rows(target, dict(zip(mine["key"], map(float, mine["latency_us"]))))
    models = held_models()
    passes, refs = [], []
    for i in (1, 2):
        say(f"ground truth, pass {i}")
        passes.append(measure_models({n: m.SerializeToString() for n, m in models.items()}, progress=say))
        refs.append(ref(f"after ground truth pass {i}") if ref.rows else {})
    names = [n for n in models if all(p[n]["latency_ms"] for p in passes)]
    p1, p2 = (np.array([p[n]["latency_ms"] for n in names]) for p in passes)
    meas = np.minimum(p1, p2)
    out(f"ground truth: {len(names)} held-out models, {E2E_PROTOCOL}; two passes, the faster kept (second/first median "
        f"{np.median(p2 / p1):.3f}); state reference ({len(ref.rows)} of the profile's measured rows re-measured, now / "
        "then): " + ", ".join(f"{r['label']} x{r['ratio']}" for r in refs if r.get("ratio")))
    est = Estimator(target.name, profile=a.profile, check_host=False)
    pred = np.array([est.estimate(models[n]).total_ms for n in names])
    m = metrics(pred, meas)
    out(f"within ±10% {m['within10']:.0f}%, ±20% {m['within20']:.0f}%, MAPE {m['mape']:.1f}%, median |e| "
        f"{m['median_abs']:.1f}%, median e {m['median_signed']:+.1f}% ({m['n']} models)")
    if all(r.get("ratio") for r in refs):
        ms = np.minimum(p1 / refs[0]["ratio"], p2 / refs[1]["ratio"])
        mm = metrics(pred, ms)
        out(f"against the ground truth brought to the profile's state by the reference (diag.): within ±10% "
            f"{mm['within10']:.0f}%, median e {mm['median_signed']:+.1f}%")
    out(f"{'model':28s} {'measured ms':>11s} {'estimate':>9s} {'error':>7s}")
    for i, n in enumerate(names):
        out(f"{n:28s} {meas[i]:11.3f} {pred[i]:9.3f} {100 * (pred[i] / meas[i] - 1):+6.1f}%")
    out(f"uptime at the end: {uptime()}; {time.time() - t0:.0f} s")
    path = os.path.join(ROOT, "benchmarks", "results", a.out or "transfer_profile.txt")
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    say(f"wrote {path}")


#: ``--cli``: the probe counts of the curve cut from the command's own probes (evaluation only)
CLI_COUNTS = (30, 100, 300, 1000)


def cli_run(a):
    """``--cli``: the path a user runs, then the held-out models measured right after it.

    1. ``profilers.transfer.transfer`` with ``--budget`` (default 10m): the function ``latency calibrate
       --target <this host's target> --from tables/x86-avx512-ort.db --budget 10m`` calls, unchanged (probes for
       what the budget leaves, transfer, regressors, the calibration normalised by its state reference);
       the profile is written under benchmarks/out/ (ignored by git: 11 MB); its measured rows
       (probes.db), calibration.json and transfer.json are copied into the run folder;
    2. the held-out models measured in two passes, each followed by the state reference (the profile's
       own measured rows re-measured); a model's truth is the faster pass;
    3. the headline: the command's profile with its own context and overhead;
    4. evaluation only, within the same run: the first N of the command's probes (its probe order)
       fitted alone, each table with the command's own calibration refitted (``refit_context``: the same
       end-to-end and in-model measurements, the isolated prices read from that table) or with the
       base's context and overhead; no probe (the description, with the base's and with the transferred
       context, as ``--budget 0`` writes it); this host's full sweep as the ceiling.

    ``--cached``: nothing measured; the run folder's probes, calibration and ground truth re-scored with
    this checkout (the command's profile rebuilt from its probes and refitted calibration, which gives
    the written profile's estimates exactly: the same fit, the same regressors, the same context fit)."""
    from profilers.transfer import transfer

    from latency.targets import host_target

    pin_to_core(a.core)
    t_all = time.time()
    # the target the command writes is this host's family target, as `latency calibrate --target NAME --from`
    # makes it (x86-avx2-ort on a host without AVX-512: onnxruntime's AVX2 kernels and NCHWc8 layout); the base
    # is a TARGET profile of the same family
    target = host_target()
    host = {**host_device(), "cpu_mhz": read_cpu().get("cpu_mhz")}
    slug = _slug(f"{host['cpu_model']} {host.get('cpu_family_model') or ''}") + f".{a.tag or 'cli'}"
    work = os.path.join(ROOT, "benchmarks", "results", "runs", f"transfer_{slug}")
    big = os.path.join(ROOT, "benchmarks", "out", f"transfer_{slug}")
    os.makedirs(work, exist_ok=True)
    os.makedirs(big, exist_ok=True)
    lines = []

    def out(line=""):
        print(line, flush=True)
        lines.append(line)

    full_path = full_sweep_here(host, target.name)
    base_path = base_for(host, full_path)
    base = read_profile(base_path, "shipped")[0]
    budget_s = _parse_budget(a.budget)
    cached = a.cached and os.path.exists(os.path.join(work, "ground_truth_2.json"))
    out(f"# transfer, the command a user runs: `latency calibrate --target {target.name} --from {os.path.relpath(base_path, ROOT)} "
        f"--budget {a.budget} --core {a.core}` (profilers.transfer.transfer), then the held-out models measured right "
        f"after ({time.strftime('%Y-%m-%d %H:%M')} UTC)")
    out(f"uptime at start: {uptime()}")
    cpu = host["cpu_model"] if host["vendor"].lower() in host["cpu_model"].lower() else f"{host['vendor']} {host['cpu_model']}"
    out(f"host CPU: {cpu}, family/model {host.get('cpu_family_model')}, {host.get('cpu_mhz')} MHz (/proc/cpuinfo), "
        f"onnxruntime {host['runtime_version']}, 1 thread pinned to core {a.core}; base: {base.describe()}")
    models = held_models()
    db = os.path.join(big, "cli.db")
    if cached:
        run = json.load(open(os.path.join(work, "run.json")))
        out(f"--cached: nothing measured now; the command ran {run['at']} ({run['summary']['timings']}), the ground "
            f"truth {json.load(open(os.path.join(work, 'ground_truth.json')))['at']}")
    else:
        for f in os.listdir(big):
            p = os.path.join(big, f)
            shutil.rmtree(p) if os.path.isdir(p) else os.remove(p)
        say(f"running the command into {db}")
        t0 = time.time()
        r = transfer(target, base_path, db=db, budget_s=budget_s, core=a.core, progress=say,
                     argv=f"latency calibrate --target {target.name} --from {base_path} --budget {a.budget} "
                          f"--core {a.core}")
        summ = {k: r[k] for k in ("probes", "probes_new", "failed", "transferred_rows", "regressors", "context",
                                  "timings") if k in r}
        run = {"at": time.strftime("%Y-%m-%dT%H:%M:%S"), "seconds": round(time.time() - t0, 1), "summary": summ,
               "uptime_after": uptime()}
        with Store(db, readonly=True) as st:  # the probes alone, with their rounds, for --cached
            d = st.measurements(st.find_target(target.name), ok_only=True)
        d = d[d["source"] == "measured"]
        pdb = os.path.join(work, "probes.db")
        if os.path.exists(pdb):
            os.remove(pdb)
        cols = ("key", "latency_us", "median_us", "spread", "n_rounds", "n_runs", "rounds_us", "canary_us", "unstable",
                "remeasured", "kernel_ops", "measured_at", "extra")
        with Store(pdb) as st:
            tid = st.ensure_target(target.name, target.fingerprint())
            st.upsert_measurements([{**{c: rec[c] for c in cols if c in rec}, "target_id": tid}
                                    for rec in d.to_dict("records")])
        import sqlite3

        with sqlite3.connect(pdb) as c:
            c.execute("PRAGMA journal_mode=DELETE")
        for suffix in (".calibration.json", ".transfer.json"):
            shutil.copyfile(companion(db, suffix), os.path.join(work, suffix[1:]))
        ref = StateReference.from_rows(target, dict(zip(d["key"], map(float, d["latency_us"]))))
        passes, refs = [], {}
        for i in (1, 2):
            say(f"ground truth, pass {i}")
            t1 = time.time()
            res = measure_models({n: m.SerializeToString() for n, m in models.items()}, progress=say)
            with open(os.path.join(work, f"ground_truth{'' if i == 1 else '_2'}.json"), "w") as f:
                json.dump({"host": target.fingerprint(), "protocol": E2E_PROTOCOL, "seconds": time.time() - t1,
                           "at": time.strftime("%Y-%m-%dT%H:%M:%S"), "results": res}, f, indent=1)
            passes.append(res)
            refs[f"after ground truth pass {i}"] = ref(f"after ground truth pass {i}") if ref.rows else {}
        run["state_after_ground_truth"] = refs
        with open(os.path.join(work, "run.json"), "w") as f:
            json.dump(run, f, indent=1)
    summ = run["summary"]
    out(f"the command: {summ['probes']} probes measured here, {summ['transferred_rows']} rows transferred; regressors "
        f"{summ['regressors']}; context and overhead {summ['context']}; "
        + ", ".join(f"{k[:-2]} {v:.0f} s" for k, v in summ["timings"].items()))
    g = [json.load(open(os.path.join(work, f)))["results"] for f in ("ground_truth.json", "ground_truth_2.json")]
    names = [n for n in models if g[0][n]["latency_ms"] and g[1][n]["latency_ms"]]
    p1, p2 = (np.array([x[n]["latency_ms"] for n in names]) for x in g)
    meas = np.minimum(p1, p2)
    rs = run.get("state_after_ground_truth") or {}
    out(f"ground truth: {len(names)} held-out models (none in the calibration corpus), {E2E_PROTOCOL}; two passes right "
        f"after the command, the faster kept (second/first median {np.median(p2 / p1):.3f}); the command's probes "
        "re-measured after each pass (now / at the probes): "
        + ", ".join(f"{k} x{v['ratio']}" for k, v in rs.items() if v.get("ratio")))

    with Store(os.path.join(work, "probes.db"), readonly=True) as st:
        pdf = st.measurements(st.find_target(target.name), ok_only=True)
    probe_rows = {rec["key"]: rec for rec in pdf.to_dict("records")}
    with Store(base_path, readonly=True) as st:
        bdf = st.measurements(st.find_target(TARGET), ok_only=True)
    base_rows = [(k, float(v)) for k, v in zip(bdf["key"], bdf["latency_us"])]
    base_lat = dict(base_rows)
    order = [k for k in choose_probes(base_rows, base, len(probe_rows) + 50) if k in probe_rows]
    out(f"probes: {len(probe_rows)} ({len(order)} of them in the command's probe order, which the curve below cuts)")
    fit_models = {n: zoo.build(n) for n in zoo.FIT}
    raw = os.path.join(work, "calibration.json")
    base_ctx = {"context": str(companion(base_path, ".context.json")),
                "overhead": str(companion(base_path, ".overhead.json"))}
    results, per_model = {}, {}

    def score(label, **kw):
        est = Estimator(target.name, check_host=False, **kw)
        pred = np.array([est.estimate(models[n]).total_ms for n in names])
        m = results[label] = metrics(pred, meas)
        m["passes"] = [metrics(pred, p)["within10"] for p in (p1, p2)]
        per_model[label] = pred
        say(f"{label}: within ±10% {m['within10']:.0f}%, MAPE {m['mape']:.1f}%")

    tmp = tempfile.mkdtemp(prefix="latency-transfer-cli-")
    try:
        if cached or not os.path.exists(db):
            db = os.path.join(tmp, "cli.db")  # rebuilt: all the probes, the command's calibration refitted
            model = fit_transfer([(k, base_lat[k], float(probe_rows[k]["latency_us"])) for k in probe_rows if k in base_lat])
            make_profile(db, target, base_rows, base_path, model, list(probe_rows.values()))
            refit_context(db, target, shutil.copyfile(raw, os.path.join(tmp, "raw-all.json")), fit_models)
            headline = f"the command's profile ({len(probe_rows)} probes, rebuilt)"
        else:
            headline = f"the command's profile ({len(probe_rows)} probes)"
        score(headline, profile=db)
        for n in CLI_COUNTS:
            if n >= len(order):
                continue
            keys = order[:n]
            model = fit_transfer([(k, base_lat[k], float(probe_rows[k]["latency_us"])) for k in keys])
            p = os.path.join(tmp, f"p{n}.db")
            make_profile(p, target, base_rows, base_path, model, [probe_rows[k] for k in keys])
            refit_context(p, target, shutil.copyfile(raw, os.path.join(tmp, f"raw{n}.json")), fit_models)
            score(f"first {n} of its probes, its calibration", profile=p)
            score(f"first {n} of its probes, base context", profile=p, **base_ctx)
        desc = description_model(base.device, host)
        p = os.path.join(tmp, "desc.db")
        make_profile(p, target, base_rows, base_path, desc, [])
        score("0 probes: description, base context copied", profile=p, **base_ctx)
        c, o = os.path.join(tmp, "desc.context.json"), os.path.join(tmp, "desc.overhead.json")
        transfer_calibration(desc, base_ctx["context"], base_ctx["overhead"], c, o)
        score("0 probes: description (as --budget 0)", profile=p, context=c, overhead=o)
        if target.name != TARGET:  # what this host gets with no calibration: its family target's shipped profiles
            for info in target.profiles():
                if info.origin == "shipped" and info.provenance in ("measured", "emulated") and info.path != full_path:
                    score(f"shipped {os.path.basename(info.path)} as is", profile=str(info.path))
        if full_path:
            score("full sweep here, its own context (ceiling)", profile=full_path)
            p = os.path.join(tmp, "full.db")
            import sqlite3

            with sqlite3.connect(f"file:{full_path}?mode=ro", uri=True) as src, sqlite3.connect(p) as dst:
                src.backup(dst)
            shutil.copytree(companion(full_path, ".regressors"), companion(p, ".regressors"))
            refit_context(p, target, shutil.copyfile(raw, os.path.join(tmp, "raw-full.json")), fit_models)
            score("full sweep here, the command's calibration", profile=p)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    out()
    out(f"{'variant':48s} {'n':>3s} {'±10%':>6s} {'±20%':>6s} {'MAPE':>7s} {'median |e|':>10s} {'median e':>9s}"
        f"  {'±10% vs pass 1 / 2':>18s}")
    for label, m in results.items():
        out(f"{label:48s} {m['n']:3d} {m['within10']:5.0f}% {m['within20']:5.0f}% {m['mape']:6.1f}% "
            f"{m['median_abs']:9.1f}% {m['median_signed']:+8.1f}%  {m['passes'][0]:8.0f}% / {m['passes'][1]:.0f}%")
    out("the first row is what the command gives; the rows below it are evaluation only (the curve cuts the command's own "
        "probes and refits its one calibration on each table; the full sweep is this host's own, nothing is fitted on it)")
    out()
    labels = list(per_model)
    out(f"{'model':28s} {'measured ms':>11s} " + " ".join(f"{'v' + str(i):>7s}" for i in range(len(labels))))
    for i, n in enumerate(names):
        out(f"{n:28s} {meas[i]:11.3f} " + " ".join(f"{100 * (per_model[lab][i] / meas[i] - 1):+6.1f}%" for lab in labels))
    out("columns: " + "; ".join(f"v{i} {lab}" for i, lab in enumerate(labels)))
    out(f"uptime at the end: {uptime()}; this script {time.time() - t_all:.0f} s")
    path = os.path.join(ROOT, "benchmarks", "results", a.out or f"transfer_{slug}.txt")
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    say(f"wrote {path}")


def _parse_budget(s: str) -> float:
    """'10m', '600s', '600' -> seconds."""
    s = s.strip().lower()
    mult = {"s": 1, "m": 60, "h": 3600}.get(s[-1:], None)
    return float(s[:-1]) * mult if mult else float(s)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--probes", default="0,30,100,300,1000")
    ap.add_argument("--core", type=int, default=0)
    ap.add_argument("--cached", action="store_true", help="reuse the ground truth, probes and calibration kept")
    ap.add_argument("--pair", choices=sorted(PAIRS), default="host",
                    help="host: shipped profile -> this host; avx2: full sweep here -> emulated AVX2 here")
    ap.add_argument("--tag", default="", help="a run of its own: runs/transfer_<host>.<tag>/ and its own output file")
    ap.add_argument("--out", default="", help="output file name under benchmarks/results (default from host and tag)")
    ap.add_argument("--profile", default="", help="score this profile (as `latency calibrate --from` wrote it, with its "
                                                  "own context and overhead) against ground truth measured now; "
                                                  "nothing else")
    ap.add_argument("--cli", action="store_true", help="the path a user runs: the command (profilers.transfer.transfer "
                                                       "with --budget) then the held-out models measured right after, "
                                                       "and the probe-count curve cut from its own probes")
    ap.add_argument("--budget", default="10m", help="with --cli: the command's budget")
    a = ap.parse_args()
    if a.profile:
        return score_profile(a)
    if a.cli:
        return cli_run(a)
    global NEW_TARGET
    if a.pair == "avx2":
        from profilers import emulate

        if emulate.active_level() != "avx2":  # everything measured below runs with AVX-512 hidden
            env = emulate.emulated_env("avx2")
            import subprocess

            sys.exit(subprocess.run([sys.executable, os.path.abspath(__file__), *sys.argv[1:]], env=env).returncode)
        NEW_TARGET = "x86-avx2-ort"
    counts = sorted(int(x) for x in a.probes.split(","))
    pin_to_core(a.core)
    t_all = time.time()
    target = get_target(NEW_TARGET)
    host = {**host_device(), "cpu_mhz": read_cpu().get("cpu_mhz")}
    slug = _slug(f"{host['cpu_model']} {host.get('cpu_family_model') or ''}")
    slug += "-avx2-emulated" if a.pair == "avx2" else ""
    slug += f".{a.tag}" if a.tag else ""
    work = os.path.join(ROOT, "benchmarks", "results", "runs", f"transfer_{slug}")
    os.makedirs(work, exist_ok=True)
    out_lines = []

    def out(line=""):
        print(line, flush=True)
        out_lines.append(line)

    full_path = full_sweep_here(unmasked_host() if a.pair == "avx2" else host)
    if a.pair == "avx2":
        if not full_path:
            raise SystemExit(f"--pair avx2 transfers from this host's own full {TARGET} sweep: none is shipped")
        base_path = full_path
        base = read_profile(base_path, "user")[0]
    else:
        base_path = base_for(host, full_path)
        base = read_profile(base_path, "shipped")[0]
    out(f"# transfer: {PAIRS[a.pair]} ({time.strftime('%Y-%m-%d %H:%M')} UTC, load average "
        f"{' '.join(f'{x:.2f}' for x in os.getloadavg())} on {os.cpu_count()} vCPUs)")
    out(f"uptime at start: {uptime()}")
    if a.pair == "avx2":
        from profilers import emulate

        out(f"new device: {NEW_TARGET}, {emulate.note('avx2')}")
    cpu = host["cpu_model"] if host["vendor"].lower() in host["cpu_model"].lower() else f"{host['vendor']} {host['cpu_model']}"
    out(f"host CPU: {cpu}, family/model {host.get('cpu_family_model')}, "
        f"{host.get('cpu_mhz')} MHz (/proc/cpuinfo), L2 {host.get('l2_mb')} MB, LLC {host.get('llc_mb')} MB, "
        f"onnxruntime {host['runtime_version']}, 1 thread pinned to core {a.core}")
    out(f"host ISA flags: {' '.join(host['cpu_flags'])}")
    out(f"base profile: {base.describe()}; flags {' '.join(base.device['cpu_flags'])}; family/model "
        f"{base.device.get('cpu_family_model')}; note: {base.note}")

    models = held_models()
    with Store(base_path, readonly=True) as st:
        bdf = st.measurements(st.find_target(TARGET), ok_only=True)
    base_rows = [(k, float(v)) for k, v in zip(bdf["key"], bdf["latency_us"])]
    order = choose_probes(base_rows, base, max(counts))
    probes_db = os.path.join(work, "probes.db")
    state_path = os.path.join(work, "state.json")
    state = json.load(open(state_path)) if a.cached and os.path.exists(state_path) else {}
    fresh = not (a.cached and os.path.exists(os.path.join(work, "ground_truth.json")))
    # the probes first, then the two ground-truth passes, each bracketed by the state reference (a
    # sample of the probes re-measured), so that the output says whether they saw the probes' state
    t0 = time.time()
    # --cached with its ground truth kept measures nothing: a probe of the order missing from probes.db (the
    # base changed since, so its order did) is left out of every curve, never measured in another state
    with Store(probes_db, readonly=not fresh) as st:
        if max(counts) and fresh:
            run_sweep(st, target, [Config.from_key(k) for k in order], cores=[a.core])
        tid = st.find_target(NEW_TARGET)
        pdf = st.measurements(tid, ok_only=True) if tid else None
    t_probes = time.time() - t0
    probe_rows = {}
    if pdf is not None:
        for r in pdf.to_dict("records"):
            probe_rows[r["key"]] = {c: r[c] for c in ("key", "latency_us", "median_us", "spread", "n_rounds", "n_runs",
                                                      "rounds_us", "canary_us", "unstable", "remeasured", "kernel_ops",
                                                      "measured_at", "extra") if c in r}
    base_lat = dict(base_rows)
    ref = StateReference.from_rows(target, {k: float(r["latency_us"]) for k, r in probe_rows.items()}, order)
    if fresh and ref.rows:
        state["after the probes"] = ref("after the probes")
    say(f"ground truth, first pass: {len(models)} held-out models")
    t0 = time.time()
    gt1 = ground_truth(models, os.path.join(work, "ground_truth.json"), a.cached)
    t_gt = time.time() - t0
    if fresh and ref.rows:
        state["after ground truth pass 1"] = ref("after ground truth pass 1")
    # the second pass (FACTS 9: one pass on a shared VM can sit in a slow state for all its rounds); a
    # model's truth is the faster of its two passes
    say("ground truth, second pass")
    gt2 = ground_truth(models, os.path.join(work, "ground_truth_2.json"), a.cached)
    if fresh and ref.rows:
        state["after ground truth pass 2"] = ref("after ground truth pass 2")
    names = [n for n in models if gt1[n]["latency_ms"] and gt2[n]["latency_ms"]]
    p1, p2 = (np.array([g[n]["latency_ms"] for n in names]) for g in (gt1, gt2))
    meas = np.minimum(p1, p2)
    dis = np.abs(p2 / p1 - 1)
    # diagnosis only: the ground truth brought to the probes' state by the reference measured around each
    # pass (geometric mean of the two around it); the headline figures use the ground truth as measured
    rs = [(state.get(k) or {}).get("ratio") for k in ("after the probes", "after ground truth pass 1",
                                                      "after ground truth pass 2")]
    meas_state = None
    if all(rs):
        s1, s2 = math.sqrt(rs[0] * rs[1]), math.sqrt(rs[1] * rs[2])
        meas_state = np.minimum(p1 / s1, p2 / s2)
    out(f"ground truth: {len(names)} held-out models ({', '.join(names)}), {E2E_PROTOCOL}; two passes "
        f"after the probes, the faster kept; the passes disagree by median "
        f"{100 * np.median(dis):.1f}%, max {100 * dis.max():.1f}% (second/first median {np.median(p2 / p1):.3f}); "
        f"first pass {t_gt:.0f} s")
    if a.cached:
        ats = [json.load(open(os.path.join(work, f))).get("at") for f in ("ground_truth.json", "ground_truth_2.json")]
        out(f"--cached: nothing measured; ground-truth passes reused from {ats[0]} and {ats[1]}, the calibration's "
            f"measurements from calibration.json, the probes from probes.db ({sum(k not in probe_rows for k in order)} "
            "of the probe order's keys not there: left out of every curve)")
    out(f"probes: {sum(k in probe_rows for k in order)} of the first {len(order)} in probe order measured here "
        f"({t_probes:.0f} s; sweep protocol, rounds kept in {os.path.relpath(probes_db, ROOT)})")
    ratios = np.array([probe_rows[k]["latency_us"] / base_lat[k] for k in order if k in probe_rows])
    if len(ratios):
        out(f"probe ratio here/base: median {np.median(ratios):.3f}, p10 {np.percentile(ratios, 10):.3f}, "
            f"p90 {np.percentile(ratios, 90):.3f}")

    fit_models = {n: zoo.build(n) for n in zoo.FIT}
    base_ctx = {"context": str(companion(base_path, ".context.json")),
                "overhead": str(companion(base_path, ".overhead.json"))}
    results = {}
    per_model = {}

    def score(label, **kw):
        est = Estimator(kw.pop("target", NEW_TARGET), check_host=False, **kw)
        try:
            pred = np.array([est.estimate(models[n]).total_ms for n in names])
        except LatencyError as e:  # e.g. a shipped profile's regressors older than this checkout's features
            out(f"{label}: not scored ({e})")
            return
        results[label] = metrics(pred, meas)
        results[label]["passes"] = [metrics(pred, p)["within10"] for p in (p1, p2)]
        if meas_state is not None:
            results[label]["at_probe_state"] = metrics(pred, meas_state)
        per_model[label] = pred
        m = results[label]
        say(f"{label}: within ±10% {m['within10']:.0f}%, MAPE {m['mape']:.1f}%")

    score("0 probes: closest profile as is", profile=base_path, target=TARGET)
    full = None
    if a.pair == "host" and full_path:
        # the ceiling: this host's own full sweep with the context and overhead calibrated here
        score("full sweep here (its own context)", profile=full_path)
        full = RowScore(full_path, base_path, models, names)
        out(f"full sweep: {os.path.relpath(full_path, ROOT)} ({len(full.full)} rows measured here, "
            f"{len(full.common)} keys in common with the base); EVALUATION ONLY: nothing below is fitted on its "
            "rows or on the held-out models' ground truth")
    row_scores = {}
    tmp = tempfile.mkdtemp(prefix="latency-transfer-bench-")
    timings = {}
    try:
        desc = description_model(base.device, host)
        p = os.path.join(tmp, "desc.db")
        make_profile(p, target, base_rows, base_path, desc, [])
        c, o = os.path.join(tmp, "desc.context.json"), os.path.join(tmp, "desc.overhead.json")
        transfer_calibration(desc, base_ctx["context"], base_ctx["overhead"], c, o)
        score("0 probes: description (as --budget 0)", profile=p, context=c, overhead=o)
        score("0 probes: description, base context copied", profile=p, **base_ctx)
        if full:
            row_scores["0 probes: description"] = full.score(p, desc)
        out(f"description scaling: {'; '.join(desc.spec['known'])} -> dispatch-bound kernels (< 3 us) "
            f"x{desc.spec['dispatch_ratio']:g}, compute kinds x{desc.spec['compute_ratio']:g} (int8 "
            f"x{desc.spec['compute_int8_ratio']:g}), memory-bound kinds x{desc.spec['other_ratio']:g}; ratios of the "
            "described resources, none fitted")
        raw = os.path.join(work, "calibration.json")
        if full and os.path.exists(raw):
            # diagnosis of the context: the full sweep's own table with the context refitted from this run's
            # calibration measurements (as the transferred profiles get it)
            p = os.path.join(tmp, "full.db")
            import sqlite3

            with sqlite3.connect(f"file:{full_path}?mode=ro", uri=True) as src, sqlite3.connect(p) as dst:
                src.backup(dst)
            shutil.copytree(companion(full_path, ".regressors"), companion(p, ".regressors"))
            refit_context(p, target, raw, fit_models)
            score("full sweep, context refit from this run", profile=p)
        for n in sorted((c for c in counts if c), reverse=True):
            t0 = time.time()
            keys = [k for k in order[:n] if k in probe_rows]
            model = fit_transfer([(k, base_lat[k], probe_rows[k]["latency_us"]) for k in keys])
            p = os.path.join(tmp, f"p{n}.db")
            make_profile(p, target, base_rows, base_path, model, [probe_rows[k] for k in keys])
            if not (a.cached and os.path.exists(raw)) and n == max(counts):
                tc = time.time()
                # as `latency calibrate --from` runs it: the probes re-measured around its runs
                ref.records = []
                calibrate(target, profile=p, progress=say, reference=ref if ref.rows else None)
                state["calibration"] = list(ref.records)
                timings["calibration measured"] = time.time() - tc
                shutil.copyfile(companion(p, ".calibration.json"), raw)
            else:
                refit_context(p, target, raw, fit_models)
            if full:
                row_scores[f"{n} probes"] = full.score(p, model)
            score(f"{n} probes, context here", profile=p)
            if n == max(counts) and (json.load(open(raw)).get("state") or {}).get("reference"):
                # diagnosis: the same calibration refitted without the state normalisation
                flat = json.load(open(raw))
                flat["state"] = None
                flat_path = os.path.join(tmp, "calibration-not-normalised.json")
                with open(flat_path, "w") as f:
                    json.dump(flat, f)
                refit_context(p, target, flat_path, fit_models)
                score(f"{n} probes, context here, not normalised (diag.)", profile=p)
                refit_context(p, target, raw, fit_models)
            score(f"{n} probes, base context", profile=p, **base_ctx)
            if full and n == max(counts):
                # diagnosis only: these transferred rows with the context the full sweep's calibration fitted
                score(f"{n} probes, full sweep's context (diag.)", profile=p,
                      context=str(companion(full_path, ".context.json")),
                      overhead=str(companion(full_path, ".overhead.json")))
            timings[f"{n} probes: fit, write, train, refit"] = time.time() - t0
            if n == max(counts):
                out(f"fitted on {len(keys)} probes: " + model.summary()[0].strip())
                for line in model.summary()[1:6]:
                    out(f"    {line.strip()}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    if state:
        with open(state_path, "w") as f:
            json.dump(state, f, indent=1)
        out(f"machine state: {len(ref.rows)} probes (the first in probe order of {ref_bounds()} here) re-measured with "
            "the sweep protocol; median time now / at the probes (p10-p90):")
        for label, rec in state.items():
            for r in (rec if isinstance(rec, list) else [rec]):
                if r.get("ratio"):
                    out(f"  {r['at'][11:16]} {r['label'] or label:46s} x{r['ratio']:.3f} ({r['p10']:.3f}-{r['p90']:.3f})"
                        + ("  [calibration: its runs divided by these]" if label == "calibration" else ""))
    out()
    out(f"{'variant':46s} {'n':>3s} {'±10%':>6s} {'±20%':>6s} {'MAPE':>7s} {'median |e|':>10s} {'median e':>9s}"
        f"  {'±10% vs pass 1 / 2':>18s}" + ("   ±10% / median e, truth at the probes' state (diag.)"
                                              if meas_state is not None else ""))
    for label, m in results.items():
        out(f"{label:46s} {m['n']:3d} {m['within10']:5.0f}% {m['within20']:5.0f}% {m['mape']:6.1f}% "
            f"{m['median_abs']:9.1f}% {m['median_signed']:+8.1f}%  {m['passes'][0]:8.0f}% / {m['passes'][1]:.0f}%"
            + (f"   {m['at_probe_state']['within10']:5.0f}% / {m['at_probe_state']['median_signed']:+.1f}%"
               if "at_probe_state" in m else ""))
    out("the 'N probes' rows are a fixed-count curve, not the command: the first N probes fitted alone, every 'context "
        "here' row sharing this script's one calibration run (measured after the ground truth, refitted per table); the "
        "command a user runs (its budget's probes, calibrated right after them) is scored by --cli "
        "(transfer_<host>.cli.txt)")
    if full and row_scores:
        out()
        out("row-level score against the full sweep (log error of transferred vs measured here, in %; evaluation only):")
        out("  'rows': every base key the full sweep also measured, the fitted curves applied to its base latency, "
            "median |e| / median e;")
        out("  'held-out kernels': each held-out model's kernels priced by the variant's profile (table, regressors) vs")
        out("  by the full sweep's, no context, weighted by their time in the models (weighted median |e| / mean e)")
        groups = full.group_names()
        out(f"{'variant':24s} {'rows |e|':>9s} {'rows e':>7s} {'kern |e|':>9s} {'kern e':>7s}  " +
            "  ".join(f"{g:>22s}" for g in groups))
        for label, r in row_scores.items():
            out(f"{label:24s} {r['rows_abs']:8.1f}% {r['rows_signed']:+6.1f}% {r['kern_abs']:8.1f}% "
                f"{r['kern_signed']:+6.1f}%  " + "  ".join(f"{r['groups'].get(g, ''):>22s}" for g in groups))
        out("  per group: median |e| of table rows at base <10us / 10-100us / 0.1-1ms / >1ms")
    out()
    labels = list(per_model)
    short = {lab: lab.replace(" probes", "p").replace(", context here", "/here").replace(", base context", "/base")
             .replace("0p: closest profile as is", "as-is").replace("0p: description (as --budget 0)", "desc")
             .replace("0p: description, base context copied", "desc/base")
             for lab in labels}
    out(f"{'model':28s} {'measured ms':>11s} " + " ".join(f"{short[lab]:>10s}" for lab in labels))
    for i, n in enumerate(names):
        out(f"{n:28s} {meas[i]:11.3f} " + " ".join(f"{100 * (per_model[lab][i] / meas[i] - 1):+9.1f}%" for lab in labels))
    out()
    out(f"columns: signed error of each variant's estimate; ground truth rounds in "
        f"{os.path.relpath(os.path.join(work, 'ground_truth.json'), ROOT)}")
    out("times: " + ", ".join(f"{k} {v:.0f} s" for k, v in timings.items()) + f"; whole run {time.time() - t_all:.0f} s")
    out(f"uptime at the end: {uptime()}")
    import sqlite3

    with sqlite3.connect(probes_db) as c:  # one self-contained file, as the shipped profiles
        c.execute("PRAGMA journal_mode=DELETE")
    path = os.path.join(ROOT, "benchmarks", "results", a.out or f"transfer_{slug}.txt")
    with open(path, "w") as f:
        f.write("\n".join(out_lines) + "\n")
    say(f"wrote {path}")


if __name__ == "__main__":
    main()
