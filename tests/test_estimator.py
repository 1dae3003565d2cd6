"""The model-level estimator on a fake target (fast) and for real on this CPU (small scale)."""

import json

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper
import pytest
from click.testing import CliRunner

from latency.cli import main
from latency.errors import MissingTable, ModelError, UnsupportedOp
from latency.estimator import Estimator
from latency.fusion import fuse
from latency.graph import load_graph
from latency.ops import Config
from latency.store import Store
from latency.targets import get_target, host_target
from profilers.fake import fake_latency_us
from profilers.sweep import run_sweep

from models import dynamic_batch, small_cnn, with_unknown_op

FAKE = get_target("fake")


def kernels_of(model):
    return fuse(load_graph(model), FAKE.fusion_rules())[0]


@pytest.fixture
def fake_profile(tmp_path):
    """A fake-target profile holding exactly the kernels of small_cnn plus some neighbours."""
    db = tmp_path / "fake.db"
    from profilers.plans import plan

    cfgs = [k.config for k in kernels_of(small_cnn()) if k.kind != "Free"]
    cfgs += plan("quick", ops=["Conv", "MatMul"], precisions=["fp32"])[:20]
    with Store(db) as st:
        run_sweep(st, FAKE, cfgs)
    return db


def test_table_hits_sum_to_total(fake_profile):
    est = Estimator(FAKE, profile=fake_profile, overhead=False).estimate(small_cnn())
    assert not est.uncovered
    assert {k.source for k in est.kernels} <= {"table", "free"}
    expected = sum(min(fake_latency_us(Config.from_key(k.key)) * (1 + 0.01 * ((int(Config.from_key(k.key).hash[:4], 16)
                                                                               + r) % 5)) for r in range(4))
                   for k in est.kernels if k.source == "table")
    assert est.total_ms * 1000 == pytest.approx(expected)
    conv1 = next(k for k in est.kernels if "conv1" in k.nodes)
    assert set(conv1.nodes) == {"conv1", "bn1", "relu1"}
    assert abs(sum(k.share for k in est.kernels) - 1) < 1e-9


def test_context_model_recovers_a_size_dependent_ratio(tmp_path):
    """Pairs whose in-model/alone ratio falls from 1.5 (40 us kernels) to 1.0 (large ones)."""
    from latency.context import MIN_US, ContextModel, fit_context

    rng = np.random.default_rng(0)
    iso = np.exp(rng.uniform(np.log(2), np.log(5000), 400))
    true = lambda us: np.interp(np.log(us), [np.log(40), np.log(500)], [1.5, 1.0])  # noqa: E731
    pairs = [{"kind": "Conv", "isolated_us": u, "in_model_us": u * true(u) * rng.lognormal(0, 0.03)} for u in iso]
    pairs += [{"kind": "Pool", "isolated_us": 100.0, "in_model_us": 300.0}]  # too few: pooled curve
    spec = fit_context(pairs, min_pairs=16)
    assert set(spec["kinds"]) == {"*", "Conv"} and spec["stream_us_per_mb"] == 0.0
    cm = ContextModel(spec)
    for us in (50.0, 100.0, 3000.0):
        assert cm.factor("Conv", us) == pytest.approx(float(true(us)), rel=0.12)
    assert cm.factor("Conv", MIN_US / 2) == 1.0  # short kernels: left to the per-kernel overhead
    assert cm.factor("Conv", 100.0, gate=0.5) == pytest.approx(1 + 0.5 * (cm.factor("Conv", 100.0) - 1))
    assert cm.factor("Conv", 100.0, gate=0.0) == 1.0
    assert cm.factor("Pool", 3000.0) == pytest.approx(cm.factor("*", 3000.0))
    assert cm.factor("Conv", 1e7) == pytest.approx(cm.factor("Conv", 5000.0))  # flat beyond the data
    cm.save(tmp_path / "c.json")
    assert ContextModel.load(tmp_path / "c.json").factor("Conv", 200.0) == cm.factor("Conv", 200.0)
    assert not ContextModel(None) and ContextModel(None).factor("Conv", 50.0) == 1.0


def test_context_model_int8_curves_of_their_own(tmp_path):
    """int8 kernels that run 1.4x alone inside a model get a curve of their own (keyed KIND:int8, up to the
    longest kernel it was fitted on); fp32 kernels keep the kind's curve; the machine's state divides the
    in-model times."""
    from latency.context import ContextModel, fit_context, fit_precision_curves
    from latency.ops import Config

    rng = np.random.default_rng(1)

    def key(prec, n):
        return Config("MatMul", {"a": [64, 256], "b": [256, int(n)], "const_b": 1, "bias": 1, "scale": 0,
                                 "trans_b": 0, "act": "none"}, prec).key

    fp32 = [{"kind": "MatMul", "key": key("fp32", 64 + i), "isolated_us": u, "in_model_us": 1.1 * u}
            for i, u in enumerate(np.exp(rng.uniform(np.log(40), np.log(400), 80)))]
    base = ContextModel(fit_context(fp32, min_pairs=16))
    int8 = [{"kind": "MatMul", "key": key("int8", 64 + i), "isolated_us": u, "in_model_us": 1.05 * 1.4 * u, "gate": 0.0}
            for i, u in enumerate(np.exp(rng.uniform(np.log(40), np.log(300), 40)))]
    curves = fit_precision_curves(int8 + fp32, "int8", base, state=1.05)
    assert set(curves) == {"MatMul:int8"} and curves["MatMul:int8"]["max_us"] <= 300.0
    cm = ContextModel({**base.spec, "kinds": {**base.spec["kinds"], **curves}})
    assert cm.factor("MatMul", 100.0, precision="int8") == pytest.approx(1.4, rel=0.02)
    assert cm.factor("MatMul", 100.0, precision="fp32") == pytest.approx(1.1, rel=0.02) == cm.factor("MatMul", 100.0)
    assert cm.factor("MatMul", 5000.0, precision="int8") == cm.factor("MatMul", 5000.0)  # beyond its data
    assert cm.factor("MatMul", 10.0, precision="int8") == 1.0  # short kernels as before
    cm.save(tmp_path / "c.json")
    assert ContextModel.load(tmp_path / "c.json").factor("MatMul", 100.0, precision="int8") == \
        cm.factor("MatMul", 100.0, precision="int8")
    assert fit_precision_curves(int8[:10], "int8", base) == {}  # too few pairs: no curve


def test_small_quant_curve_from_chains_prices_the_pair_as_measured(tmp_path):
    """Q / DQ kernels shorter than min_us alone get the chains' ratio, read at their elements (not at their time
    alone, flat at ~2 us below 4k elements), with no cache gate; other kinds and long kernels are untouched, and
    an estimate charges a pair what the chain measured, once the per-kernel term is taken off."""
    import math

    from latency.context import MIN_US, ContextModel, fit_small_quant_curve
    from latency.ops import Config

    pair = {16: 0.38, 1024: 0.52, 16384: 2.6, 65536: 9.1}
    alone = {16: (2.0, 2.0), 1024: (1.86, 1.86), 16384: (2.8, 3.0), 65536: (4.8, 6.8)}
    curve = fit_small_quant_curve(pair, alone, per_short_us=-1.03, state=1.1)
    assert curve["pairs"] == 4 and curve["log_elements"] == [math.log(c) for c in sorted(pair)]
    assert fit_small_quant_curve({16: 0.4, 1024: 0.5}, alone, -1.03) is None  # too few sizes
    cm = ContextModel({"kinds": {}, "min_us": MIN_US, "small_kinds": {"Quant:int8": curve}})

    def qkey(op, n):
        return Config("Quant", {"op": op, "x": [1, n]}, "int8").key

    for c, (q, dq) in alone.items():  # each size: both kernels' in-model prices less the term add up to the pair
        fq, fdq = (cm.factor("Quant", u, g, "int8", qkey(op, c)) for u, g, op in
                   ((q, 1.0, "QuantizeLinear"), (dq, 0.0, "DequantizeLinear")))
        assert q * fq + dq * fdq - 2 * 1.03 == pytest.approx(pair[c] / 1.1, rel=1e-9)
    assert cm.factor("Quant", 2.0, 1.0, "int8", qkey("QuantizeLinear", 16)) < 0.7
    assert cm.factor("Quant", 40.0, 1.0, "int8", qkey("QuantizeLinear", 1 << 20)) == 1.0  # long: the curves' job
    assert cm.factor("Quant", 2.0, 1.0, "int8") == 1.0  # no key, no elements
    tanh = Config("Activation", {"op": "Tanh", "x": [1, 16]}, "fp32").key
    assert cm.factor("Activation", 2.0, 1.0, "fp32", tanh) == 1.0
    cm.save(tmp_path / "c.json")
    assert ContextModel.load(tmp_path / "c.json").small_factor("Quant", 2.0, "int8", qkey("QuantizeLinear", 1024)) == \
        cm.small_factor("Quant", 2.0, "int8", qkey("QuantizeLinear", 1024))


def test_context_model_weight_streaming_term():
    """Kernels with weights pay a fixed time per MB in models that evict them (gate), none when cached."""
    from latency.context import ContextModel, cache_gate, fit_context

    rng = np.random.default_rng(1)
    pairs = []
    for _ in range(200):
        w, iso = rng.uniform(0.5, 10), rng.uniform(50, 3000)
        pairs.append({"kind": "Conv", "isolated_us": iso, "weight_mb": w, "gate": 1.0,
                      "in_model_us": iso * 1.05 + 40.0 * w + rng.normal(0, 2)})
    spec = fit_context(pairs, llc=32.0)
    assert spec["stream_us_per_mb"] == pytest.approx(40.0, rel=0.1)
    cm = ContextModel(spec)
    assert cm.factor("Conv", 1000.0) == pytest.approx(1.05, rel=0.03)  # the curve is what is left
    assert cm.stream_us(5.0) == pytest.approx(5 * spec["stream_us_per_mb"])
    assert cm.stream_us(5.0, gate=0.0) == 0.0
    assert cm.stream_us(0.1) == pytest.approx(0.1 * spec["stream_us_per_mb"])  # small weights are evicted too
    assert cm.stream_us(100.0) == 0.0    # bigger than the LLC: streamed when timed alone too
    assert cache_gate(5.0, (10.0, 30.0)) == 0.0 and cache_gate(60.0, (10.0, 30.0)) == 1.0
    assert 0 < cache_gate(17.0, (10.0, 30.0)) < 1
    # a context model fitted when only kernels of 0.3 MB or more paid it keeps that minimum
    old = ContextModel({"stream_us_per_mb": 40.0, "stream_min_mb": 0.3, "stream_cap_mb": 32.0})
    assert old.stream_us(0.1) == 0.0 and old.stream_us(1.0, gate=0.5) == pytest.approx(20.0)
    # the last-level gate reads a model's working set times the fitted footprint scale (1 when absent)
    scaled = ContextModel({"gate": {"footprint_mb": [10.0, 30.0], "footprint_scale": 1.5}})
    assert scaled.gate(12.0) == pytest.approx(cache_gate(18.0, (10.0, 30.0)))
    assert cache_gate(12.0, (10.0, 30.0)) < scaled.gate(12.0) < 1.0
    assert ContextModel({"gate": {"footprint_mb": [10.0, 30.0]}}).gate(12.0) == cache_gate(12.0, (10.0, 30.0))


def test_context_model_fetch_rate_counts_short_kernels():
    """The fetch rate is fitted on short kernels too (a few us alone, mostly weight reads inside a
    model), with the in-model profile's per-node offset and a proportional slowdown kept out of it."""
    from latency.context import fit_context

    rng = np.random.default_rng(2)
    pairs = []
    for m in range(12):
        g = (0.0, 0.3, 1.0)[m % 3]
        for _ in range(60):
            w, iso = rng.uniform(0.01, 0.9), rng.uniform(2, 40)
            pairs.append({"kind": "Conv", "isolated_us": iso, "weight_mb": w, "gate": g,
                          "in_model_us": (iso * 1.02 + 35.0 * g * w + 3.0) * rng.normal(1, 0.01)})
    assert fit_context(pairs, llc=32.0)["stream_us_per_mb"] == pytest.approx(35.0, rel=0.1)


def test_unknown_op_is_uncovered_never_zero(fake_profile):
    e = Estimator(FAKE, profile=fake_profile, overhead=False)
    est = e.estimate(with_unknown_op())
    assert [u.node for u in est.uncovered] == ["mystery"]
    assert "Frobnicate" in est.uncovered[0].reason
    assert all("mystery" not in k.nodes for k in est.kernels)
    with pytest.raises(UnsupportedOp):
        e.estimate(with_unknown_op(), strict=True)


def test_prior_prices_missing_shapes_and_says_so(fake_profile):
    big = small_cnn(c=16, h=32)
    est = Estimator(FAKE, profile=fake_profile, overhead=False).estimate(big)
    srcs = {k.source for k in est.kernels if k.kind == "Conv"}
    assert srcs == {"prior"}
    # kinds with too few rows for a prior are listed as uncovered, not priced at 0
    assert {u.reason.split()[-2] for u in est.uncovered} <= {"Pool", "Reorder"}


def test_regressor_beats_prior_when_trained(tmp_path):
    from latency.regressor import train_all
    from profilers.plans import plan

    db = tmp_path / "r.db"
    with Store(db) as st:
        run_sweep(st, FAKE, plan("standard", ops=["Conv"], precisions=["fp32"])[:600])
        train_all(st, st.find_target("fake"), tmp_path / "regs")
    e = Estimator(FAKE, profile=db, regressors=tmp_path / "regs", overhead=False)
    est = e.estimate(small_cnn(c=24, h=20))
    convs = [k for k in est.kernels if k.kind == "Conv"]
    assert {k.source for k in convs} == {"regressor"}
    for k in convs:
        truth = fake_latency_us(Config.from_key(k.key))
        assert abs(k.latency_us / truth - 1) < 0.35


def test_sparse_kernel_priced_as_dense_with_evidence(tmp_path):
    m = small_cnn()
    w = onnx.numpy_helper.to_array(m.graph.initializer[2]).copy()
    w[np.random.default_rng(0).random(w.shape) < 0.9] = 0
    m.graph.initializer[2].CopyFrom(onnx.numpy_helper.from_array(w, "w2"))
    ks = kernels_of(m)
    conv2 = next(k for k in ks if "conv2" in k.nodes)
    assert conv2.sparsity == "90"
    dense = [Config(k.kind, k.params, k.precision, "0") for k in ks if k.kind != "Free"]
    spot = [Config("Conv", c.params, "fp32", s) for c in dense if c.kind == "Conv" for s in ("50", "75")]
    db = tmp_path / "s.db"
    with Store(db) as st:
        run_sweep(st, FAKE, dense + spot)
    est = Estimator(FAKE, profile=db, overhead=False).estimate(m)
    k2 = next(k for k in est.kernels if "conv2" in k.nodes)
    assert k2.source == "table:dense-equivalent" and "spot checks" in k2.detail


def test_bad_inputs(tmp_path, fake_profile):
    e = Estimator(FAKE, profile=fake_profile)
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(small_cnn().SerializeToString()[:200])
    with pytest.raises(ModelError):
        e.estimate(str(bad))
    # a free batch is 1 unless given, and the estimate says so (issue 18)
    assert any("set to 1" in w for w in e.estimate(dynamic_batch()).warnings)
    assert e.estimate(dynamic_batch(), batch=1).total_ms > 0
    with pytest.raises(MissingTable):
        Estimator(FAKE, profile=tmp_path / "none.db").estimate(small_cnn())
    with pytest.MonkeyPatch.context() as mp:  # a target with no profile installed anywhere
        (tmp_path / "no_tables").mkdir()
        mp.setenv("LATENCY_TABLES", str(tmp_path / "no_tables"))
        mp.setenv("LATENCY_HOME", str(tmp_path / "no_home"))
        with pytest.raises(MissingTable):
            Estimator("arm64-ort").estimate(small_cnn())


def test_cli_estimate_json_and_errors(tmp_path, fake_profile):
    p = tmp_path / "m.onnx"
    onnx.save(with_unknown_op(), p)
    run = CliRunner().invoke
    r = run(main, ["estimate", str(p), "--target", "fake", "--profile", str(fake_profile), "--json"])
    assert r.exit_code == 0, r.output
    d = json.loads(r.output)
    assert d["total_ms"] > 0 and d["uncovered"][0]["node"] == "mystery"
    assert all({"latency_us", "source", "nodes"} <= set(k) for k in d["kernels"])
    r = run(main, ["estimate", str(p), "--target", "fake", "--profile", str(fake_profile), "--strict"])
    assert r.exit_code == 2 and "uncovered" in r.output
    r = run(main, ["estimate", str(p), "--target", "t5"])
    assert r.exit_code == 2 and "valid targets" in r.output
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"\x00\x01garbage" * 10)
    r = run(main, ["estimate", str(junk), "--target", "fake", "--profile", str(fake_profile)])
    assert r.exit_code == 2 and len(r.output.strip().splitlines()) == 1 and "Traceback" not in r.output
    d = tmp_path / "d.onnx"
    onnx.save(dynamic_batch(), d)
    r = run(main, ["estimate", str(d), "--target", "fake", "--profile", str(fake_profile)])
    assert r.exit_code == 0 and "set to 1" in r.output
    r = run(main, ["estimate", str(d), "--target", "fake", "--profile", str(fake_profile), "--shape", "x=1x3x16x16"])
    assert r.exit_code == 0 and "total" in r.output


def test_spec_sheet_target_is_labelled_derived():
    est = Estimator("t4").estimate(small_cnn())
    assert est.kernels and {k.source for k in est.kernels} <= {"derived:gpu-model", "free"}
    assert any("spec sheet" in w for w in est.warnings)


def test_real_pipeline_small_scale(tmp_path):
    """Profile a tiny model's kernels for real on this CPU, then estimate it from that profile."""
    from profilers.measure import Protocol

    target = host_target()
    ok, why = target.host_supported()
    if not ok:
        pytest.skip(why)
    m = small_cnn()
    cfgs = [k.config for k in fuse(load_graph(m), target.fusion_rules())[0] if k.kind != "Free"]
    from profilers.chains import chains

    tanh_chains = chains(families=("tanh",))  # for the calibration's per-run term below
    cfgs += list({k.config.key: k.config for c in tanh_chains.values()
                  for k in fuse(load_graph(c), target.fusion_rules())[0] if k.kind != "Free"}.values())
    db = tmp_path / "real.db"
    fast = Protocol(phases=1, rounds_per_phase=2, warmup=1, min_runs=3, max_runs=5, remeasure_phases=0)
    with Store(db) as st:
        r = run_sweep(st, target, cfgs, protocol=fast)
        assert r.failed == 0
        row = st.measurements().iloc[0]
        assert row["source"] == "measured" and len(row["rounds_us"]) == 2
    estimator = Estimator(target, profile=db, overhead=False, check_host=False)
    est = estimator.estimate(m)
    assert not est.uncovered
    assert {k.source for k in est.kernels} <= {"table", "free"}
    assert est.total_ms > 0
    # the same kernels timed inside the model: every priced kernel finds its runtime node
    from latency.context import ContextModel, fit_context
    from profilers.context import kernel_pairs

    pairs, stats = kernel_pairs(m, estimator, name="small_cnn", repeats=1, runs=3)
    priced = [k for k in est.kernels if k.source != "free"]
    assert stats["skipped"] == 0 and len(pairs) == len(priced)
    assert sorted(p["key"] for p in pairs) == sorted(k.key for k in priced)
    assert all(p["in_model_us"] > 0 for p in pairs)
    ctx = tmp_path / "real.context.json"
    ContextModel(fit_context(pairs, min_pairs=1, min_bin=1)).save(ctx)
    est2 = Estimator(target, profile=db, overhead=False, check_host=False, context=ctx).estimate(m)
    cm = ContextModel.load(ctx)
    for a, b in zip(est.kernels, est2.kernels):
        assert b.isolated_us == pytest.approx(a.latency_us)
        if b.source != "free":
            assert b.latency_us == pytest.approx(a.latency_us * cm.factor(a.kind, a.latency_us))
    # calibration end to end: context + overhead fitted from the model run for real, saved next to the profile
    from profilers.calibrate import calibrate

    r = calibrate(target, profile=db, models={"small_cnn": m}, repeats=1, runs=3, chain_families=("tanh",),
                  probes=False)
    assert r["pairs"] == len(priced)
    for k in ("context", "overhead", "calibration"):
        assert (tmp_path / f"real.{k}.json").exists()
    raw = json.loads((tmp_path / "real.calibration.json").read_text())
    assert raw["e2e"]["small_cnn"]["latency_ms"] > 0 and len(raw["e2e"]["small_cnn"]["rounds_ms"]) >= 9
    assert set(tanh_chains) <= set(raw["e2e"])  # the chains ran in the same round-robin run
    # the private-cache gate's bounds and the last-level gate's footprint scale were chosen among the
    # candidates, each pair with its own context and overhead fit
    from profilers.calibrate import FOOTPRINT_SCALES, PRIVATE_GATE_SCALES

    ctx = json.loads((tmp_path / "real.context.json").read_text())
    cg = ctx["curve_gate"]
    assert cg["fit"]["scale"] in PRIVATE_GATE_SCALES and cg["scale"] == cg["fit"]["scale"]
    assert len(cg["fit"]["trimmed_mean_abs_error_pct"]) == len(PRIVATE_GATE_SCALES) * len(FOOTPRINT_SCALES)
    assert ctx["gate"]["footprint_scale"] == cg["fit"]["footprint_scale"] in FOOTPRINT_SCALES
    assert cg["footprint_mb"] == [cg["scale"] * cg["l2_mb"], 2 * cg["scale"] * cg["l2_mb"]]
    chained = json.loads((tmp_path / "real.overhead.json").read_text())
    assert len(chained["dispatch_chains"]["families"]) == 3  # tanh at three sizes, each over its lengths
    assert chained["per_run_us"] == chained["dispatch_chains"]["per_run_us"]
    assert chained["per_run_source"].startswith("measured")
    est3 = Estimator(target, profile=db, check_host=False).estimate(m)
    assert est3.context_source.startswith("fitted from") and "fitted" in est3.overhead_source
    # refit from the kept raw data: nothing measured, the same fit
    ov1 = json.loads((tmp_path / "real.overhead.json").read_text())
    (tmp_path / "real.overhead.json").unlink()
    r2 = calibrate(target, profile=db, models={"small_cnn": m}, refit=True)
    ov2 = json.loads((tmp_path / "real.overhead.json").read_text())
    assert r2["pairs"] == r["pairs"] and ov2["per_long_kernel_us"] == pytest.approx(ov1["per_long_kernel_us"])


def test_check_fusion_against_runtime(tmp_path):
    target = host_target()
    ok, why = target.host_supported()
    if not ok:
        pytest.skip(why)
    p = tmp_path / "m.onnx"
    onnx.save(small_cnn(), p)
    from profilers.runtime_graph import runtime_kernel_summary

    assert Estimator(target, profile=tmp_path / "unused.db").check_fusion(str(p), runtime_kernel_summary(str(p))) == {}


def test_fit_overhead_recovers_run_and_short_long_kernel_terms():
    from latency.estimator import Estimate, KernelEstimate, fit_overhead

    rng = np.random.default_rng(2)
    ests, meas = [], []
    for _ in range(12):
        ks = [KernelEstimate(f"s{i}", "Activation", ("Relu",), (f"s{i}",), "fp32", "0", 5.0, "table", isolated_us=5.0)
              for i in range(int(rng.integers(5, 200)))]
        ks += [KernelEstimate(f"l{i}", "Conv", ("Conv",), (f"l{i}",), "fp32", "0", 300.0, "table", isolated_us=300.0)
               for i in range(int(rng.integers(5, 100)))]
        ksum = sum(k.latency_us for k in ks)
        n_short = sum(k.isolated_us < 30 for k in ks)
        ests.append(Estimate(ksum / 1000, ksum, 0.0, tuple(ks), (), "fake", None, ""))
        meas.append(ksum + 20.0 - 1.5 * n_short + 2.0 * (len(ks) - n_short))
    ov = fit_overhead(ests, meas, weight_term=False, short_us=30.0)
    assert ov["per_run_us"] == pytest.approx(20.0, abs=1e-6)
    assert ov["per_short_kernel_us"] == pytest.approx(-1.5, abs=1e-8)
    assert ov["per_long_kernel_us"] == pytest.approx(2.0, abs=1e-8)
    assert ov["per_weight_mb_us"] == 0.0 and "per_kernel_us" not in ov


def test_dispatch_chains_recover_per_run_and_per_kernel_terms():
    """Per family and size, a line through the chain lengths: intercept = per run, slope = per kernel;
    a chain the profile cannot fully price is left out, never counted as 0."""
    from latency.estimator import Estimate, KernelEstimate
    from profilers.chains import chains, per_run_us

    class Stub:  # prices every node at 3 us; the "conv" family is uncovered
        def estimate(self, model):
            ks = tuple(KernelEstimate(n.name, "Activation", (n.op_type,), (n.name,), "fp32", "0", 3.0, "table",
                                      isolated_us=3.0) for n in model.graph.node)
            unc = ("x",) if model.graph.node[0].op_type == "Conv" else ()
            s = sum(k.latency_us for k in ks)
            return Estimate(s / 1000, s, 0.0, ks, unc, "stub", None, "")

    ms = chains(families=("tanh", "matmul", "conv"))
    e2e = {}
    for name, m in ms.items():
        n = len(m.graph.node)
        e2e[name] = {"latency_ms": (4.5 + n * 3.0 - 2.5 * n) / 1000}
    e2e[next(iter(ms))]["latency_ms"] = None  # a failed measurement: skipped
    r = per_run_us(Stub(), e2e, ms)
    assert not any("conv" in f for f in r["families"]) and len(r["families"]) == 6
    assert r["per_run_us"] == pytest.approx(4.5) and r["per_kernel_us"] == pytest.approx(-2.5)
    assert per_run_us(Stub(), {}, ms) is None



def test_cache_probe_sets_the_gate():
    """Time per product flat while the probe's weights stay in cache, then up to the from-memory
    level: the gate follows it (0 to 1 over the measured step), and a model's gate reads off it."""
    from latency.context import ContextModel, cache_gate
    from latency.estimator import Estimate, KernelEstimate
    from profilers.chains import cache_probes, gate_curve

    class Stub:  # footprint = 0.25 MB per product; every product priced at 5 us
        def estimate(self, model):
            n = len(model.graph.node)
            ks = tuple(KernelEstimate(f"m{i}", "MatMul", ("MatMul",), (f"m{i}",), "fp32", "0", 5.0, "table",
                                      isolated_us=5.0) for i in range(n))
            return Estimate(n * 5e-3, n * 5.0, 0.0, ks, (), "stub", None, "", footprint_mb=0.25 * n)

    def per_product(mb):  # resident up to 8 MB, from memory from 24 MB
        return 5.0 + 11.0 * float(np.clip(np.log(mb / 8.0) / np.log(3.0), 0.0, 1.0))

    probes = cache_probes()
    e2e = {n: {"latency_ms": (4.0 + len(m.graph.node) * per_product(0.25 * len(m.graph.node))) / 1000}
           for n, m in probes.items()}
    curve = gate_curve(Stub(), e2e, per_run_us=4.0, probes=probes)
    assert curve["gate"][0] == 0.0 and curve["gate"][-1] == 1.0
    assert all(a <= b for a, b in zip(curve["gate"], curve["gate"][1:]))
    for mb in (2.0, 6.0, 12.0, 16.0, 30.0, 100.0):
        want = (per_product(mb) - 5.0) / 11.0
        assert cache_gate(mb, (10.0, 32.0), curve) == pytest.approx(want, abs=0.08)
    assert cache_gate(12.0, (10.0, 32.0)) != cache_gate(12.0, (10.0, 32.0), curve)  # the probe, not sysfs
    cm = ContextModel({"kinds": {}, "gate": {"footprint_mb": [10.0, 32.0], "curve": curve}})
    assert cm.gate(30.0) == 1.0 and cm.gate(2.0) == 0.0
    flat = {n: {"latency_ms": (4.0 + len(m.graph.node) * 5.0) / 1000} for n, m in probes.items()}
    assert gate_curve(Stub(), flat, per_run_us=4.0, probes=probes) is None  # no step: sysfs bounds


def test_curve_gate_follows_the_private_cache():
    """The in-model curve applies to models bigger than the core's private cache, whatever the
    last-level cache gate says; a context file without a private-cache gate keeps the older rule."""
    from latency.context import ContextModel, cache_gate, private_gate

    g = private_gate(1.0)
    assert g["footprint_mb"] == [1.0, 2.0] and g["l2_source"] == "read from sysfs"
    assert private_gate(None)["l2_source"].startswith("assumed")
    spec = {"kinds": {"*": {"log_us": [3.0, 6.0], "log_ratio": [0.1, 0.0], "pairs": 8}}, "min_us": 0.0,
            "gate": {"footprint_mb": [10.0, 30.0]}}
    old = ContextModel(spec)
    new = ContextModel({**spec, "curve_gate": g})
    for mb in (0.5, 1.5, 5.0, 20.0, 60.0):
        assert old.curve_gate(mb) == old.gate(mb) == cache_gate(mb, (10.0, 30.0))
    assert new.curve_gate(0.5) == 0.0 and new.curve_gate(5.0) == 1.0 and 0 < new.curve_gate(1.5) < 1
    assert new.gate(5.0) == 0.0  # the weight-streaming gate is unchanged
    # a 5 MB model: inside the last-level cache (no streaming) but past the private cache (curve applies)
    assert new.factor("Conv", 40.0, new.curve_gate(5.0)) > 1.0 == old.factor("Conv", 40.0, old.curve_gate(5.0))


def test_fit_overhead_recovers_the_big_low_intensity_conv_term():
    """Convs with weights above the private cache and little time alone per MB of weights get a term
    of their own; a conv that is short per MB but small, or big but compute-heavy, does not count."""
    from latency.estimator import Estimate, KernelEstimate, fit_overhead, lowint_conv_mb, overhead_us
    from latency.ops import Config

    def conv(cin, cout, hw, iso):
        key = Config("Conv", {"x": [1, cin, hw, hw], "cout": cout, "kernel": [3, 3], "strides": [1, 1],
                              "pads": [1, 1, 1, 1], "dilations": [1, 1], "group": 1, "act": "", "sum": 0},
                     "fp32", "0").key
        return KernelEstimate(f"c{cin}x{cout}x{hw}", "Conv", ("Conv",), ("c",), "fp32", "0", iso, "table", key=key,
                              isolated_us=iso)

    big_lowint = conv(512, 512, 3, 300.0)     # 9.4 MB of weights, 32 us per MB alone
    big_heavy = conv(512, 512, 14, 5000.0)    # the same weights, 530 us per MB alone
    small = conv(64, 64, 3, 5.0)              # 0.15 MB: below the 1 MB bound
    rule = {"min_weight_mb": 1.0, "max_us_per_mb": 150.0, "cap_mb": 32.0}
    assert lowint_conv_mb([big_lowint, big_heavy, small], rule) == pytest.approx(9.437184, rel=1e-6)
    assert lowint_conv_mb([big_lowint], rule, gate=0.5) == pytest.approx(9.437184 / 2, rel=1e-6)
    assert lowint_conv_mb([big_lowint], None) == 0.0
    rng = np.random.default_rng(3)
    ests, meas = [], []
    for _ in range(10):
        ks = [big_lowint] * int(rng.integers(0, 6)) + [big_heavy] * int(rng.integers(0, 6)) + \
             [small] * int(rng.integers(1, 40))
        ksum = sum(k.latency_us for k in ks)
        n_short = sum(k.isolated_us < 30 for k in ks)
        ests.append(Estimate(ksum / 1000, ksum, 0.0, tuple(ks), (), "fake", None, ""))
        meas.append(ksum + 5.0 - 1.0 * n_short + 2.0 * (len(ks) - n_short) + 25.0 * lowint_conv_mb(ks, rule))
    ov = fit_overhead(ests, meas, weight_term=False, short_us=30.0, per_run_us=5.0, lowint_conv=rule)
    assert ov["per_lowint_conv_mb_us"] == pytest.approx(25.0, rel=1e-6)
    assert ov["per_long_kernel_us"] == pytest.approx(2.0, abs=1e-6)
    assert overhead_us(ests[0].kernels, ov) == pytest.approx(meas[0] - ests[0].kernel_sum_us, rel=1e-6)


def test_calibration_choice_breaks_near_ties_toward_the_probes_working_set():
    # errors within TIED_ERROR of the best are a tie, won by the smallest working-set scale; a clear
    # winner keeps its place whatever its scale
    from profilers.calibrate import TIED_ERROR, choose

    trials = {(4.0, 2.0): (4.00,), (4.0, 1.5): (4.00 * (1 + TIED_ERROR) - 1e-9,), (1.0, 1.5): (4.30,),
              (3.0, 1.0): (4.50,)}
    assert choose(trials) == (4.0, 1.5)
    assert choose(trials, tied=0.0) == (4.0, 2.0)
    assert choose({(1.0, 2.0): (3.0,), (1.0, 1.0): (3.5,)}) == (1.0, 2.0)
    # among tied pairs of one working-set scale the lower error wins
    assert choose({(1.0, 1.25): (3.05,), (4.0, 1.25): (3.0,), (2.0, 2.0): (3.02,)}) == (4.0, 1.25)


def test_working_set_counts_a_copied_tensor_once():
    # the runtime's layout reorders and Casts copy a tensor the model already holds: an fp16 CNN (a Cast
    # and a reorder at every convolution) has about the working set of its fp32 model, not twice it
    pytest.importorskip("onnxconverter_common")
    from onnxconverter_common import float16

    from latency.estimator import COPY_OPS, footprint_term_mb, weight_mb
    from latency.profiles import shipped_dir
    from profilers import zoo

    x = [1, 64, 28, 28]
    for op in COPY_OPS:
        assert footprint_term_mb(Config("Reorder" if "Reorder" in op else "Activation", {"op": op, "x": x},
                                        "fp32").key) == 0.0
    assert footprint_term_mb(Config("Activation", {"op": "Relu", "x": x}, "fp32").key) == pytest.approx(
        64 * 28 * 28 * 4 / 1e6)
    est = Estimator("x86-avx512-ort", profile=str(shipped_dir() / "x86-avx512-ort.epyc-zen5.db"))
    m = zoo.build("mobilenet_v2_050", size=64)
    fp16 = float16.convert_float_to_float16(m, keep_io_types=True)
    del fp16.graph.value_info[:]
    a, b = est.estimate(load_graph(m)), est.estimate(load_graph(fp16))
    copies = sum(1 for k in b.kernels if set(k.op_types) & COPY_OPS)

    def acts(e):  # the working set less the weights
        return e.footprint_mb - sum(weight_mb(k.key) for k in e.kernels if k.source != "free")

    # x1.9 from the BatchNormalizations and Clips the fp16 graph runs apart (x3.6 with the copies counted)
    assert copies > 50 and acts(b) < 2.5 * acts(a)


@pytest.mark.parametrize("target", [None, 123, ["t4"]])
def test_a_target_that_is_not_a_name_is_refused_at_once(target):
    from latency.errors import UnknownTarget

    with pytest.raises(UnknownTarget, match="valid targets: .*x86-avx512-ort"):
        Estimator(target)


def test_a_model_of_the_wrong_type_is_a_model_error():
    with pytest.raises(ModelError, match="a model is a path, bytes, an onnx.ModelProto or a loaded Graph, not int"):
        load_graph(42)


def test_a_shape_the_weights_contradict_is_refused(tmp_path):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", "c", 16, 16])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    w = numpy_helper.from_array(np.zeros((8, 3, 3, 3), np.float32), "w")
    g = helper.make_graph([helper.make_node("Conv", ["x", "w"], ["y"], name="conv")], "g", [x], [y], [w])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    with pytest.raises(ModelError, match=r"Conv conv reads 5 channels .* takes 3: check --shape"):
        load_graph(m, shapes={"x": (1, 5, 16, 16)})
    assert load_graph(m, shapes={"x": (1, 3, 16, 16)}).tensor("y").shape == (1, 8, 14, 14)


def test_a_profile_without_its_side_files_says_so(fake_profile):
    # a copied or renamed profile loses its regressors, context and overhead (found by file name): the answer
    # changes a lot, so the estimate says why
    bare = Estimator(FAKE, profile=fake_profile).estimate(small_cnn())
    w = [x for x in bare.warnings if "beside it" in x]
    assert len(w) == 1 and "no regressors" in w[0] and "in-model context" in w[0] and "overhead model" in w[0]
    told = Estimator(FAKE, profile=fake_profile, overhead=False, context=False).estimate(small_cnn())
    w = [x for x in told.warnings if "beside it" in x]
    assert len(w) == 1 and "in-model context" not in w[0] and "overhead model" not in w[0]


def test_a_model_file_is_estimated_once_until_it_changes(fake_profile, tmp_path, monkeypatch):
    """A loop estimating one path pays the load and fusion once; a rewritten file, other shapes, or a
    strict call on a kept estimate with uncovered nodes are never answered from what was kept."""
    import os

    import latency.graph as graph_mod

    loads = []
    real = graph_mod.load_graph
    monkeypatch.setattr(graph_mod, "load_graph", lambda *a, **k: loads.append(a[0]) or real(*a, **k))
    path = tmp_path / "m.onnx"
    onnx.save(small_cnn(), path)
    est = Estimator(FAKE, profile=fake_profile, overhead=False)
    first = est.estimate(str(path))
    assert est.estimate(str(path)) is first and est.estimate(path) is first and len(loads) == 1
    assert est.estimate(small_cnn()).total_ms == first.total_ms and len(loads) == 2  # a ModelProto: every time
    onnx.save(small_cnn(c=16), path)  # rewritten in place: another size, another time
    st = os.stat(path)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    second = est.estimate(str(path))
    assert len(loads) == 3 and second.total_ms != first.total_ms
    assert est.estimate(str(path), shapes={"x": [2, 3, 16, 16]}) is not second and len(loads) == 4
    onnx.save(with_unknown_op(), path)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 2 * 10**9))
    assert est.estimate(str(path)).uncovered
    with pytest.raises(UnsupportedOp):
        est.estimate(str(path), strict=True)  # kept, and still refused
    assert len(loads) == 5


def test_a_device_kept_by_merge_keep_both_is_estimated_by_its_name(fake_profile, tmp_path):
    """`db merge --keep-both` keeps a second device's rows as NAME@<id8>; `--target NAME@<id8>` prices with them."""
    import shutil

    a, b = tmp_path / "a.db", tmp_path / "b.db"
    shutil.copy(fake_profile, a)
    with Store(fake_profile, readonly=True) as st:
        tid = st.find_target("fake")
        rows = st.measurements(tid, ok_only=True).to_dict("records")
        fp = dict(st.target(tid)["fingerprint"], cpu_model="another fake device")
    with Store(b) as sb:
        tb = sb.ensure_target("fake", fp)
        sb.upsert_measurements([dict(r, target_id=tb, run_id=None, latency_us=2 * r["latency_us"]) for r in rows])
    r = CliRunner().invoke(main, ["db", "merge", "--db", str(a), "--keep-both", str(b)])
    assert r.exit_code == 0, r.output
    one = Estimator("fake", profile=a, overhead=False).estimate(small_cnn())
    two = Estimator(f"fake@{tb[:8]}", profile=a, overhead=False).estimate(small_cnn())
    assert two.total_ms == pytest.approx(2 * one.total_ms)
    r = CliRunner().invoke(main, ["estimate", str(tmp_path / "m.onnx"), "--target", "fake@00000000", "--profile", str(a)])
    assert r.exit_code == 2
    onnx.save(small_cnn(), tmp_path / "m.onnx")
    r = CliRunner().invoke(main, ["estimate", str(tmp_path / "m.onnx"), "--target", "fake@00000000", "--profile", str(a)])
    assert r.exit_code == 2 and f"fake@{tb[:8]}" in r.output and "has no rows for target fake@00000000" in r.output


def test_working_set_counts_the_float_side_of_a_quantize_pair():
    # a DequantizeLinear writes fp32 (a whole embedding table of BERT: 3.9 M int8 elements in, 15.6 MB out on
    # every run), a QuantizeLinear reads fp32: each side at its own width, not both at one byte
    from latency.estimator import footprint_term_mb

    x = [30522, 128]
    n = 30522 * 128
    dq = footprint_term_mb(Config("Quant", {"op": "DequantizeLinear", "x": x}, "int8").key)
    q = footprint_term_mb(Config("Quant", {"op": "QuantizeLinear", "x": x}, "int8").key)
    assert dq == pytest.approx(0.5 * (n * 1 + n * 4) / 1e6)
    assert q == pytest.approx(0.5 * (n * 4 + n * 1) / 1e6)
