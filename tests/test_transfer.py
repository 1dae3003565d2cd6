"""Transfer calibration: probe choice, the curve fit, a transferred profile written, found and used."""

import json
import math
import random

import numpy as np
import pytest
from click.testing import CliRunner

import latency.profiles as P
from latency.cli import main
from latency.errors import LatencyError
from latency.estimator import Estimator
from latency.ops import Config
from latency.store import Store
from latency.targets import choose_default, get_target
from latency.transfer import (AMX_INT8, MIN_PROBES, STREAMING, TransferError, TransferModel, curve_group, description_model,
                              fit_transfer, identity_model, log_intensity, log_mb, memory_weight, probe_order,
                              transfer_calibration, variant)
from profilers.measure import Protocol
from profilers.plans import model_kernels, plan
from tests.models import small_cnn

FAST = Protocol(phases=1, rounds_per_phase=2, warmup=1, min_runs=3, max_runs=5, remeasure_phases=0)
EPYC4 = {"vendor": "AMD", "cpu_model": "AMD EPYC", "arch": "x86_64", "l2_mb": 1.0, "llc_mb": 32.0,
         "cpu_flags": ["avx", "avx2", "avx512bw", "avx512f", "avx512vl", "avx512_vnni", "f16c", "fma", "sse4_1"],
         "runtime": "onnxruntime", "runtime_version": "1.32.0"}


def _true_log_ratio(kind, base_us):
    """The synthetic device: convs and matmuls 2x faster when long, everything ~1.25x faster, small
    kernels less (dispatch bound)."""
    x = math.log10(base_us)
    if kind in ("Conv", "MatMul"):
        return math.log(0.8) + (math.log(0.5) - math.log(0.8)) * min(1.0, max(0.0, (x - 1.0) / 2.0))
    return math.log(0.8)


def _synthetic_rows(seed=0):
    rng = random.Random(seed)
    rows = []
    for c in plan("quick"):
        rows.append((c.key, 10 ** rng.uniform(0.3, 4.3)))
    return rows


def test_probe_order_is_nested_spread_and_dense_only():
    rows = _synthetic_rows()
    order = probe_order(rows, 120)
    assert len(order) == len(set(order)) == 120
    assert probe_order(rows, 40) == order[:40]  # any prefix is the smaller probe set
    cfgs = [Config.from_key(k) for k in order]
    assert all(c.sparsity == "0" for c in cfgs)
    # the biggest groups come first, and every (kind, precision) group with rows gets probes soon
    groups = {(c.kind, c.precision) for c in (Config.from_key(k) for k, _ in rows) if c.sparsity == "0"}
    assert {(c.kind, c.precision) for c in cfgs} == groups or len(groups) > 120
    # within a group, the probes spread over its latency range (first the middle, then the quartiles...)
    lat = dict(rows)
    # (checked in the Conv fp32 variant with the most rows: the plan's other kinds share the probes)
    dense = [Config.from_key(k) for k, _ in rows]
    dense = [c for c in dense if (c.kind, c.precision, c.sparsity) == ("Conv", "fp32", "0")]
    top = max({variant(c) for c in dense}, key=lambda v: sum(variant(c) == v for c in dense))
    every = sorted(math.log10(lat[c.key]) for c in dense if variant(c) == top)
    half = [Config.from_key(k) for k in probe_order(rows, len(rows) // 2)]
    convs = sorted(math.log10(lat[c.key]) for c in half
                   if (c.kind, c.precision) == ("Conv", "fp32") and variant(c) == top)
    assert 3 <= len(convs) < len(every) and convs[-1] - convs[0] > 0.5 * (every[-1] - every[0])
    # explicit weights move the share
    w = {g: (100.0 if g == ("Softmax", "fp32") else 1.0) for g in groups}
    heavy = probe_order(rows, 40, group_weights=w)
    assert sum(Config.from_key(k).kind == "Softmax" for k in heavy) > sum(
        Config.from_key(k).kind == "Softmax" for k in order[:40])


def test_fit_recovers_the_synthetic_device_and_shrinks_small_groups():
    rows = _synthetic_rows()
    rng = np.random.default_rng(1)
    order = probe_order(rows, 200)
    probes = []
    for k in order:  # each probe shape at four sizes, so that every group has a few per decade
        c = Config.from_key(k)
        for _ in range(4):
            us = 10 ** rng.uniform(0.3, 4.3)
            probes.append((k, us, us * math.exp(_true_log_ratio(c.kind, us) + rng.normal(0, 0.03))))
    m = fit_transfer(probes)
    for kind, prec in (("Conv", "fp32"), ("MatMul", "fp32"), ("Elementwise", "fp32"), ("Pool", "int8")):
        for us in (5, 30, 300, 3000):
            want = math.exp(_true_log_ratio(kind, us))
            got = float(m.ratio(kind, prec, us)[0])
            assert abs(got / want - 1) < 0.08, (kind, prec, us, got, want)
    # a group with one wild probe stays near its parent (shrinkage), not at the wild value
    wild = probes + [(next(k for k, _ in rows if Config.from_key(k).kind == "Resize"), 100.0, 400.0)]
    m2 = fit_transfer(wild)
    r = float(m2.ratio("Resize", "fp32", 100.0)[0])
    assert 0.7 < r < 1.6, r
    # round trip
    m3 = TransferModel.from_dict(json.loads(json.dumps(m.to_dict())))
    assert np.allclose(m3.apply("Conv", "fp32", [10, 1000]), m.apply("Conv", "fp32", [10, 1000]))
    assert m.summary() and "probes" in m.summary()[0]


def test_streaming_matmuls_and_big_footprints_get_their_own_ratio():
    """A device whose memory-bound kernels of more than 4 MB run 3x the base's time and everything
    else 1.3x, whatever its latency: the streaming MatMuls' curve and the footprint curve find it; the
    per-kind curves alone (GEMVs among the kind's GEMMs of the same latencies) do not."""
    cfgs = [c for c in plan("standard", precisions=["fp32"]) if c.sparsity == "0" and c.kind in
            ("MatMul", "Conv", "Elementwise", "Activation", "Pool")]
    rng = random.Random(3)
    rng.shuffle(cfgs)

    def base_us(c):  # one roofline for every kind: 50 GFLOP/s, 20 GB/s, 2 us per call
        w = c.flops()
        return 2.0 + w / 5e4 + 10 ** log_mb(c) * 1e6 / 2e4

    def slow(c):
        return memory_weight(log_intensity(c), math.log10(base_us(c))) > 0.5 and log_mb(c) > math.log10(4)

    probes = [(c.key, base_us(c), base_us(c) * (3.0 if slow(c) else 1.3)) for c in cfgs[:1500]]
    assert sum(slow(Config.from_key(k)) for k, _, _ in probes) >= 20
    held = [c for c in cfgs[1500:] if c.kind == "MatMul" and curve_group(c)[0] == STREAMING and slow(c)]
    dense = [c for c in cfgs[1500:] if c.kind == "Conv" and log_intensity(c) > 1.5 and base_us(c) > 50]
    assert held and dense
    new = fit_transfer(probes)
    assert new.spec["streaming_group"] and len(new.foot) and "footprint" in new.to_dict()
    old = fit_transfer(probes, footprint=False, streaming_group=False)

    def ratios(m, cs):
        return m.apply_keys([(c.key, base_us(c)) for c in cs]) / np.array([base_us(c) for c in cs])

    assert abs(np.median(ratios(new, held)) / 3.0 - 1) < 0.15, np.median(ratios(new, held))
    assert abs(np.median(ratios(new, dense)) / 1.3 - 1) < 0.1, np.median(ratios(new, dense))
    assert np.median(ratios(old, held)) < 0.8 * 3.0  # what the two terms are for
    # a transfer saved before either existed is applied as it was fitted (its groups, no footprint)
    d = old.to_dict()
    d.pop("footprint")
    d.pop("footprint_knots_log10_mb")
    d["spec"].pop("streaming_group")
    again = TransferModel.from_dict(d)
    assert np.allclose(ratios(again, held), ratios(old, held))
    rt = TransferModel.from_dict(json.loads(json.dumps(new.to_dict())))
    assert np.allclose(ratios(rt, held), ratios(new, held))


def test_too_few_probes_is_an_error():
    rows = _synthetic_rows()[: MIN_PROBES - 1]
    with pytest.raises(TransferError, match=f"at least {MIN_PROBES}"):
        fit_transfer([(k, v, v / 2) for k, v in rows])


def test_description_model_uses_what_is_known():
    zen5 = dict(EPYC4, cpu_family_model="26/2", cpu_flags=EPYC4["cpu_flags"] + ["avx_vnni"])
    m = description_model(EPYC4, zen5)  # family not recorded on the base: inferred from its flags
    assert abs(float(m.ratio("Conv", "fp32", 1000)[0]) - 0.5) < 1e-9
    assert abs(float(m.ratio("Elementwise", "fp32", 1)[0]) - 1 / 1.16) < 1e-9  # dispatch: IPC
    assert abs(float(m.ratio("Elementwise", "fp32", 1000)[0]) - 0.5) < 1e-9  # L1 loads 2x256 -> 2x512 bits
    avx2 = dict(zen5, cpu_flags=["avx", "avx2", "fma", "f16c"])  # AVX-512 and every VNNI hidden
    masked = description_model(zen5, avx2)
    assert abs(float(masked.ratio("Conv", "fp32", 1000)[0]) - 2.0) < 1e-9
    assert abs(float(masked.ratio("Conv", "int8", 1000)[0]) - 4.0) < 1e-9  # half the width, no VNNI
    assert float(masked.ratio("Conv", "fp32", 1)[0]) == 1.0  # same core, same dispatch
    assert "inferred" in " ".join(m.spec["known"])
    same = description_model(EPYC4, EPYC4)
    assert float(same.ratio("Conv", "fp32", 1000)[0]) == 1.0 and same.spec["known"] == ["nothing that differs"]
    # per kernel, by its arithmetic intensity on the two rooflines: with AVX-512 hidden on one Zen 5 core the
    # vector units halve but the L2 streams as fast, so a batch-1 matrix-vector product (memory-bound on
    # both) keeps its time while a dense convolution (compute-bound) doubles; Zen 4 -> Zen 5 doubles both
    gemv = Config("MatMul", {"a": [1, 4096], "b": [4096, 4096], "const_b": 1, "bias": 0, "scale": 0, "trans_b": 0,
                             "act": "none"}).key
    conv = max((c for c in plan("quick") if c.kind == "Conv" and c.precision == "fp32" and c.sparsity == "0"),
               key=log_intensity).key
    g, c = masked.apply_keys([(gemv, 1000.0), (conv, 1000.0)])
    assert abs(g - 1000.0) < 1e-6 and abs(c - 2000.0) < 1e-6
    assert np.allclose(m.apply_keys([(gemv, 1000.0), (conv, 1000.0)]), [500.0, 500.0])
    assert "streamed from L2 512 vs 512 bits/cycle" in masked.spec["known"]
    assert masked.spec["roofline"]["new"]["bytes"] == masked.spec["roofline"]["base"]["bytes"] == 64
    clocked = description_model(dict(EPYC4, cpu_mhz=2000), dict(EPYC4, cpu_mhz=4000))
    assert abs(float(clocked.ratio("MatMul", "int8", 50)[0]) - 0.5) < 1e-9
    assert float(identity_model().ratio("Conv", "fp32", 10)[0]) == 1.0


def test_zen3_is_told_from_zen4_by_its_model():
    """AMD family 25 holds Zen 3 (EPYC 7003, model 1; no AVX-512, no VNNI) and Zen 4 (model 17): the model
    decides, so Zen 4 -> Zen 3 moves dispatch by IPC (AMD's +13%) and int8 compute by the missing VNNI,
    while an fp32 convolution on the same 256-bit FMA units moves by the clock alone."""
    zen4 = dict(EPYC4, cpu_family_model="25/17", cpu_mhz=2600.0)
    zen3 = dict(EPYC4, cpu_family_model="25/1", cpu_mhz=2600.0, cpu_flags=["avx", "avx2", "f16c", "fma", "sse4_1"])
    m = description_model(zen4, zen3)
    known = " ".join(m.spec["known"])
    assert "Zen 4 (family/model 25/17) vs Zen 3 (family/model 25/1)" in known and "VNNI yes vs no" in known
    assert abs(float(m.ratio("Elementwise", "fp32", 1)[0]) - 1.13) < 1e-9
    assert abs(float(m.ratio("Conv", "fp32", 1000)[0]) - 1.0) < 1e-9
    assert abs(float(m.ratio("Conv", "int8", 1000)[0]) - 2.0) < 1e-9
    # a family 25 model outside the Zen 3 ranges is Zen 4
    assert "Zen 4" in " ".join(description_model(zen3, dict(zen4, cpu_family_model="25/97")).spec["known"])
    # Zen 2 (EPYC 7002, 23/49): the same widths as Zen 3, 19% less IPC; Zen 1 (23/1) runs AVX2 on 128-bit pipes
    rome = dict(zen3, cpu_family_model="23/49")
    m2 = description_model(zen3, rome)
    assert "Zen 2" in " ".join(m2.spec["known"]) and abs(float(m2.ratio("Elementwise", "fp32", 1)[0]) - 1.19) < 1e-9
    assert abs(float(m2.ratio("Conv", "fp32", 1000)[0]) - 1.0) < 1e-9
    m1 = description_model(rome, dict(zen3, cpu_family_model="23/1"))
    assert "Zen 1" in " ".join(m1.spec["known"]) and abs(float(m1.ratio("Conv", "fp32", 1000)[0]) - 2.0) < 1e-9


def test_intel_server_cores_are_known_by_model_or_by_flags():
    """An Intel host is no longer an unknown core (counted as streaming at its full load width, twice a
    Zen 5's L2): Sapphire Rapids by its model, a virtual machine's odd model by its AMX flags, an AVX-512
    part without AMX as a Skylake/Ice Lake-SP-class core; AMX speeds int8 compute-bound kernels only."""
    zen5 = dict(EPYC4, cpu_family_model="26/2", cpu_flags=EPYC4["cpu_flags"] + ["avx_vnni"])
    amx_flags = zen5["cpu_flags"] + ["amx_bf16", "amx_int8", "amx_tile", "avx512_fp16"]
    spr = dict(EPYC4, vendor="Intel", cpu_model="Intel(R) Xeon(R) Processor", cpu_family_model="6/143",
               cpu_flags=amx_flags)
    vm = dict(spr, cpu_family_model="6/167")  # a model number the guest made up, Sapphire-Rapids-class flags
    icx = dict(spr, cpu_family_model="6/106", cpu_flags=zen5["cpu_flags"])
    for dev, name, how in ((spr, "Golden Cove", "family/model 6/143"), (vm, "Golden Cove", "inferred"),
                           (icx, "Ice Lake", "family/model 6/106")):
        known = " ".join(description_model(zen5, dev).spec["known"])
        assert name in known and how in known, known
    m = description_model(zen5, vm)
    assert abs(float(m.ratio("Elementwise", "fp32", 1000)[0]) - 1.0) < 1e-9  # same L2 fill width as Zen 5
    assert abs(float(m.ratio("Conv", "fp32", 1000)[0]) - 1.0) < 1e-9
    # the Zen 5's VNNI kernels keep up with AMX (measured): between vendors int8 moves like fp32
    assert abs(float(m.ratio("Conv", "int8", 1000)[0]) - 1.0) < 1e-9 and "AMX" not in " ".join(m.spec["known"])
    amx = description_model(icx, vm)  # between Intel cores AMX speeds int8 GEMMs, nothing else
    assert abs(float(amx.ratio("Conv", "int8", 1000)[0]) * AMX_INT8 - 1.0) < 1e-9
    assert abs(float(amx.ratio("Elementwise", "int8", 1000)[0]) - 1.0) < 1e-9
    assert "AMX no vs yes" in amx.spec["known"] and amx.spec["roofline"]["new"]["int8"] > amx.spec["roofline"]["base"]["int8"]
    gemm = max((c for c in plan("quick") if c.kind == "MatMul" and c.precision == "int8" and c.sparsity == "0"),
               key=log_intensity).key
    assert abs(amx.apply_keys([(gemm, 1000.0)])[0] * AMX_INT8 - 1000.0) < 1e-6  # compute-bound on both roofs
    assert float(description_model(vm, icx).ratio("MatMul", "int8", 1000)[0]) > 2.0  # AMX taken away


def test_transfer_calibration_moves_the_microsecond_terms(tmp_path):
    """No probe: the base's overhead and context move with the description (dispatch terms by clock x IPC,
    memory traffic by the memory-bound ratio); the in-model ratios stay; the files still load."""
    from latency.context import ContextModel
    from latency.overhead import OverheadModel

    zen5 = dict(EPYC4, cpu_family_model="26/2", cpu_flags=EPYC4["cpu_flags"] + ["avx_vnni"], cpu_mhz=4000.0)
    m = description_model(dict(EPYC4, cpu_mhz=3000.0), zen5)
    disp, mem = 0.75 / 1.16, 0.75 * 0.5  # clock 3 -> 4 GHz, IPC 1.16, L2 fill 2x
    curve = {"log_us": [3.5, 5.0], "log_ratio": [0.1, 0.02], "pairs": 40}
    (tmp_path / "b.context.json").write_text(json.dumps({"kinds": {"Conv": curve}, "min_us": 30.0,
                                                         "stream_us_per_mb": 30.0}))
    (tmp_path / "b.overhead.json").write_text(json.dumps({"format": 1, "per_run_us": 4.0, "per_short_kernel_us": -1.0,
                                                          "per_long_kernel_us": 3.0, "short_us": 30.0,
                                                          "per_weight_mb_us": 0.0, "per_lowint_conv_mb_us": 20.0}))
    ctx, ov = tmp_path / "n.context.json", tmp_path / "n.overhead.json"
    done = transfer_calibration(m, tmp_path / "b.context.json", tmp_path / "b.overhead.json", ctx, ov)
    assert done["dispatch_ratio"] == pytest.approx(disp, rel=1e-3)
    assert done["memory_ratio"] == pytest.approx(mem, rel=1e-3)
    o, c = json.loads(ov.read_text()), json.loads(ctx.read_text())
    assert o["per_run_us"] == pytest.approx(4.0 * disp, rel=1e-3)
    assert o["per_long_kernel_us"] == pytest.approx(3.0 * disp, rel=1e-3)
    assert o["per_lowint_conv_mb_us"] == pytest.approx(20.0 * mem, rel=1e-3)
    assert c["stream_us_per_mb"] == pytest.approx(30.0 * mem, rel=1e-3)
    assert 30.0 * mem < o["short_us"] < 30.0 * disp  # a 30 us kernel is between dispatch- and memory-bound
    assert c["kinds"]["Conv"] == curve and c["min_us"] == 30.0  # dimensionless: the base's
    assert OverheadModel.load(ov)["per_run_us"] == o["per_run_us"] and ContextModel.load(ctx)
    same = transfer_calibration(description_model(EPYC4, EPYC4), tmp_path / "b.context.json", None,
                                tmp_path / "s.context.json", tmp_path / "s.overhead.json")
    assert json.loads((tmp_path / "s.context.json").read_text())["stream_us_per_mb"] == 30.0
    assert not (tmp_path / "s.overhead.json").exists() and same["scaled"] == ["context.stream_us_per_mb"]


def _base_profile(path, target="x86-avx512-ort", device=EPYC4):
    """A base profile measured "elsewhere": the small CNN's kernels and some quick-plan rows, each
    priced 2x what this host would take (roughly), with another device's fingerprint and record."""
    t = get_target(target)
    cfgs = model_kernels([small_cnn()], t) + [c for c in plan("quick") if c.kind in ("Conv", "MatMul", "Elementwise",
                                                                                    "Pool", "Activation")][:60]
    fp = {k: device[k] for k in ("cpu_model", "cpu_flags", "arch", "runtime", "runtime_version")}
    fp.update(provider=t.provider, threads=1, isa=t.isa)
    rng = random.Random(3)
    with Store(path) as st:
        tid = st.ensure_target(target, fp)
        run = st.start_run(tid, None, "synthetic", None, "")
        st.upsert_measurements([{"target_id": tid, "key": c.key, "latency_us": 10 ** rng.uniform(0.5, 3.0),
                                 "run_id": run} for c in cfgs])
        st.finish_run(run, "done", len(cfgs), 0)
        P.write_device_record(st, target, device)
    return path


def test_transfer_writes_a_profile_found_chosen_and_labelled(dirs):
    from profilers.transfer import transfer

    shipped, user = dirs
    t = get_target("x86-avx512-ort")
    ok, why = t.host_supported()
    if not ok:
        pytest.skip(why)
    base = _base_profile(shipped / "x86-avx512-ort.db")
    r = transfer(t, str(base), budget_s=120, core=None, calibrate=False, train=False, max_probes=14, protocol=FAST)
    db = P.Path(r["db"])
    assert db.parent == user and db.exists() and r["probes"] >= MIN_PROBES
    assert P.companion(db, ".transfer.json").exists()
    assert "none" in r["context"] and "regressors" in r and r["transferred_rows"] > 20
    info = P.read_profile(db, "user")[0]
    assert info.provenance == "transferred" and "x86-avx512-ort.db" in info.note
    assert f"with {r['probes']} probes" in info.note
    with Store(db, readonly=True) as st:
        df = st.measurements(st.find_target(t.name))
        assert set(df["source"]) == {"measured", "transferred"}
        assert (df["source"] == "measured").sum() == r["probes"]
        moved = df[df["source"] == "transferred"].iloc[0]
        assert moved["extra"]["base_us"] > 0 and moved["latency_us"] == pytest.approx(
            moved["extra"]["base_us"] * moved["extra"]["ratio"], rel=1e-3)
    # listed with its provenance, and the closest profile for this host (the base is another device)
    res = CliRunner().invoke(main, ["targets", "--json"])
    assert res.exit_code == 0, res.output
    d = json.loads(res.output)
    row = next(x for x in d["targets"] if x["name"] == t.name)
    assert any(p["provenance"] == "transferred" and p["path"] == str(db) for p in row["profiles"])
    assert d["default_profile"] == str(db)
    _, chosen, note = choose_default()
    assert chosen.path == str(db) and note == ""
    # estimates from it say which kernels were transferred and which were measured here
    e = Estimator(t.name, profile=str(db)).estimate(small_cnn())
    assert e.sources.get("transferred", 0) >= 1
    assert set(e.sources) <= {"transferred", "table", "free", "prior", "table:dense-equivalent"}
    k = next(k for k in e.kernels if k.source == "transferred")
    assert "scaled" in k.detail
    # the shipped profile's own kernels stay "table"
    assert "transferred" not in Estimator(t.name, profile=str(base)).estimate(small_cnn()).sources
    # a second run adds probes and rewrites the transferred rows, never the measured ones
    r2 = transfer(t, str(base), budget_s=120, core=None, calibrate=False, train=False, max_probes=20, protocol=FAST)
    assert r2["db"] == r["db"] and r2["probes"] >= r["probes"]


def test_cli_transfer_small_budget_copies_what_it_cannot_refit(dirs, tmp_path):
    shipped, user = dirs
    t = get_target("x86-avx512-ort")
    if not t.host_supported()[0]:
        pytest.skip(t.host_supported()[1])
    base = _base_profile(shipped / "x86-avx512-ort.db")
    (shipped / "x86-avx512-ort.overhead.json").write_text(
        (P.Path(P.__file__).parent / "tables" / "x86-avx512-ort.overhead.json").read_text())
    out = tmp_path / "mine.db"
    r = CliRunner().invoke(main, ["calibrate", "--target", t.name, "--from", str(base), "--budget", "40s",
                                  "--max-probes", "10", "--db", str(out)])
    assert r.exit_code == 0, r.output
    assert f"profile  {out}" in r.output and "10 probes measured here" in r.output
    assert "regressors: none" in r.output and "copied from the base (overhead.json" in r.output
    assert P.companion(out, ".overhead.json").exists() and not P.companion(out, ".regressors").exists()
    assert not list(user.glob("*.db")) if user.exists() else True  # --db was given: nothing in the user dir


def test_bad_input_is_one_line(dirs, tmp_path):
    shipped, _ = dirs
    t = get_target("x86-avx512-ort")
    if not t.host_supported()[0]:
        pytest.skip(t.host_supported()[1])
    base = _base_profile(shipped / "x86-avx512-ort.db")
    fake = tmp_path / "fake.db"
    with Store(fake) as st:
        st.ensure_target("fake", get_target("fake").fingerprint())
    r = CliRunner().invoke(main, ["calibrate", "--target", "x86-avx512-ort", "--from", str(base), "--budget", "10s"])
    assert r.exit_code == 2 and "budget of 10 s cannot fit a transfer" in r.output
    assert len(r.output.strip().splitlines()) == 1
    r = CliRunner().invoke(main, ["calibrate", "--target", "x86-avx512-ort", "--from", str(fake)])
    assert r.exit_code == 2 and "another family" in r.output and len(r.output.strip().splitlines()) == 1
    r = CliRunner().invoke(main, ["calibrate", "--target", "x86-avx512-ort", "--from", "t5"])
    assert r.exit_code == 2 and "valid targets" in r.output
    r = CliRunner().invoke(main, ["calibrate", "--target", "x86-avx512-ort", "--from", str(base), "--db", str(base)])
    assert r.exit_code == 2 and "shipped" in r.output
    other = _base_profile(tmp_path / "other.db")  # this target, measured on another device
    r = CliRunner().invoke(main, ["calibrate", "--target", "x86-avx512-ort", "--from", str(base), "--db", str(other)])
    assert r.exit_code == 2 and "another device" in r.output and "there vs" in r.output
    assert len(r.output.strip().splitlines()) == 1
    r = CliRunner().invoke(main, ["calibrate", "--target", "x86-avx512-ort", "--from", str(base), "--refit"])
    assert r.exit_code == 2 and "--refit" in r.output


def test_base_of_another_family_names_both_fingerprints(dirs, tmp_path):
    """An arm64 or GPU base for an x86 target, an x86 base for an arm64 target: refused before anything is
    measured (whatever the host), one line with both sides."""
    shipped, _ = dirs
    arm = tmp_path / "arm.db"
    with Store(arm) as st:
        st.ensure_target("arm64-ort", {"cpu_model": "Neoverse-N1", "cpu_flags": ["asimd", "asimddp"],
                                       "arch": "aarch64", "runtime": "onnxruntime", "runtime_version": "1.20"})
    gpu = tmp_path / "gpu.db"
    with Store(gpu) as st:
        st.ensure_target("t4", {"gpu_name": "Tesla T4", "runtime": "onnxruntime", "runtime_version": "1.20"})
    base = _base_profile(tmp_path / "x86.db")
    for tgt, frm, there in (("x86-avx512-ort", arm, "arm64-ort ["), ("x86-avx512-ort", gpu, "t4 ["),
                            ("arm64-ort", base, "x86-avx512-ort [")):
        r = CliRunner().invoke(main, ["calibrate", "--target", tgt, "--from", str(frm), "--budget", "10m"])
        assert r.exit_code == 2 and len(r.output.strip().splitlines()) == 1, r.output
        assert "another family" in r.output and there in r.output and " there vs " in r.output
        assert f"{tgt} [" in r.output.split(" there vs ")[1] and "Traceback" not in r.output
    assert "Neoverse-N1 (aarch64, asimd" in CliRunner().invoke(
        main, ["calibrate", "--target", "x86-avx512-ort", "--from", str(arm)]).output


def test_budget_too_small_says_the_minimum(dirs, tmp_path):
    base = _base_profile(tmp_path / "x86.db")
    for budget in ("5s", "29s"):
        r = CliRunner().invoke(main, ["calibrate", "--target", "x86-avx512-ort", "--from", str(base), "--budget", budget])
        assert r.exit_code == 2 and len(r.output.strip().splitlines()) == 1
        assert "cannot fit a transfer: it needs at least 30 s" in r.output


def test_budget_zero_scales_the_base_by_the_descriptions(dirs, tmp_path):
    """--budget 0: no probe, nothing measured; every base row scaled by description_model, labelled."""
    t = get_target("x86-avx512-ort")
    if not t.host_supported()[0]:
        pytest.skip(t.host_supported()[1])
    shipped, _ = dirs
    base = _base_profile(shipped / "x86-avx512-ort.db")
    (shipped / "x86-avx512-ort.context.json").write_text('{"kinds": {}}')
    out = tmp_path / "mine.db"
    r = CliRunner().invoke(main, ["calibrate", "--target", t.name, "--from", str(base), "--budget", "0s",
                                  "--max-probes", "20", "--db", str(out)])
    assert r.exit_code == 2 and "--max-probes 20 with --budget 0" in r.output and not out.exists()
    r = CliRunner().invoke(main, ["calibrate", "--target", t.name, "--from", str(base), "--budget", "0",
                                  "--db", str(out)])
    assert r.exit_code == 0, r.output
    assert "(0 probes measured here" in r.output and "no probe: scaled by the device descriptions (" in r.output
    assert "moved from the base (context.json" in r.output and "regressors: retrained" in r.output
    assert json.loads(P.companion(out, ".context.json").read_text())["transferred"].startswith("moved from the base")
    info = P.read_profile(out, "user")[0]
    assert info.provenance == "transferred" and "with no probe" in info.note
    want = description_model(EPYC4, P.host_device(cores_used=t.threads))
    with Store(out, readonly=True) as st:
        df = st.measurements(st.find_target(t.name))
    with Store(base, readonly=True) as st:
        n_base = len(st.measurements(st.find_target(t.name)))
    assert set(df["source"]) == {"transferred"} and len(df) == n_base  # nothing measured, every base row
    items = [(k, x["base_us"]) for k, x in zip(df["key"], df["extra"])]
    assert np.allclose(df["latency_us"], want.apply_keys(items), rtol=1e-4)
    doc = json.loads(P.companion(out, ".transfer.json").read_text())
    assert doc["probes"] == 0 and doc["method"].startswith("description")


def test_profiling_into_another_devices_database_names_both(tmp_path):
    from profilers.sweep import run_sweep

    t = get_target("fake")
    db = tmp_path / "o.db"
    with Store(db) as st:
        st.ensure_target("fake", dict(t.fingerprint(), cpu_model="another CPU"))
    r = CliRunner().invoke(main, ["profile", "--target", "fake", "--db", str(db), "--ops", "Pool", "--no-progress"])
    assert r.exit_code == 2 and len(r.output.strip().splitlines()) == 1
    assert "cpu_model 'another CPU' there vs 'fake' here" in r.output
    with Store(db) as st:
        with pytest.raises(LatencyError, match="another device"):
            run_sweep(st, t, plan("quick")[:3])
        assert len(st.measurements()) == 0


def test_device_record_names_clock_with_its_source_and_cores(tmp_path):
    (tmp_path / "max").write_text("3700000\n")
    assert P.cpu_clock_mhz(2596.0, cpufreq=str(tmp_path / "max")) == (3700.0, "cpufreq cpuinfo_max_freq")
    assert P.cpu_clock_mhz(2596.0, cpufreq=str(tmp_path / "none")) == (2596.0, "/proc/cpuinfo cpu MHz")
    mhz, src = P.cpu_clock_mhz(None, cpufreq=str(tmp_path / "none"))  # ARM: no MHz in /proc/cpuinfo
    assert (mhz is None and src == "unknown") or (mhz > 0 and src.startswith("lscpu"))
    host = P.host_device(cores_used=1)
    assert host["cores_used"] == 1 and host["cores"] >= 1 and host["cpu_mhz_source"]
    db = tmp_path / "d.db"
    fp = {"cpu_model": "EPYC 9R45", "cpu_flags": ["avx2"], "arch": "x86_64", "runtime": "onnxruntime",
          "runtime_version": "1.32.0", "threads": 1}
    with Store(db) as st:
        st.ensure_target("x86-avx512-ort", fp)
        st.ensure_target("x86-avx2-ort", dict(fp, cpu_model="Xeon 8480"))
        P.write_device_record(st, "x86-avx512-ort", dict(host, vendor="AMD", cpu_mhz=3700.0, cores=96))
        # a record written before clocks and cores were kept: still read, cores used from the fingerprint
        st.set_meta("device:x86-avx2-ort", json.dumps({"vendor": "Intel", "l2_mb": 2.0, "provenance": "measured"}))
    new, old = sorted(P.read_profile(db, "user"), key=lambda i: i.target, reverse=True)
    assert new.device["cpu_mhz"] == 3700.0 and new.device["cpu_mhz_source"] == host["cpu_mhz_source"]
    assert new.device_name() == "AMD EPYC 9R45 @ 3.70 GHz, 1 of 96 cores used"
    assert new.describe().startswith("measured on AMD EPYC 9R45 @ 3.70 GHz, 1 of 96 cores used")
    assert old.device_name() == "Intel Xeon 8480, 1 core(s) used" and old.device["cpu_mhz"] is None
    assert new.to_dict()["device_name"] == new.device_name()


def test_a_new_device_name_is_a_profile_of_its_own_named_by_it(dirs, tmp_path):
    """`latency calibrate --target mine --from BASE`: a device-named profile FAMILY.mine.db in the user folder,
    which `--target mine` then names (an estimate, the targets list); bad names say what a name is."""
    t = get_target("x86-avx512-ort")
    if not t.host_supported()[0]:
        pytest.skip(t.host_supported()[1])
    shipped, user = dirs
    base = _base_profile(shipped / "x86-avx512-ort.db")
    r = CliRunner().invoke(main, ["calibrate", "--target", "mine", "--from", str(base), "--budget", "0"])
    assert r.exit_code == 0, r.output
    db = user / "x86-avx512-ort.mine.db"
    assert db.exists() and f"profile  {db}" in r.output
    # the two devices side by side before anything is done, and what differs between them
    first = r.output.splitlines()[0]
    assert first.startswith("base x86-avx512-ort [") and " vs here x86-avx512-ort [" in first
    assert "onnxruntime" in first and ("no difference" in first or ";" in first or "host" in first)
    mine = get_target("mine")
    assert mine.name == "x86-avx512-ort" and mine.profile_path() == db
    assert get_target("x86-avx512-ort.mine").profile_path() == db
    m = tmp_path / "m.onnx"
    import onnx

    onnx.save(small_cnn(), m)
    e = CliRunner().invoke(main, ["estimate", str(m), "--target", "mine", "--json"])
    assert e.exit_code == 0, e.output
    assert json.loads(e.stdout)["profile"] == str(db)
    bad = CliRunner().invoke(main, ["calibrate", "--target", "my/dev", "--from", str(base), "--budget", "0"])
    assert bad.exit_code == 2 and "a new device name is letters, digits" in bad.output
    unknown = CliRunner().invoke(main, ["estimate", str(m), "--target", "yours"])
    assert unknown.exit_code == 2 and "unknown target 'yours'" in unknown.output
    assert "x86-avx512-ort.mine" in unknown.output
