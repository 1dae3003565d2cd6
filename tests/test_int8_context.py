"""int8 kernels' own in-model curves (`latency calibrate --int8-context`), run for real at small scale."""

import json
import shutil
import sys
from pathlib import Path

import pytest

from latency.context import fit_small_quant_from_pairs

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

def _stem() -> str:
    """The shipped x86-avx512-ort profile closest to this host (the Zen 5's on that AMD host, the Xeon's on an
    Intel one with AMX): the in-model times measured here are compared with its prices."""
    from latency.profiles import closest, host_device
    from latency.targets import get_target

    best, _ = closest([c for c in get_target("x86-avx512-ort").profiles() if c.origin == "shipped"], host_device())
    return Path(best.path).stem


@pytest.fixture
def profile(tmp_path):
    """A private copy of the shipped profile closest to this host (its rows, regressors and calibrated
    context and overhead)."""
    tables = ROOT / "latency" / "tables"
    STEM = _stem()
    for suffix in (".db", ".context.json", ".overhead.json"):
        shutil.copy(tables / f"{STEM}{suffix}", tmp_path / f"p{suffix}")
    shutil.copytree(tables / f"{STEM}.regressors", tmp_path / "p.regressors")
    ctx = json.loads((tmp_path / "p.context.json").read_text())
    ctx["kinds"] = {k: v for k, v in ctx["kinds"].items() if ":" not in k}
    ctx.pop("precision_curves", None)
    ctx.pop("small_kinds", None)
    (tmp_path / "p.context.json").write_text(json.dumps(ctx))
    return tmp_path / "p.db"


def test_int8_context_measures_int8_curves_and_leaves_fp32_alone(profile):
    import onnxruntime  # noqa: F401  (a real runtime measures)

    from latency import Estimator
    from latency.errors import LatencyError
    from latency.targets import get_target
    from profilers import zoo
    from profilers.calibrate import int8_context
    from profilers.quantized import qdq_int8

    t = get_target("x86-avx512-ort")
    bert = zoo.build("bert_tiny")
    int8 = qdq_int8(bert)
    before = Estimator(t, profile=profile, check_host=False)
    fp32_before, int8_before = before.estimate(bert).total_ms, before.estimate(int8).total_ms
    old = json.loads(profile.with_suffix(".context.json").read_text())

    r = int8_context(t, profile=profile, models=("bert_small:64", "resnet34:96"), repeats=1, runs=5)
    assert r["curves"].get("MatMul:int8", 0) >= 16 and 0.5 < r["state"] < 2.0
    new = json.loads(profile.with_suffix(".context.json").read_text())
    assert {k: v for k, v in new["kinds"].items() if ":" not in k} == old["kinds"]  # fp32 curves as calibrated
    assert new["precision_curves"]["int8"]["models"] == ["bert_small:64", "resnet34:96"]
    assert new["kinds"]["MatMul:int8"]["max_us"] > 30.0 and Path(r["raw"]).exists()
    after = Estimator(t, profile=profile, check_host=False)
    assert after.estimate(bert).total_ms == pytest.approx(fp32_before, rel=1e-9)
    e = after.estimate(int8)
    assert e.total_ms != pytest.approx(int8_before, rel=1e-6)
    assert any("in-model context" in k.detail for k in e.kernels if k.precision == "int8")
    # small Q / DQ: fitted from the models' own Q / DQ pairs against their fp32 originals' short kernels, the
    # chains measured and kept beside them
    small = new["small_kinds"]["Quant:int8"]
    raw = json.loads(Path(r["raw"]).read_text())
    assert small["basis"].startswith("real int8 models") and small["pairs"] >= 3 * 8
    assert small == fit_small_quant_from_pairs(raw["pairs"]["int8"], raw["pairs"]["fp32"], 30.0)
    assert all(-1.5 <= v <= 1.5 for v in small["log_ratio"])
    assert 0 < r["small"]["pair_us"][1024] and raw["qdq_chains"]["pair_us"]

    with pytest.raises(LatencyError, match="too few|pass larger models"):
        int8_context(t, profile=profile, models=("lenet5",), repeats=1, runs=3)


def test_int8_context_cli_refuses_a_shipped_profile():
    from click.testing import CliRunner

    from latency.cli import main
    from latency.targets import host_target

    here = host_target().name  # a target this host can measure, or the CPU check would answer first
    r = CliRunner().invoke(main, ["calibrate", "--target", here, "--int8-context"])
    assert r.exit_code != 0 and "shipped profile" in r.output and "Traceback" not in r.output
    r = CliRunner().invoke(main, ["calibrate", "--target", here, "--int8-context", "--from", here])
    assert r.exit_code != 0 and "do not go together" in r.output and "Traceback" not in r.output


def test_small_quant_curve_from_pairs_is_relative_to_the_fp32_short_kernels():
    """A Q / DQ running like the fp32 originals' short kernels gets a factor of 1; one running 20% slower than
    they do (in-model over alone) gets 1.2; knots with fewer than SMALL_MIN_PAIRS pairs near them are left out."""
    import math

    from latency.context import SMALL_KNOTS, SMALL_MIN_PAIRS, fit_small_quant_from_pairs
    from latency.ops import Config

    def q(n, r):
        return {"kind": "Quant", "key": Config("Quant", {"op": "DequantizeLinear", "x": [1, n]}, "int8").key,
                "isolated_us": 2.0, "in_model_us": 2.0 * r}

    fp32 = [{"kind": "Conv", "key": "k", "isolated_us": 5.0, "in_model_us": 5.0 * 1.5} for _ in range(20)]
    pairs = [q(1024, 1.5) for _ in range(10)] + [q(4096, 1.8) for _ in range(10)] + [q(65536, 1.5) for _ in range(9)]
    pairs += [q(16, 9.0) for _ in range(SMALL_MIN_PAIRS - 1)]  # too few there
    c = fit_small_quant_from_pairs(pairs, fp32, 30.0)
    got = dict(zip(c["log_elements"], c["log_ratio"]))
    assert math.log(16) not in got and len(got) == 3
    assert abs(got[SMALL_KNOTS[3]]) < 1e-9 and abs(got[SMALL_KNOTS[4]] - math.log(1.2)) < 1e-9
    assert fit_small_quant_from_pairs(pairs[:10], fp32, 30.0) is None  # one knot: too few
    assert fit_small_quant_from_pairs(pairs, fp32[:3], 30.0) is None  # no base to compare with
