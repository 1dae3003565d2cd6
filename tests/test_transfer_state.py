"""The calibration of a transferred profile, normalised for the machine's state: a sample of the probes
re-measured around the calibration's runs (profilers.transfer.StateReference), each run's times
divided by the state around it (profilers.calibrate.state_scales) before the context and overhead fits."""

import json
import math

import pytest

from latency.estimator import Estimator
from latency.store import Store
from latency.targets import get_target, host_target
from profilers.measure import Protocol
from profilers.plans import model_kernels
from profilers.sweep import run_sweep
from tests.models import small_cnn

FAST = Protocol(phases=1, rounds_per_phase=2, warmup=1, min_runs=3, max_runs=5, remeasure_phases=0)


def test_state_scales_brackets_each_run():
    from profilers.calibrate import STATE_BOUNDS, state_scales

    s = state_scales([{"ratio": 0.9}, {"ratio": 0.9}, {"ratio": 0.81}])
    assert s["e2e_scale"] == pytest.approx(0.9)
    assert s["in_model_scale"] == pytest.approx(math.sqrt(0.9 * 0.81), abs=1e-4)
    # a measurement that failed: the run takes the other one around it; none at all: not normalised
    s = state_scales([{"ratio": None}, {"ratio": 1.1}, {"ratio": None}])
    assert s["e2e_scale"] == pytest.approx(1.1) and s["in_model_scale"] == pytest.approx(1.1)
    assert state_scales([]) == {"e2e_scale": 1.0, "in_model_scale": 1.0}
    # a ratio no drift explains (another device's rows, a broken reference) is recorded, not applied
    s = state_scales([{"ratio": 0.3}] * 3)
    assert s["e2e_scale"] == 1.0 and s["e2e_scale_rejected"] == pytest.approx(0.3) and 0.3 < STATE_BOUNDS[0]


def _fake_profile(path, scale=1.0):
    """The small CNN's kernels measured by the fake backend, each stored ``scale`` times its time."""
    from profilers.fake import fake_latency_us

    t = get_target("fake")
    cfgs = model_kernels([small_cnn()], t)
    with Store(path) as st:
        run_sweep(st, t, cfgs)
        if scale != 1.0:
            tid = st.find_target("fake")
            st.upsert_measurements([{"target_id": tid, "key": c.key, "latency_us": scale * fake_latency_us(c),
                                     "source": "measured"} for c in cfgs])
    return cfgs


def test_reference_measures_the_profiles_rows_again(tmp_path):
    from profilers.transfer import StateReference

    t = get_target("fake")
    cfgs = _fake_profile(tmp_path / "f.db", scale=2.0)  # the profile's rows twice what the device takes now
    with Store(tmp_path / "f.db", readonly=True) as st:
        df = st.measurements(st.find_target("fake"), ok_only=True)
    rows = dict(zip(df["key"], df["latency_us"]))
    order = [c.key for c in reversed(cfgs)]
    ref = StateReference.from_rows(t, rows, order, n=3, bounds=(0.0, 1e9))
    assert [k for k, _ in ref.rows] == order[:3]  # the first in the given order
    rec = ref("now")
    assert rec["n"] == 3 and 0.49 < rec["ratio"] < 0.53 and ref.records == [rec]  # now / profile ~ 1/2
    assert StateReference.from_rows(t, rows, order, bounds=(1e8, 1e9)).rows == []  # none within the bounds


def test_calibration_divides_each_run_by_its_state(tmp_path, monkeypatch):
    """The real calibrate() with its measurements replaced by canned ones: the fits see the in-model and
    end-to-end times divided by the state around their runs; the raw file keeps them as measured, and a
    refit from it gives the same models."""
    import profilers.calibrate as C

    db = tmp_path / "f.db"
    _fake_profile(db)
    m = small_cnn()
    est = Estimator("fake", profile=db, context=False, overhead=False, check_host=False)
    kernels = [k for k in est.estimate(m).kernels if k.source != "free"]
    measured_ms = 1.7 * sum(k.latency_us for k in kernels) / 1000

    monkeypatch.setattr(C, "measure_models", lambda models, progress=None: {
        n: {"latency_ms": measured_ms, "rounds_ms": [measured_ms] * 9} for n in models})
    monkeypatch.setattr(C, "in_model_times", lambda models, repeats=5, runs=20: {n: [] for n in models})
    monkeypatch.setattr(C, "kernel_pairs", lambda model, base, name="", prof=None: (
        [{"model": name, "kind": k.kind, "key": k.key, "isolated_us": k.latency_us, "in_model_us": 1.3 * k.latency_us}
         for k in kernels], {"skipped": 0}))
    seen = {}
    real_fit_context, real_fit_overhead = C.fit_context, C.fit_overhead

    def fit_context(pairs, **kw):
        seen["ratio"] = sorted(p["in_model_us"] / p["isolated_us"] for p in pairs)
        return real_fit_context(pairs, min_pairs=1, min_bin=1, **kw)

    def fit_overhead(ests, meas, **kw):
        seen["e2e_us"] = list(meas)
        return real_fit_overhead(ests, meas, **kw)

    monkeypatch.setattr(C, "fit_context", fit_context)
    monkeypatch.setattr(C, "fit_overhead", fit_overhead)
    ratios = iter([0.8, 0.9, 1.0])  # the machine 20% faster than at the probes, then 10%, then as fast
    labels = []

    def reference(label):
        labels.append(label)
        return {"label": label, "ratio": next(ratios)}

    r = C.calibrate("fake", profile=str(db), models={"small_cnn": m}, chain_families=(), probes=False,
                    reference=reference)
    assert len(labels) == 3 and "before" in labels[0] and "after" in labels[2]
    e2e_s, inm_s = math.sqrt(0.8 * 0.9), math.sqrt(0.9 * 1.0)
    assert r["state"]["e2e_scale"] == pytest.approx(e2e_s, abs=1e-4)
    assert r["state"]["in_model_scale"] == pytest.approx(inm_s, abs=1e-4)
    assert seen["ratio"] == pytest.approx([1.3 / r["state"]["in_model_scale"]] * len(kernels))
    assert seen["e2e_us"] == pytest.approx([1000 * measured_ms / r["state"]["e2e_scale"]])
    raw = json.loads((tmp_path / "f.calibration.json").read_text())
    assert raw["e2e"]["small_cnn"]["latency_ms"] == pytest.approx(measured_ms)  # kept as measured
    assert all(p["in_model_us"] == pytest.approx(1.3 * p["isolated_us"]) for p in raw["pairs"])
    assert [x["ratio"] for x in raw["state"]["reference"]] == [0.8, 0.9, 1.0]
    ctx = json.loads((tmp_path / "f.context.json").read_text())
    ov = json.loads((tmp_path / "f.overhead.json").read_text())
    assert ctx["state"]["in_model_scale"] == r["state"]["in_model_scale"] and ov["state"] == ctx["state"]
    # the refit reads the state from the raw file: the same normalised inputs
    seen.clear()
    C.calibrate("fake", profile=str(db), models={"small_cnn": m}, refit=True)
    assert seen["ratio"] == pytest.approx([1.3 / r["state"]["in_model_scale"]] * len(kernels))
    assert seen["e2e_us"] == pytest.approx([1000 * measured_ms / r["state"]["e2e_scale"]])
    # without a reference nothing is normalised (a plain `latency calibrate`)
    seen.clear()
    r0 = C.calibrate("fake", profile=str(db), models={"small_cnn": m}, chain_families=(), probes=False)
    assert r0["state"] == {} and seen["ratio"] == pytest.approx([1.3] * len(kernels))
    assert json.loads((tmp_path / "f.calibration.json").read_text())["state"] is None


def test_transfer_calibrates_with_the_probes_as_reference(dirs, tmp_path, monkeypatch):
    """`latency calibrate --from` on the fake target: the calibration it runs gets a reference made of the
    probes just measured, and the summary says what it found."""
    import profilers.calibrate as C
    from profilers.transfer import StateReference, transfer

    base = tmp_path / "base.db"
    t = get_target("fake")
    with Store(base) as st:  # the base: the same kernels priced 3x, measured on "another" fake device
        tid = st.ensure_target("fake", dict(t.fingerprint(), cpu_model="another fake"))
        from profilers.fake import fake_latency_us

        cfgs = model_kernels([small_cnn()], t)
        from profilers.plans import plan

        cfgs += [c for c in plan("quick", target=t) if c.kind in ("Conv", "MatMul", "Pool")][:40]
        st.upsert_measurements([{"target_id": tid, "key": c.key, "latency_us": 3 * fake_latency_us(c),
                                 "source": "measured"} for c in cfgs])
    got = {}

    def calibrate(target, profile=None, progress=None, reference=None, **kw):
        got["reference"] = reference
        recs = [reference(x) for x in ("before", "between", "after")]
        return {"pairs": 0, "models": 0, "state": C.state_scales(recs)}

    monkeypatch.setattr(C, "calibrate", calibrate)
    r = transfer(t, str(base), db=tmp_path / "new.db", budget_s=600, core=None, calibrate=True, train=False,
                 max_probes=30)
    ref = got["reference"]
    assert isinstance(ref, StateReference) and 0 < len(ref.rows) <= 24 and len(ref.records) == 3
    with Store(tmp_path / "new.db", readonly=True) as st:
        df = st.measurements(st.find_target("fake"), ok_only=True)
    measured = set(df[df["source"] == "measured"]["key"])
    assert {k for k, _ in ref.rows} <= measured  # probes measured here, not base rows
    # the fake device is deterministic: the probes re-measured take what they took
    assert all(x["ratio"] == pytest.approx(1.0, abs=0.05) for x in ref.records)
    assert "machine state" in r["context"] and "normalised" in r["context"] and r["state"]["e2e_scale"] > 0


def test_reference_on_this_host_is_real(tmp_path):
    """A real state reference: this host's kernels measured by onnxruntime, then measured again."""
    from profilers.transfer import StateReference

    t = host_target()
    ok, why = t.host_supported()
    if not ok:
        pytest.skip(why)
    cfgs = model_kernels([small_cnn()], t)
    with Store(tmp_path / "h.db") as st:
        run_sweep(st, t, cfgs, protocol=FAST)
        df = st.measurements(st.find_target(t.name), ok_only=True)
    ref = StateReference.from_rows(t, dict(zip(df["key"], df["latency_us"])), n=4, protocol=FAST, bounds=(0.0, 1e9))
    rec = ref("again")
    assert rec["n"] == len(ref.rows) >= 1 and rec["ratio"] > 0 and rec["p10"] <= rec["ratio"] <= rec["p90"]


def _fake_base(path, n_rows):
    """A base profile of the fake target measured on "another" fake device: ``n_rows`` dense rows."""
    from profilers.fake import fake_latency_us
    from profilers.plans import plan

    t = get_target("fake")
    cfgs = [c for c in plan("quick", target=t) if c.sparsity == "0"][:n_rows]
    with Store(path) as st:
        tid = st.ensure_target("fake", dict(t.fingerprint(), cpu_model="another fake"))
        st.upsert_measurements([{"target_id": tid, "key": c.key, "latency_us": 3 * fake_latency_us(c),
                                 "source": "measured"} for c in cfgs])
    return path


def test_too_few_probes_for_a_fit_is_one_line(dirs, tmp_path):
    """A probe budget too small to fit anything: refused before measuring when --max-probes says so, and
    when the base has too few rows to probe."""
    from click.testing import CliRunner

    from latency.cli import main
    from latency.transfer import MIN_PROBES

    base = _fake_base(tmp_path / "base.db", 40)
    out = tmp_path / "new.db"
    r = CliRunner().invoke(main, ["calibrate", "--target", "fake", "--from", str(base), "--budget", "40s",
                                  "--max-probes", str(MIN_PROBES - 1), "--db", str(out)])
    assert r.exit_code == 2 and len(r.output.strip().splitlines()) == 1, r.output
    assert f"--max-probes {MIN_PROBES - 1} cannot fit a transfer: it needs at least {MIN_PROBES}" in r.output
    assert not out.exists()  # nothing measured
    small = _fake_base(tmp_path / "small.db", MIN_PROBES - 3)
    r = CliRunner().invoke(main, ["calibrate", "--target", "fake", "--from", str(small), "--budget", "40s",
                                  "--db", str(out)])
    assert r.exit_code == 2 and len(r.output.strip().splitlines()) == 1, r.output
    assert f"has {MIN_PROBES - 3} measured dense row(s) to probe: a transfer needs at least {MIN_PROBES}" in r.output
    assert not out.exists()


def test_plain_calibration_is_normalised_by_the_profiles_own_rows(tmp_path, monkeypatch):
    """`latency calibrate` on a full sweep takes its state reference from the profile's own measured fp32
    rows (a fixed sample within the reference's bounds, with their stored times)."""
    from click.testing import CliRunner

    import profilers.calibrate as C
    from latency.cli import main
    from profilers.transfer import REFERENCE_N, REFERENCE_US, StateReference

    db = tmp_path / "p.db"
    _fake_profile(db)
    t = get_target("fake")
    ref = StateReference.of_profile(t, db)
    with Store(db, readonly=True) as st:
        df = st.measurements(st.find_target("fake"), ok_only=True)
    lat = dict(zip(df["key"], df["latency_us"]))
    assert 0 < len(ref.rows) <= REFERENCE_N
    assert all(REFERENCE_US[0] <= lat[k] <= REFERENCE_US[1] and v == lat[k] for k, v in ref.rows)
    assert StateReference.of_profile(t, db).rows == ref.rows  # the same sample every time
    got = {}

    def calibrate(target, profile=None, progress=None, refit=False, reference=None, **kw):
        got["reference"] = reference
        return {"pairs": 0, "models": 0, "context": "c", "gate": "g", "stream_us_per_mb": 0.0,
                "private_gate_scale": 1, "footprint_scale": 1, "per_run_us": 0.0, "per_kernel_us": 0.0,
                "per_lowint_conv_mb_us": 0.0, "per_weight_mb_us": 0.0, "overhead": "o", "raw": "r", "seconds": 0.0,
                "residual_rel_median": 0.0}

    monkeypatch.setattr(C, "calibrate", calibrate)
    r = CliRunner().invoke(main, ["calibrate", "--target", "fake", "--db", str(db)])
    assert got["reference"] == "profile", r.output
