"""The ARM64 path: derived named-core profiles, host matching by CPU part, the standalone profiler
without the heavy dependencies, and (under qemu-user, when available) the profiler and onnxruntime's
own arm64 optimized graph on an emulated Neoverse-N1."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
TABLES = ROOT / "tables"
CORES = {"neoverse-n1": "Neoverse-N1", "cortex-a76": "Cortex-A76"}

#: modules the standalone profiler must not need (a device has onnxruntime, onnx and numpy only)
HEAVY = ("sqlite_utils", "pandas", "click", "xgboost", "matplotlib", "sklearn")


# -- derived profiles ----------------------------------------------------------------------------

@pytest.mark.parametrize("core", sorted(CORES))
def test_derived_profile_is_small_labelled_and_names_its_core(core):
    from latency.profiles import read_profile

    path = TABLES / f"arm64-ort.{core}.db"
    assert path.stat().st_size < 5 * 2 ** 20  # the wheel ships it
    (info,) = read_profile(path, "shipped")
    assert info.target == "arm64-ort" and info.provenance == "derived"
    assert info.device["arch"] == "aarch64" and info.device["cpu_model"] == CORES[core]
    assert {"asimd", "asimddp", "fphp"} <= set(info.device["cpu_flags"]) and info.device["vendor"] == "ARM"
    assert "derive_arm" in info.note and info.rows_ok > 1000
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as c:
        sources = dict(c.execute("SELECT source, count(*) FROM measurements GROUP BY source").fetchall())
        kinds = {r[0] for r in c.execute("SELECT DISTINCT kind FROM measurements")}
        precs = {r[0] for r in c.execute("SELECT DISTINCT precision FROM measurements WHERE kind='Conv'")}
    assert set(sources) == {"derived"}
    assert "Reorder" not in kinds and {"Conv", "MatMul", "Elementwise"} <= kinds  # no NCHWc on ARM
    assert {"fp32", "fp16", "int8"} <= precs


def test_derivation_scales_compute_and_memory_bound_rows_differently():
    from latency.ops import Config
    from profilers.derive_arm import CORES as SPECS, scale

    with sqlite3.connect(f"file:{TABLES / 'x86-avx512-ort.db'}?mode=ro", uri=True) as c:
        def biggest(kind):
            sql = ("SELECT key FROM measurements WHERE kind=? AND precision='fp32' AND error IS NULL "
                   "ORDER BY latency_us DESC LIMIT 1")
            return Config.from_key(c.execute(sql, (kind,)).fetchone()[0])
        gemm, add = biggest("MatMul"), biggest("Elementwise")
    n1, a76 = SPECS["neoverse-n1"], SPECS["cortex-a76"]
    # 4x fewer FLOP/cycle at a similar clock: a large GEMM is ~4x slower than on the Zen 5 core
    assert 3.0 < scale(gemm, 100.0, n1) / 100.0 < 4.5
    # fp16 has real kernels on these cores: twice the fp32 rate
    assert scale(gemm, 100.0, n1, "fp16") < 0.6 * scale(gemm, 100.0, n1)
    # a large memory-bound op moves with DRAM bandwidth, less than a GEMM with FLOPs; the A76's SoC has less
    assert scale(add, 100.0, n1) < scale(gemm, 100.0, n1)
    assert scale(add, 100.0, a76) > 1.5 * scale(add, 100.0, n1)


def test_arm_host_gets_the_closest_named_core():
    from latency.profiles import closest, read_profile

    cands = [i for core in CORES for i in read_profile(TABLES / f"arm64-ort.{core}.db", "shipped")]
    base = {"kind": "cpu", "vendor": "ARM", "arch": "aarch64", "cpu_flags": ["asimd", "asimddp", "fphp"],
            "runtime": "onnxruntime"}
    best, _ = closest(cands, dict(base, cpu_model="Cortex-A76", cpu_family_model="8/0xd0b", l2_mb=0.5, llc_mb=2.0))
    assert best.device["cpu_model"] == "Cortex-A76"
    best, diffs = closest(cands, dict(base, cpu_model="Neoverse-N1", cpu_family_model="8/0xd0c", l2_mb=1.0,
                                      llc_mb=32.0))
    assert best.device["cpu_model"] == "Neoverse-N1" and diffs == []
    # a newer core with i8mm and SVE: the features are compared and said
    best, diffs = closest(cands, dict(base, cpu_model="Neoverse-V1", cpu_flags=base["cpu_flags"] + ["i8mm", "sve"],
                                      l2_mb=1.0, llc_mb=32.0))
    assert best.device["cpu_model"] == "Neoverse-N1" and any("+i8mm" in d and "+sve" in d for d in diffs)
    # an x86 host never gets an ARM profile
    best, _ = closest(cands, dict(base, arch="x86_64"))
    assert best is None


def test_read_cpu_names_the_arm_part(tmp_path, monkeypatch):
    import builtins

    from latency import profiles
    from profilers.standalone_qemu import FAKE_CPUINFO

    fake = tmp_path / "cpuinfo"
    fake.write_text(FAKE_CPUINFO.format(n=0))
    real_open = builtins.open
    monkeypatch.setattr(builtins, "open", lambda f, *a, **k: real_open(fake if f == "/proc/cpuinfo" else f, *a, **k))
    cpu = profiles.read_cpu()
    assert cpu["cpu_model"] == "Neoverse-N1" and cpu["vendor"] == "ARM" and cpu["cpu_family_model"] == "8/0xd0c"
    assert {"asimd", "asimddp", "fphp"} <= set(cpu["cpu_flags"]) and "evtstrm" not in cpu["cpu_flags"]


def test_estimate_arm64_on_any_host_says_derived(tmp_path):
    from click.testing import CliRunner

    import onnx
    from latency.cli import main
    from tests.models import small_cnn

    p = tmp_path / "m.onnx"
    onnx.save(small_cnn(), p)
    r = CliRunner().invoke(main, ["estimate", str(p), "--target", "arm64-ort", "--json"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.output[r.output.index("{"):])
    assert out["total_ms"] > 0
    assert any("derived, not measured" in w for w in out["warnings"])
    assert "neoverse-n1" in json.dumps(out)
    r = CliRunner().invoke(main, ["targets"])
    assert r.exit_code == 0 and r.output.count("derived on ARM") == 2


# -- the standalone profiler ------------------------------------------------------------------------

_BLOCK = """
import sys
class _Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {heavy!r}:
            raise ImportError("blocked: " + name)
sys.meta_path.insert(0, _Block())
from profilers.standalone import main
rc = main(sys.argv[1:])
assert not ({heavy!r} & set(m.split(".")[0] for m in sys.modules if sys.modules[m] is not None
            and not getattr(sys.modules[m], "__name__", "").startswith("profilers.standalone"))), sorted(sys.modules)
sys.exit(rc)
"""


def test_standalone_profiler_needs_only_the_standard_library_store(tmp_path):
    db = tmp_path / "f.db"
    code = _BLOCK.format(heavy=set(HEAVY))
    r = subprocess.run([sys.executable, "-c", code, "--target", "fake", "--db", str(db), "--plan", "quick",
                        "--limit", "5"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "5 measured" in r.stdout and "sqlite3 (stdlib)" in r.stdout
    from latency.store import Store

    with Store(db, readonly=True) as st:  # the same schema the full tool reads
        (t,) = st.targets()
        assert t["name"] == "fake" and st.target_summary(t["target_id"])["rows_ok"] == 5
    # bad input: one line, non-zero
    r = subprocess.run([sys.executable, "-m", "profilers.standalone", "--target", "x86-avx2-ort", "--db",
                        str(tmp_path / "x.db"), "--limit", "1"], cwd=ROOT, capture_output=True, text=True, timeout=120,
                       env=dict(os.environ, LATENCY_EMULATED=""))
    if r.returncode != 0:
        assert r.stderr.startswith("error: ") and "Traceback" not in r.stderr


# -- under qemu-user ---------------------------------------------------------------------------------

_RUNTIME_GRAPH = """
import json, sys
from profilers.runtime_graph import runtime_kernel_summary
def enc(k):
    return [enc(x) for x in k] if isinstance(k, tuple) else k
json.dump({p: [[enc(k), v] for k, v in runtime_kernel_summary(p).items()] for p in sys.argv[2:]},
          open(sys.argv[1], "w"))
"""


def _tup(k):
    return tuple(_tup(x) for x in k) if isinstance(k, list) else k


def _runtime_summaries(qemu_arm, arm_src, tmp_path, models: dict, cpu: str) -> dict:
    """path -> onnxruntime's kernel summary of each of ``models`` (name -> ModelProto), saved under ``tmp_path``,
    from its own optimized graph under qemu-user with QEMU_CPU=``cpu``."""
    import onnx

    q, cache = qemu_arm
    paths = []
    for name, m in models.items():
        paths.append(tmp_path / f"{name}.onnx")
        onnx.save(m, paths[-1])
    script, out = tmp_path / "rg.py", tmp_path / "rg.json"
    script.write_text(_RUNTIME_GRAPH)
    r = q.run([script, out, *paths], cache=cache, cpu=cpu, pythonpath=[arm_src], cwd=arm_src, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    return {p: Counter({_tup(k): v for k, v in items}) for p, items in json.loads(out.read_text()).items()}


@pytest.fixture(scope="module")
def qemu_arm():
    from profilers import standalone_qemu as q

    why = q.missing()
    if why:
        pytest.skip(f"qemu-user ARM environment unavailable: {why}")
    try:
        cache = q.build()
    except (RuntimeError, OSError) as e:
        pytest.skip(f"could not build the aarch64 root (network?): {str(e)[:300]}")
    return q, cache


@pytest.fixture(scope="module")
def arm_src(tmp_path_factory):
    """latency/ and profilers/ as a hardware team copies them (no shipped tables)."""
    src = tmp_path_factory.mktemp("armsrc")
    for d in ("latency", "profilers"):
        shutil.copytree(ROOT / d, src / d, ignore=shutil.ignore_patterns("__pycache__", "tables"))
    return src


def test_profiler_under_qemu_writes_an_emulated_neoverse_n1_profile(qemu_arm, arm_src, tmp_path):
    q, cache = qemu_arm
    db = tmp_path / "arm.db"
    r = q.run(["-m", "profilers.standalone", "--db", db, "--plan", "quick", "--limit", "4", "--fast"],
              cache=cache, pythonpath=[arm_src], cwd=arm_src, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "[emulated]" in r.stdout and "Neoverse-N1" in r.stdout
    from latency.profiles import read_profile

    (info,) = read_profile(db, "user")
    assert info.target == "arm64-ort" and info.provenance == "emulated" and "qemu" in info.note
    assert info.device["arch"] == "aarch64" and info.device["cpu_model"] == "Neoverse-N1"
    assert info.device["vendor"] == "ARM" and {"asimd", "asimddp"} <= set(info.device["cpu_flags"])
    assert info.device["cpu_family_model"] == "8/0xd0c" and info.rows_ok + info.rows_failed == 4
    with sqlite3.connect(db) as c:
        rows = c.execute("SELECT source, latency_us FROM measurements").fetchall()
    assert rows and all(s == "emulated" for s, _ in rows)
    assert all(us is None or us > 0 for _, us in rows)


def test_arm64_fusion_matches_onnxruntime_under_qemu(qemu_arm, arm_src, tmp_path):
    from latency.fusion import ORT_CPU_ARM64_RULES, ORT_CPU_X86_RULES, compare_summaries, fuse, kernel_summary
    from latency.graph import load_graph
    from profilers import zoo

    models = {name: zoo.build(name) for name in ("resnet20_cifar", "mobilenet_v2_050_128")}
    for p, runtime in _runtime_summaries(qemu_arm, arm_src, tmp_path, models, "neoverse-n1").items():
        assert runtime["conv_sum"] > 0 and not runtime["reorder"]  # residual Add fused, no NCHWc
        g = load_graph(p)
        ours, _ = fuse(g, ORT_CPU_ARM64_RULES)
        assert compare_summaries(kernel_summary(ours), runtime) == {}, p
        x86, _ = fuse(g, ORT_CPU_X86_RULES(16))
        assert compare_summaries(kernel_summary(x86), runtime) != {}  # the x86 list does not describe ARM


def test_arm64_sme_fp32_convs_match_onnxruntime_under_qemu(qemu_arm, arm_src, tmp_path):
    """On a core with SME (QEMU_CPU=max) onnxruntime runs the fp32 convs KleidiAI takes (group 1, kernel >= 3x3)
    as NhwcFusedConv between layout Transposes; resnet18's identity blocks after the NCHW MaxPool keep their Add
    and Relu apart. The SME rules reproduce its graph kernel for kernel; the plain arm64 rules do not."""
    from latency.fusion import ORT_CPU_ARM64_RULES, ORT_CPU_ARM64_SME_RULES, compare_summaries, fuse, kernel_summary
    from latency.graph import load_graph
    from profilers import zoo

    models = {name: zoo.build(name, size=size) if size else zoo.build(name)
              for name, size in (("resnet20_cifar", None), ("resnet18", 64), ("squeezenet1_1", 64))}
    for p, runtime in _runtime_summaries(qemu_arm, arm_src, tmp_path, models, "max").items():
        g = load_graph(p)
        ours, _ = fuse(g, ORT_CPU_ARM64_SME_RULES)
        assert compare_summaries(kernel_summary(ours), runtime) == {}, p
        plain, _ = fuse(g, ORT_CPU_ARM64_RULES)
        assert compare_summaries(kernel_summary(plain), runtime) != {}, p


def test_arm64_sme_rules_convs_and_residual_adds():
    """Which fp32 convs go NHWC with SME (no emulator): 3x3 / 7x7 group-1 convs yes; 1x1 and depthwise no; a
    residual Add joins the NHWC conv only where its other input is an NHWC conv's output (resnet20's first
    stage), not after resnet18's NCHW MaxPool. The counts are onnxruntime 1.31's under QEMU_CPU=max."""
    from latency.fusion import ORT_CPU_ARM64_SME_RULES, fuse
    from latency.graph import load_graph
    from latency.targets import get_target
    from profilers import zoo

    def count(name, size=None):
        ks, _ = fuse(load_graph(zoo.build(name, size=size) if size else zoo.build(name)), ORT_CPU_ARM64_SME_RULES)
        alone = Counter(k.op_types[0] for k in ks if len(k.op_types) == 1)
        return len(ks), sum(k.kind == "Transpose" for k in ks), alone["Add"], alone["Relu"]

    assert count("resnet20_cifar") == (45, 13, 4, 4)
    assert count("resnet18", 64) == (52, 18, 5, 5)
    assert count("mobilenet_v2_050", 96) == (57, 2, 0, 0)  # only the stem conv: the rest are 1x1 or depthwise
    t = get_target("arm64-ort")
    assert t.fusion_rules({"cpu_flags": ["asimd", "asimddp", "sme", "sme2"]}).name == "ort-cpu-arm64-sme"
    assert t.fusion_rules({"cpu_flags": ["asimd", "asimddp"]}).name == "ort-cpu-arm64" == t.fusion_rules().name


def test_arm64_sme_conv_conditions():
    """KleidiAI's SME convolution (MLAS CheckCapabilitiesSme): the four pads equal (auto_pad resolved as the
    runtime pads), a kernel of at least 3x3, more than one filter, group 1. Each case as onnxruntime 1.31 built
    it under qemu-user with QEMU_CPU=max (NhwcFusedConv between two Transposes, or the plain Conv)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from latency.fusion import ORT_CPU_ARM64_SME_RULES, fuse
    from latency.graph import load_graph

    def nhwc(cout, k, group=1, **attrs):
        rng = np.random.default_rng(0)
        w = numpy_helper.from_array(rng.standard_normal((cout, 8 // group, k, k)).astype(np.float32), "w")
        node = helper.make_node("Conv", ["x", "w"], ["y"], kernel_shape=[k, k], group=group, **attrs)
        g = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8, 10, 10])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], [w])
        m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
        ks, _ = fuse(load_graph(onnx.shape_inference.infer_shapes(m)), ORT_CPU_ARM64_SME_RULES)
        return any(k.kind == "Transpose" for k in ks)

    assert nhwc(16, 3, pads=[1, 1, 1, 1]) and nhwc(16, 5, pads=[2, 2, 2, 2], strides=[2, 2])
    assert nhwc(16, 3, auto_pad="SAME_UPPER") and nhwc(16, 3, auto_pad="VALID")
    assert not nhwc(16, 4, auto_pad="SAME_UPPER")  # 3 pad rows: 1 before, 2 after
    assert not nhwc(16, 3, pads=[0, 0, 1, 1]) and not nhwc(16, 2) and not nhwc(16, 1)
    assert not nhwc(1, 3, pads=[1, 1, 1, 1]) and not nhwc(8, 3, group=8, pads=[1, 1, 1, 1])


def test_profile_of_an_sme_core_prices_the_nhwc_convs(tmp_path):
    """The rules follow the profile's device: the derived Neoverse-N1 profile with sme2 added to its device's
    flags gets the SME rules (layout Transposes around resnet18's 3x3 convs) and the estimate names them."""
    import json as js

    from latency import Estimator
    from profilers import zoo

    db = tmp_path / "sme.db"
    shutil.copy(ROOT / "latency" / "tables" / "arm64-ort.neoverse-n1.db", db)
    with sqlite3.connect(db) as c:
        tid, fp = c.execute("SELECT target_id, fingerprint FROM targets WHERE name='arm64-ort'").fetchone()
        fp = js.loads(fp)
        fp["cpu_flags"] = fp["cpu_flags"] + ["sme", "sme2"]
        c.execute("UPDATE targets SET fingerprint=?, cpu_flags=? WHERE target_id=?",
                  (js.dumps(fp, sort_keys=True, separators=(",", ":")), js.dumps(fp["cpu_flags"]), tid))
    model = zoo.build("resnet18", size=64)
    sme = Estimator("arm64-ort", profile=db, check_host=False).estimate(model)
    plain = Estimator("arm64-ort", check_host=False).estimate(model)
    assert sme.fusion == "ort-cpu-arm64-sme" and plain.fusion == "ort-cpu-arm64"
    assert sum(k.kind == "Transpose" for k in sme.kernels) == 18 and not any(k.kind == "Transpose" for k in plain.kernels)
    assert sme.to_dict()["fusion"] == "ort-cpu-arm64-sme"


def test_arm64_fp16_fusion_matches_onnxruntime_under_qemu(qemu_arm, arm_src, tmp_path):
    """fp16 has kernels on arm64: group-1 convs run NHWC (NhwcFusedConv) between two layout Transposes,
    and a downsampling block's residual Add goes to its shortcut conv; an op with no arm64 fp16 kernel
    (MobileNetV3's HardSigmoid, inlined HardSwish's included) runs in fp32 between two Casts."""
    import dataclasses

    import onnx
    from onnxconverter_common import float16

    from latency.fusion import ORT_CPU_ARM64_RULES, compare_summaries, fuse, kernel_summary
    from latency.graph import load_graph
    from profilers import zoo

    q, cache = qemu_arm
    p = tmp_path / "resnet20_fp16.onnx"
    onnx.save(float16.convert_float_to_float16(zoo.build("resnet20_cifar"), keep_io_types=True), p)
    mb = tmp_path / "mobilenet_v3_small_fp16.onnx"
    onnx.save(float16.convert_float_to_float16(zoo.build("mobilenet_v3_small", size=64), keep_io_types=True), mb)
    script, out = tmp_path / "rg.py", tmp_path / "rg.json"
    script.write_text(_RUNTIME_GRAPH)
    r = q.run([script, out, p, mb], cache=cache, cpu="neoverse-n1", pythonpath=[arm_src], cwd=arm_src, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    found = {k: Counter({_tup(x): v for x, v in items}) for k, items in json.loads(out.read_text()).items()}
    runtime, mb_runtime = found[str(p)], found[str(mb)]
    # 9 SE HardSigmoids and 19 inlined HardSwishes, each in fp32 between two Casts, plus the graph's own two
    assert mb_runtime["cast"] == 2 + 2 * 28
    mg = load_graph(mb)
    assert compare_summaries(kernel_summary(fuse(mg, ORT_CPU_ARM64_RULES)[0]), mb_runtime) == {}
    no_casts = fuse(mg, dataclasses.replace(ORT_CPU_ARM64_RULES, fp16_no_kernel=()))[0]
    assert compare_summaries(kernel_summary(no_casts), mb_runtime)["cast"] == (2, 58)
    assert runtime["transpose"] == 2 and runtime["cast"] == 2 and runtime["conv_sum"] == 9
    # the shortcut 1x1 conv of each downsampling block takes the residual Add and its Relu
    assert runtime[("conv", 32, (1, 1), (2, 2), "Relu")] == runtime[("conv", 64, (1, 1), (2, 2), "Relu")] == 1
    g = load_graph(p)
    ours, _ = fuse(g, ORT_CPU_ARM64_RULES)
    assert compare_summaries(kernel_summary(ours), runtime) == {}
    nchw, _ = fuse(g, dataclasses.replace(ORT_CPU_ARM64_RULES, fp16_nhwc=False))
    diff = compare_summaries(kernel_summary(nchw), runtime)
    assert diff["transpose"] == (0, 2) and diff[("conv", 32, (1, 1), (2, 2), "none")] == (1, 0)


def test_arm64_fp16_convs_run_nhwc_and_depthwise_ones_nchw():
    """Without qemu: the arm64 rules' fp16 layout on MobileNetV2 (onnxruntime 1.31's arm64 graph of it
    has 36 Transposes: in and out of the NHWC region at the graph's edges and around each of the 17
    depthwise convs, which keep their NCHW fp16 kernel); the x86 rules run the same file in fp32 with
    no layout Transposes."""
    from onnxconverter_common import float16

    from latency.fusion import ORT_CPU_ARM64_RULES, ORT_CPU_X86_RULES, fuse, kernel_summary
    from latency.graph import load_graph
    from profilers import zoo

    g = load_graph(float16.convert_float_to_float16(zoo.build("mobilenet_v2_050", size=64), keep_io_types=True))
    ks, unc = fuse(g, ORT_CPU_ARM64_RULES)
    assert not unc
    s = kernel_summary(ks)
    assert s["transpose"] == 36 and s["cast"] == 2 and s["conv"] == 52
    convs = [k for k in ks if k.kind == "Conv"]
    assert {k.precision for k in convs} == {"fp16"}
    depthwise = [k for k in convs if k.params["group"] > 1]
    assert len(depthwise) == 17
    x86 = kernel_summary(fuse(g, ORT_CPU_X86_RULES(16))[0])
    assert x86["transpose"] == 0


def test_arm64_fp16_ops_without_fp16_kernel_run_in_fp32_between_casts():
    """Without qemu: on arm64 the fp16 nodes of ops with no fp16 kernel (EfficientNet's Sigmoid, DenseNet's
    BatchNormalization, ViT's inlined Softmax ReduceMax / Exp / ReduceSum) are fp32 kernels with a Cast on
    each fp16 tensor between them and the fp16 kernels (onnxruntime 1.31's arm64 graphs:
    benchmarks/results/arm_fp16_fusion_neoverse-n1-qemu.txt); the x86 rules run the whole file in fp32."""
    from onnxconverter_common import float16

    from latency.fusion import ORT_CPU_ARM64_RULES, ORT_CPU_X86_RULES, fuse, kernel_summary
    from latency.graph import load_graph
    from profilers import zoo

    g = load_graph(float16.convert_float_to_float16(zoo.build("efficientnet_b0_64"), keep_io_types=True))
    ks, unc = fuse(g, ORT_CPU_ARM64_RULES)
    assert not unc
    sig = [k for k in ks if k.params.get("op") == "Sigmoid"]
    assert len(sig) == 65 and {k.precision for k in sig} == {"fp32"}
    assert kernel_summary(ks)["cast"] == 2 + 2 * 65
    assert {k.precision for k in ks if k.kind == "Conv"} == {"fp16"}
    muls = [k for k in ks if k.params.get("op") == "Mul"]
    assert muls and {k.precision for k in muls} == {"fp16"}
    x86 = fuse(g, ORT_CPU_X86_RULES(16))[0]
    assert {k.precision for k in x86 if k.kind == "Conv"} == {"fp32"}  # x86: no fp16 kernels

    v = load_graph(float16.convert_float_to_float16(zoo.build("vit_tiny_64"), keep_io_types=True))
    ks, unc = fuse(v, ORT_CPU_ARM64_RULES)
    assert not unc
    prec = Counter((k.params.get("op"), k.precision) for k in ks if k.kind in ("Reduce", "Activation"))
    assert prec[("ReduceMax", "fp32")] == prec[("ReduceSum", "fp32")] == prec[("Exp", "fp32")] == 12
    assert kernel_summary(ks)["cast"] == 2 + 5 * 12  # per Softmax: x, max, x - max, exp and sum
