"""The GPU profiler backend: the micro-benchmark fit on fake measurements (CPU), the measured terms
making a derived target a calibrated one, the one-line refusal without a GPU, and the real run
where a GPU is present (skipped with the reason where it is not)."""

import json

import pytest
from click.testing import CliRunner

from latency import Estimator
from latency.cli import main
from latency.cost.gpu import GpuCostModel, load_terms
from latency.targets import get_target
from models import small_cnn
from profilers import gpu

H100 = get_target("h100").spec


class FakeRunner:
    """A GPU that reaches the given fractions of the H100's spec sheet and launches in ``launch`` us."""

    name, version = "fake", "fake runner 1"

    def __init__(self, dram=0.9, tensor=0.6, launch=3.0, l2_gbs=8000.0):
        self.dram, self.tensor, self.launch, self.l2_gbs = dram, tensor, launch, l2_gbs

    def launch_us(self):
        return self.launch

    def copy_us(self, nbytes):  # both buffers in L2 when they fit: served at the L2 rate
        rate = self.l2_gbs if 2 * nbytes <= H100["l2_mb"] * 1e6 else H100["mem_gbs"] * self.dram
        return self.launch + 2.0 * nbytes / (rate * 1e3)

    def gemm_us(self, m, n, k, prec):
        peak = H100["peak_tflops"]["tf32" if prec == "fp32" else prec]
        return self.launch + 2.0 * m * n * k / (peak * self.tensor * 1e6)

    def conv_us(self, n, c, h, w, k, r, prec):
        if prec == "int8":
            raise NotImplementedError("no int8 convolution")
        return self.gemm_us(n * h * w, k, c * r * r, prec)


def test_fit_recovers_the_fractions_of_a_fake_gpu():
    rows = gpu.microbenchmark(FakeRunner(dram=0.9, tensor=0.6, launch=3.0))
    assert any(r.get("error") for r in rows if r["term"] == "conv" and r["precision"] == "int8")  # recorded, not fatal
    fit = gpu.fit_terms(H100, rows)["terms"]
    assert fit["dram"] == pytest.approx(0.9, rel=0.02)   # the largest copy hides the launch
    assert fit["tensor"] == pytest.approx(0.6, rel=0.02)
    assert fit["launch_us"] == pytest.approx(0.5)  # 3.0 measured less the 2.5 of min_kernel_us: a tiny kernel 3.0
    assert "min_kernel_us" not in fit                # not fitted: the model prices a tiny kernel at both terms
    assert "cuda" not in fit  # the H100 runs fp32 on TF32 tensor cores: no CUDA-core term measured


def test_fit_reads_dram_only_from_copies_larger_than_l2_and_l2_from_resident_ones():
    rows = gpu.microbenchmark(FakeRunner(dram=0.7, l2_gbs=9000.0, launch=3.0), precisions=(), l2_mb=H100["l2_mb"])
    assert [r["term"] for r in rows].count("l2copy") == 2
    assert any(r["term"] == "copy" and 2 * r["shape"][0] <= H100["l2_mb"] * 1e6 for r in rows)  # 16 MB: in L2
    fit = gpu.fit_terms(H100, rows)["terms"]
    assert fit["dram"] == pytest.approx(0.7, rel=0.03)     # not the L2 rate of the 16 MB copy (clipped to 1.0)
    assert fit["l2_gbs"] == pytest.approx(9000.0, rel=0.01)  # the launch taken off the few-us copies
    # without the L2 rows (or an L2 no faster than DRAM) no L2 term is claimed
    assert "l2_gbs" not in gpu.fit_terms(H100, [r for r in rows if r["term"] != "l2copy"])["terms"]
    slow = gpu.microbenchmark(FakeRunner(dram=0.9, l2_gbs=100.0), precisions=(), l2_mb=H100["l2_mb"])
    assert "l2_gbs" not in gpu.fit_terms(H100, slow)["terms"]


def test_l2_bandwidth_from_the_spec_sheet_or_a_measurement_prices_l2_hits(tmp_path, monkeypatch):
    from latency.ops import Config

    # an M128 x N3072 x K768 fp16 GEMM re-reads its activation from L2 once per tile column
    cfg = Config("MatMul", {"a": [1, 128, 768], "b": [768, 3072], "const_b": 1}, "fp16")
    spec = get_target("l4").spec
    assert spec["l2_gbs"] == 1740 and "l2_gbs" in spec["sources"]
    fast = GpuCostModel(spec)
    slow = GpuCostModel({k: v for k, v in spec.items() if k != "l2_gbs"})  # the 3x-DRAM rule
    assert fast.l2_bw == pytest.approx(1740e3) and slow.l2_bw == pytest.approx(3 * 300e3 * 0.8)
    assert fast.price(cfg)[0] < slow.price(cfg)[0]
    assert "from L2 at 1740 GB/s" in fast.price(cfg)[2]
    assert fast.terms()["l2_gbs"]["value"] == 1740 and "L40" in fast.terms()["l2_gbs"]["basis"]
    assert "3x the achievable DRAM" in GpuCostModel(get_target("t4").spec).terms()["l2_gbs"]["basis"]
    # a measured L2 rate (the micro-benchmark's) overrides the derived one
    monkeypatch.setenv("LATENCY_HOME", str(tmp_path))
    rows = gpu.microbenchmark(FakeRunner(dram=0.9, l2_gbs=4000.0), precisions=(), l2_mb=spec["l2_mb"])
    gpu.write_terms(get_target("l4"), gpu.fit_terms(spec, rows), rows, "fake runner 1")
    model = get_target("l4").cost()
    assert model.l2_bw == pytest.approx(4000e3, rel=0.01) and "measured" in model.terms()["l2_gbs"]["basis"]


def test_fit_leaves_out_what_was_not_measured_and_clips_nonsense():
    fit = gpu.fit_terms(H100, [{"term": "copy", "shape": [1 << 30], "precision": "", "us": 1.0},
                               {"term": "gemm", "shape": [8, 8, 8], "precision": "fp16", "us": None, "error": "x"}])
    assert fit["terms"] == {"dram": 1.0}


def test_measured_terms_make_the_derived_target_calibrated(tmp_path, monkeypatch):
    monkeypatch.setenv("LATENCY_HOME", str(tmp_path))
    m = small_cnn(c=64, h=64)
    derived = Estimator("h100").estimate(m, precision="fp16").total_ms
    rows = gpu.microbenchmark(FakeRunner(dram=0.3, tensor=0.2, launch=8.0))
    path = gpu.write_terms(get_target("h100"), gpu.fit_terms(H100, rows), rows, "fake runner 1")
    doc = json.loads(path.read_text())
    assert doc["provenance"] == "measured" and doc["measured_with"] == "fake runner 1"
    assert load_terms("h100")["terms"]["tensor"] == pytest.approx(0.2, rel=0.02)
    model = get_target("h100").cost()
    assert model.eff["tensor"] == pytest.approx(0.2, rel=0.02) and model.lat["launch_us"] == pytest.approx(5.5)
    # a tiny kernel is then priced at what was measured back to back (8 us), not twice that
    assert model.lat["launch_us"] + model.lat["min_kernel_us"] == pytest.approx(8.0)
    assert "measured" in model.terms()["achievable_tensor"]["basis"]
    slower = Estimator("h100").estimate(m, precision="fp16").total_ms
    assert slower > derived  # a slower GPU than the spec sheet's assumptions: a slower estimate
    assert isinstance(GpuCostModel(H100).eff["tensor"], float)


def test_profile_on_a_gpu_target_without_a_gpu_is_one_line_saying_what_to_install(tmp_path):
    if gpu.available()[0] is not None:
        pytest.skip("a GPU backend is present on this host")
    r = CliRunner().invoke(main, ["profile", "--target", "h100", "--db", str(tmp_path / "h.db")])
    assert r.exit_code != 0 and "Traceback" not in r.output
    assert "onnxruntime-gpu" in r.output and len(r.output.strip().splitlines()) == 1


def test_microbenchmark_on_this_gpu(tmp_path):
    backend, why = gpu.available()
    if backend is None:
        pytest.skip(why)
    if backend == "ort-gpu" and not gpu._has("torch"):
        pytest.skip("onnxruntime-gpu without PyTorch: the micro-benchmark mode needs PyTorch")
    path = gpu.calibrate_target(get_target("h100"), budget_s=60, path=tmp_path / "t.json")
    doc = json.loads(path.read_text())
    assert doc["provenance"] == "measured" and doc["device"].get("gpu_name")
    assert 0.05 <= doc["terms"]["dram"] <= 1.0


def test_operator_sweep_through_onnxruntime_gpu():
    backend, why = gpu.available()
    if backend != "ort-gpu":
        pytest.skip(why or f"onnxruntime-gpu is not installed here ({backend} only)")
    from latency.ops import Config
    from profilers.backends import measure

    cfg = Config("MatMul", {"a": [64, 512], "b": [512, 512], "const_b": 1, "bias": 0, "scale": 0, "trans_b": 0,
                            "act": "none"})
    (row,) = measure(get_target("h100-ort-cuda"), [cfg])
    assert row["error"] is None and row["latency_us"] >= 0 and row["extra"]["gpu"].get("gpu_name")


def test_the_gpu_backend_without_a_gpu_refuses_in_one_line_saying_what_to_install():
    if gpu.available()[0] is not None:
        pytest.skip("a GPU backend is present on this host")
    from latency.errors import LatencyError
    from latency.ops import Config
    from profilers.backends import measure

    with pytest.raises(LatencyError, match="onnxruntime-gpu"):
        measure(get_target("t4-ort-cuda"), [Config("Activation", {"op": "Relu", "x": [1, 8]})])
