"""benchmarks/gpu_check.py's control flow, run end to end against a fake torch (tests/fake_gpu: shapes, dtypes and a
simulated clock, no numerics) in a subprocess: every section runs, a failing one is recorded and the rest still run,
the report is written as it goes, a CPU target is refused. What a real GPU gives is not tested here."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FAKE = ROOT / "tests" / "fake_gpu"


def _run(tmp_path, *args, **env):
    e = dict(os.environ, PYTHONPATH=str(FAKE) + os.pathsep + str(ROOT), **env)
    return subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu_check.py"), "--quick", "--out", str(tmp_path),
                           *args], capture_output=True, text=True, env=e, timeout=600)


@pytest.mark.parametrize("name,target", [("NVIDIA H100 80GB HBM3", "h100"), ("NVIDIA H200", "h200")])
def test_gpu_check_runs_every_section_and_writes_its_report(tmp_path, name, target):
    r = _run(tmp_path, FAKE_NAME=name)
    assert r.returncode == 0, r.stderr[-2000:]
    slug = name.lower().replace(" ", "-")
    doc = json.loads((tmp_path / f"gpu_check.{slug}.json").read_text())
    assert doc["target"] == target
    assert set(doc["sections"]) == {"launch", "bandwidth", "gemm", "conv", "models", "profiler backend"}
    # no section failed (the micro-benchmark's own rows record the shapes it could not run, e.g. int8 convs)
    assert not [r for name, rows in doc["sections"].items() for r in rows if "error" in r and name != "profiler backend"]
    assert not [r for r in doc["sections"]["profiler backend"] if set(r) == {"error"}]
    assert set(doc["measured_terms"]["model"]) >= {"launch_us", "dram", "tensor"}
    terms = json.loads((tmp_path / f"{target}.{slug}.gpu-terms.json").read_text())
    assert terms["provenance"] == "measured" and "launch_us" in terms["terms"] and "min_kernel_us" not in terms["terms"]
    text = (tmp_path / f"gpu_check.{slug}.txt").read_text()
    assert "per tiny kernel: measured" in text and "L2: " in text and "derived h" in text


def test_gpu_check_keeps_going_when_capture_and_int8_fail(tmp_path):
    r = _run(tmp_path, FAKE_GRAPH_FAIL="1", FAKE_INT_MM_NN_FAIL="1")
    assert r.returncode == 0, r.stderr[-2000:]
    out = r.stdout
    assert "eager: CUDA graph capture failed" in out and "capture failed: RuntimeError" in out
    assert "(x of the graph)" not in out and "x of eager" in out   # the ratio says what it is against


def test_gpu_check_refuses_a_cpu_target_and_names_another_gpu_without_a_target(tmp_path):
    r = _run(tmp_path, "--target", "x86-avx2-ort")
    assert r.returncode == 0 and "is not a GPU target" in r.stdout
    r = _run(tmp_path / "l40s", FAKE_NAME="NVIDIA L40S")   # not an L4: no derived target, terms measured only
    assert r.returncode == 0, r.stderr[-2000:]
    assert "derived target: none" in r.stdout and "no derived target to compare" in r.stdout
