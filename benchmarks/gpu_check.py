r"""A prepared GPU check (at most ~10 minutes): the derived GPU target of this machine's GPU against
measurements taken here with PyTorch (cuBLAS / cuDNN), timed with CUDA events.

For a machine with an NVIDIA GPU, PyTorch and CUDA but no onnxruntime-gpu or TensorRT. It measures
the GPU cost model's own terms and a few kernels and whole models, and prints beside each the
price the derived target (``t4``, ``a10``, ``l4``, ``a100``, ``h100`` or ``h200``, picked from the GPU's name)
gives the same work:

* the per-kernel cost (back-to-back tiny kernels) and the shortest kernel;
* achievable DRAM bandwidth (a 512 MB device-to-device copy);
* a GEMM sweep (fp32 with TF32 off and on, fp16, int8 where ``torch._int_mm`` exists): large
  squares for the achievable fraction of each unit's peak, BERT-sized small-M shapes for tiles/waves;
* a convolution sweep (cuDNN, NCHW fp32 and channels-last fp16): ResNet-50's layer shapes at batch 1;
* whole models at batch 1 (fp32, fp16): ResNet-50 and a BERT-Base encoder built in PyTorch,
  eager and replayed as a CUDA graph (closer to a TensorRT engine's launches), beside the derived
  target's TensorRT estimate of the zoo's ResNet-50 and BERT-Base (a different runtime: read the
  ratio as how far the derived target is from what this GPU does, not as a TensorRT check).

Writes ``gpu_check.<gpu>.json`` and ``gpu_check.<gpu>.txt`` under ``--out`` (default: ``$OUT`` when set),
``<gpu>`` the GPU's own name as the driver reports it, made a file name (``nvidia-h200``), and the measured
terms as a ``model`` override a target's spec can carry (``<target>.<gpu>.gpu-terms.json``). Without a GPU (or without
PyTorch) it says so and exits 0.

    python benchmarks/gpu_check.py [--out DIR] [--quick] [--target h100]

Each section fails on its own (its error recorded, the next one runs), every line is printed as it is
made and the report rewritten after each section, so a crash or a kill keeps what was measured. Kernel
times are CUDA-event times of GPU work only: a spin kernel keeps the stream busy while the host enqueues
(``torch.cuda._sleep``), and the per-kernel and L2 terms are timed as CUDA-graph replays (no host dispatch).

On a device machine the working tree that travels must stay under its size limit (64 MiB), and the
tracked files are 228 MB, 211 MB of them the CPU profiles under ``tables/``, which the check does not
read (16 MB travel without them). Leave them out of the index for the one call, then put the index back:

    git rm -r -q --cached tables && echo /tables/ >> .git/info/exclude
    # the device call: PYTHONUNBUFFERED=1 python3 benchmarks/gpu_check.py --out $OUT   (timeout_s 600)
    git reset -q && sed -i '\#^/tables/$#d' .git/info/exclude
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

T_START = time.time()  # the budget counts from here, imports included
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

#: GPU name words -> the derived target of that card (whole words: an L40S is not an L4)
NAME_TO_TARGET = (("H200", "h200"), ("H100", "h100"), ("A100", "a100"), ("A10", "a10"), ("L4", "l4"), ("T4", "t4"))
BUDGET_S = 420.0  # stop starting new sections after this long (the whole check stays well under 10 minutes)
BACKEND_S = 60.0  # what the profiler backend's micro-benchmark needs at the end


def _skip(why: str, out: Path | None) -> int:
    print(f"gpu_check: skipped: {why}")
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        (out / "gpu_check.json").write_text(json.dumps({"skipped": why}, indent=1))
    return 0


def _smi() -> dict:
    """Name, driver, clocks and power of GPU 0 from nvidia-smi ({} when it is not there)."""
    fields = ("name", "driver_version", "clocks.sm", "clocks.max.sm", "clocks.mem", "clocks.max.mem", "power.limit",
              "temperature.gpu", "pstate")
    try:
        r = subprocess.run(["nvidia-smi", f"--query-gpu={','.join(fields)}", "--format=csv,noheader,nounits", "-i", "0"],
                           capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return {}
    if r.returncode != 0 or not r.stdout.strip():
        return {}
    return dict(zip(fields, (v.strip() for v in r.stdout.strip().splitlines()[0].split(","))))


def gpu_slug(name: str) -> str:
    """The GPU's name as a file name: ``NVIDIA H100 80GB HBM3`` -> ``nvidia-h100-80gb-hbm3``."""
    import re

    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") or "gpu"


def target_for(name: str) -> str | None:
    import re

    for frag, t in NAME_TO_TARGET:
        if re.search(rf"(?<![A-Za-z0-9]){frag}(?![A-Za-z0-9])", name):
            return t
    return None


class Timer:
    """CUDA-event timing: median of ``reps`` runs after ``warmup``, in microseconds."""

    def __init__(self, torch):
        self.torch = torch

    def __call__(self, fn, reps: int = 20, warmup: int = 5, inner: int = 1) -> float:
        cuda = self.torch.cuda
        from profilers.gpu import SPIN_CYCLES

        spin = getattr(cuda, "_sleep", None)
        for _ in range(warmup):
            fn()
        cuda.synchronize()
        times = []
        for _ in range(reps):
            a, b = cuda.Event(enable_timing=True), cuda.Event(enable_timing=True)
            if spin is not None:
                spin(SPIN_CYCLES)  # the GPU busy while the host enqueues: the events bracket GPU work only
            a.record()
            for _ in range(inner):
                fn()
            b.record()
            b.synchronize()
            times.append(a.elapsed_time(b) * 1000.0 / inner)
        return statistics.median(times)

    def graph_per_op(self, fn, n: int = 200, reps: int = 20) -> float:
        """One op's GPU time as replays of a CUDA graph of ``n`` of it, us per op (no host dispatch)."""
        from profilers.gpu import cuda_graph_of

        return self(cuda_graph_of(self.torch, fn, n).replay, reps=reps, warmup=2) / n


def _price(model, cfg) -> float:
    return model.price(cfg)[0] if model is not None else float("nan")


class _Lines(list):
    """The report's text: each line printed (and flushed) as it is made."""

    def append(self, line):
        super().append(line)
        print(line, flush=True)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=os.environ.get("OUT"),
                    help="folder for gpu_check.<gpu>.json and .txt (default: $OUT)")
    ap.add_argument("--quick", action="store_true", help="fewer shapes and repeats (about 2 minutes)")
    ap.add_argument("--target", default=None, help="derived target to compare with (default: from the GPU's name)")
    args = ap.parse_args(argv)
    out = Path(args.out) if args.out else None
    try:
        import torch
    except ImportError:
        return _skip("no PyTorch here (pip install torch with CUDA), so no GPU to time", out)
    if not torch.cuda.is_available():
        return _skip("no NVIDIA GPU visible to PyTorch (torch.cuda.is_available() is False)", out)

    from latency import Estimator
    from latency.cost.gpu import GpuCostModel
    from latency.graph import load_graph
    from latency.ops import Config
    from latency.targets import get_target
    from profilers import zoo

    t0 = T_START
    timer = Timer(torch)
    dev = torch.device("cuda")
    props = torch.cuda.get_device_properties(0)
    smi = _smi()
    tname = args.target or target_for(props.name)
    tgt = get_target(tname) if tname else None
    if tgt is not None and tgt.device != "gpu":
        return _skip(f"--target {tname} is not a GPU target (valid: t4, a10, l4, a100, h100, h200)", out)
    spec = tgt.spec if tgt is not None else None
    model = GpuCostModel(spec) if spec else None
    # fp32 GEMMs timed with TF32 off run on the CUDA cores: priced on the spec sheet without its TF32 unit
    model_fp32 = GpuCostModel({**spec, "peak_tflops": {k: v for k, v in spec["peak_tflops"].items() if k != "tf32"}}) \
        if spec else None
    slug = gpu_slug(props.name)
    report = {"gpu": {"name": props.name, "sm_count": props.multi_processor_count,
                      "memory_gb": round(props.total_memory / 1e9, 1), "capability": f"{props.major}.{props.minor}",
                      "nvidia_smi": smi},
              "software": {"torch": torch.__version__, "cuda": torch.version.cuda,
                           "cudnn": torch.backends.cudnn.version(), "python": platform.python_version()},
              "target": tname, "measured_with": "PyTorch (cuBLAS, cuDNN), CUDA events", "sections": {}}
    lines = _Lines()

    def dump():
        if out is None:
            return
        out.mkdir(parents=True, exist_ok=True)
        (out / f"gpu_check.{slug}.json").write_text(json.dumps(report, indent=1, default=str))
        (out / f"gpu_check.{slug}.txt").write_text("\n".join(lines) + "\n")

    lines.append(f"GPU {props.name} ({props.multi_processor_count} SMs, cc {props.major}.{props.minor}), driver "
                 f"{smi.get('driver_version', '?')}, SM clock {smi.get('clocks.sm', '?')}/"
                 f"{smi.get('clocks.max.sm', '?')} MHz, power limit {smi.get('power.limit', '?')} W; torch "
                 f"{torch.__version__}, CUDA {torch.version.cuda}, cuDNN {torch.backends.cudnn.version()}")
    lines.append(f"derived target: {tname or 'none (no target declared for this GPU: terms are measured, not compared)'}")
    if spec and spec["name"] != props.name:
        lines.append(f"note: this GPU reports itself as {props.name!r}; the {tname} spec sheet is the {spec['name']}'s")
    if spec and props.multi_processor_count != spec["sm_count"]:
        lines.append(f"note: this GPU has {props.multi_processor_count} SMs, the {tname} spec {spec['sm_count']}: "
                     f"another variant of the card")
    reps = 10 if args.quick else 30
    state = {"per": None, "bw": None, "fitted": {}}

    def run(name, body, budget=BUDGET_S):
        """One section: skipped once the budget is spent; an exception is recorded and the next section runs."""
        if time.time() - t0 > budget:
            lines.append(f"[{name}: skipped, time budget spent]")
            return
        lines.append(f"\n== {name}")
        rows = report["sections"][name] = []
        try:
            body(rows)
            torch.cuda.synchronize()  # an asynchronous CUDA error shows in its own section
        except Exception as e:  # noqa: BLE001 - recorded; the other sections still run
            msg = f"{type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''}"
            rows.append({"error": msg})
            lines.append(f"[{name}: failed: {msg}]")
            try:
                torch.cuda.synchronize()
            except Exception:  # noqa: BLE001
                pass
        dump()

    def price(cfg, fp32_cuda_cores=False):
        m = model_fp32 if fp32_cuda_cores else model
        return m.price(cfg)[0] if m is not None else float("nan")

    # 1. per-kernel cost: tiny kernels replayed from a CUDA graph (the GPU's own gap between kernels, as a
    # TensorRT engine's kernels run), and eager (PyTorch's host dispatch, for reference)
    def launch(rows):
        x = torch.zeros(1, device=dev)
        eager = timer(lambda: x.add_(1.0), reps=reps, inner=200)
        rows.append({"what": "back-to-back tiny kernels, eager (host dispatch bound)", "measured_us": eager})
        try:
            per, how = timer.graph_per_op(lambda: x.add_(1.0), n=200, reps=reps), "graph replay"
        except Exception as e:  # noqa: BLE001 - capture refused: the eager time, said so
            per, how = eager, f"eager: CUDA graph capture failed, {type(e).__name__}"
        state["per"] = per
        rows.append({"what": f"back-to-back tiny kernels, {how}", "measured_us": per})
        derived = model.lat["min_kernel_us"] + model.lat["launch_us"] if model else float("nan")
        lines.append(f"per tiny kernel: measured {per:.2f} us ({how}; eager {eager:.2f} us), derived "
                     f"{derived:.2f} us (min_kernel_us + launch_us)")

    # 2. bandwidth: DRAM (a copy far larger than L2) and L2 (a copy of a quarter of it, replayed from a graph)
    def bandwidth(rows):
        n = (128 if args.quick else 512) * 2 ** 20 // 4
        a, b = torch.empty(n, device=dev), torch.empty(n, device=dev)
        us = timer(lambda: b.copy_(a), reps=reps)
        bw = state["bw"] = 2 * n * 4 / us / 1e3  # GB/s
        rows.append({"what": f"copy {n * 4 / 2 ** 20:.0f} MiB", "measured_us": us, "gbs": bw})
        lines.append(f"DRAM: measured {bw:.0f} GB/s" + (f" = {bw / spec['mem_gbs']:.2f} of the {spec['mem_gbs']} GB/s "
                                                        f"spec (derived assumes {model.eff['dram']:.2f})" if spec else ""))
        del a, b
        l2_mb = spec["l2_mb"] if spec else (props.L2_cache_size / 1e6 if getattr(props, "L2_cache_size", 0) else None)
        if not l2_mb:
            return
        n2 = int(l2_mb * 1e6 / 8) // 4
        a, b = torch.empty(n2, device=dev), torch.empty(n2, device=dev)
        try:
            us2 = timer.graph_per_op(lambda: b.copy_(a), n=50, reps=reps)
        except Exception:  # noqa: BLE001
            us2 = timer(lambda: b.copy_(a), reps=reps, inner=20)
        per = state["per"] or 0.0
        derived_l2 = (f", derived {model.l2_bw / 1e3:.0f} GB/s ({model.terms()['l2_gbs']['basis'][:90]})"
                      if model else "")
        if us2 > 1.5 * per:
            l2 = 2 * n2 * 4 / (us2 - per) / 1e3
            rows.append({"what": f"L2-resident copy {n2 * 4 / 1e6:.1f} MB", "measured_us": us2, "gbs": l2})
            lines.append(f"L2: measured {l2:.0f} GB/s (a {n2 * 4 / 1e6:.1f} MB copy, less {per:.2f} us per kernel)"
                         f"{derived_l2}")
        else:
            rows.append({"what": f"L2-resident copy {n2 * 4 / 1e6:.1f} MB", "measured_us": us2, "gbs": None})
            lines.append(f"L2: not resolved (a {n2 * 4 / 1e6:.1f} MB copy took {us2:.2f} us, the per-kernel cost "
                         f"{per:.2f} us){derived_l2}")
        del a, b

    # 3. GEMMs
    def gemm(rows):
        fitted = state["fitted"]
        sizes = [(4096, 4096, 4096)] + ([] if args.quick else [(8192, 8192, 8192)])
        small = [(128, 768, 768), (128, 3072, 768), (128, 768, 3072), (384, 1024, 1024), (384, 4096, 1024)]
        cases = [("fp32", torch.float32, False), ("tf32", torch.float32, True), ("fp16", torch.float16, False)]
        for label, dt, tf32 in cases:
            torch.backends.cuda.matmul.allow_tf32 = tf32
            for m, n, k in sizes + small:
                if time.time() - t0 > BUDGET_S:
                    break
                A, B = torch.randn(m, k, device=dev, dtype=dt), torch.randn(k, n, device=dev, dtype=dt)
                us = timer(lambda: torch.mm(A, B), reps=reps)
                prec = "fp16" if label == "fp16" else "fp32"
                cfg = Config("MatMul", {"a": [m, k], "b": [k, n], "const_b": 1, "bias": 0, "scale": 0, "trans_b": 0,
                                        "act": "none"}, prec)
                der = price(cfg, fp32_cuda_cores=(label == "fp32"))
                tflops = 2 * m * n * k / us / 1e6
                rows.append({"unit": label, "m": m, "n": n, "k": k, "measured_us": us, "tflops": tflops,
                             "derived_us": der})
                lines.append(f"{label:5s} GEMM {m}x{n}x{k}: measured {us:9.1f} us ({tflops:6.1f} TFLOPS), derived "
                             f"{der:9.1f} us ({der / us:.2f}x)")
                if (m, n, k) == sizes[-1] and spec:
                    if label in spec["peak_tflops"]:
                        fitted[f"{label}_fraction_of_peak"] = tflops / spec["peak_tflops"][label]
        torch.backends.cuda.matmul.allow_tf32 = False
        if not hasattr(torch, "_int_mm"):
            return
        for m, n, k in sizes[:1] + small[:3]:
            mm = max(m, 32)
            try:  # B column-major (the cuBLASLt TN form), as profilers.gpu.TorchRunner times it
                A = torch.randint(-100, 100, (mm, k), device=dev, dtype=torch.int8)
                B = torch.randint(-100, 100, (n, k), device=dev, dtype=torch.int8).t()
                us = timer(lambda: torch._int_mm(A, B), reps=reps)
            except RuntimeError as e:  # older GPUs / shapes the int8 path refuses
                lines.append(f"int8 GEMM {mm}x{n}x{k}: not run ({str(e).splitlines()[0][:80]})")
                continue
            cfg = Config("MatMul", {"a": [mm, k], "b": [k, n], "const_b": 1, "bias": 0, "scale": 0,
                                    "trans_b": 0, "act": "none"}, "int8")
            der = price(cfg)
            tops = 2 * mm * n * k / us / 1e6
            rows.append({"unit": "int8", "m": mm, "n": n, "k": k, "measured_us": us, "tflops": tops,
                         "derived_us": der})
            lines.append(f"int8  GEMM {mm}x{n}x{k}: measured {us:9.1f} us ({tops:6.1f} TOPS), derived "
                         f"{der:9.1f} us ({der / us:.2f}x)")
            if (m, n, k) == sizes[0] and spec and spec["peak_tflops"].get("int8"):
                fitted["int8_fraction_of_peak"] = tops / spec["peak_tflops"]["int8"]

    # 4. convolutions (ResNet-50's shapes at batch 1): fp32 as TensorRT builds it by default (TF32 where the GPU
    # has it), fp16 channels-last
    def conv(rows):
        torch.backends.cudnn.benchmark = True
        torch.backends.cudnn.allow_tf32 = True
        shapes = [(64, 64, 56, 3, 1), (128, 128, 28, 3, 1), (256, 256, 14, 3, 1), (512, 512, 7, 3, 1),
                  (256, 64, 56, 1, 1), (1024, 256, 14, 1, 1), (3, 64, 224, 7, 2)]
        for cin, cout, hw, kk, st in shapes[: 4 if args.quick else None]:
            for label, dt, fmt in (("fp32", torch.float32, torch.contiguous_format),
                                   ("fp16", torch.float16, torch.channels_last)):
                if time.time() - t0 > BUDGET_S:
                    break
                xin = torch.randn(1, cin, hw, hw, device=dev, dtype=dt).to(memory_format=fmt)
                w = torch.randn(cout, cin, kk, kk, device=dev, dtype=dt).to(memory_format=fmt)
                with torch.no_grad():
                    us = timer(lambda: torch.nn.functional.conv2d(xin, w, stride=st, padding=kk // 2), reps=reps)
                cfg = Config("Conv", {"x": [1, cin, hw, hw], "cout": cout, "kernel": [kk, kk], "strides": [st, st],
                                      "pads": [kk // 2] * 4, "dilations": [1, 1], "group": 1, "act": "none", "sum": 0},
                             label)
                der = price(cfg)
                rows.append({"precision": label, "cin": cin, "cout": cout, "hw": hw, "k": kk, "stride": st,
                             "measured_us": us, "derived_us": der})
                lines.append(f"{label} conv {cin}->{cout} {hw}x{hw} k{kk}s{st}: measured {us:8.1f} us, derived "
                             f"{der:8.1f} us ({der / us:.2f}x)")

    # 5. whole models; fp32 with TF32 on for both cuBLAS and cuDNN, as TensorRT builds fp32 by default
    def models(rows):
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        builders = {"resnet50": _torch_resnet50, "bert_base": _torch_bert_base}
        est = Estimator(tname) if tname else None
        for name, make in builders.items():
            for label, dt in (("fp32", torch.float32), ("fp16", torch.float16)):
                if time.time() - t0 > BUDGET_S:
                    break
                try:
                    net, feed = make(torch, dev, dt)
                    with torch.no_grad():
                        eager = timer(lambda: net(*feed), reps=reps)
                        graph_us, why = _graph_time(torch, timer, net, feed, reps)
                except Exception as e:  # noqa: BLE001 - this model fails, the others run
                    msg = f"{type(e).__name__}: {str(e).splitlines()[0][:160] if str(e) else ''}"
                    rows.append({"model": name, "precision": label, "error": msg})
                    lines.append(f"{name:9s} {label}: failed ({msg})")
                    torch.cuda.synchronize()
                    continue
                derived = est.estimate(load_graph(zoo.build(name)), precision=label).total_ms * 1000.0 if est else None
                rows.append({"model": name, "precision": label, "eager_us": eager, "cuda_graph_us": graph_us,
                             "graph_failed": why, "derived_tensorrt_us": derived})
                ref, ref_name = (graph_us, "the graph") if graph_us else (eager, "eager")
                lines.append(f"{name:9s} {label}{' (TF32)' if label == 'fp32' else ''}: eager {eager / 1000:7.3f} ms, "
                             f"CUDA graph " + (f"{graph_us / 1000:7.3f} ms" if graph_us else f"- ({why})")
                             + (f"; derived {tname} TensorRT {derived / 1000:7.3f} ms ({derived / ref:.2f}x of {ref_name})"
                                if derived else "; no derived target to compare"))
                del net
        torch.backends.cuda.matmul.allow_tf32 = False

    run("launch", launch)
    run("bandwidth", bandwidth)
    run("gemm", gemm)
    run("conv", conv)
    run("models", models)

    # 6. whole models through onnxruntime-gpu (profilers/gpu.py, as `latency validate --target NAME` runs them),
    # only where onnxruntime-gpu is installed
    from profilers import gpu as gpu_backend

    def ort_models(rows):
        import tempfile

        import onnx

        with tempfile.TemporaryDirectory() as tmp:
            path = str(Path(tmp) / "resnet50.onnx")
            onnx.save(zoo.build("resnet50"), path)
            for tn in (f"{tname}-ort-cuda", tname):
                for prec in gpu_backend.e2e_precisions(get_target(tn)):
                    left = BUDGET_S - (time.time() - t0)
                    if left < (240 if prec == "int8" else 30):  # an int8 engine build and calibration take minutes
                        lines.append(f"resnet50 {tn} {prec}: skipped ({left:.0f} s of the budget left)")
                        continue
                    try:
                        res = gpu_backend.validate_gpu(path, get_target(tn), prec, phases=1)
                    except Exception as e:  # noqa: BLE001 - quantization and engine builds fail in many ways
                        lines.append(f"resnet50 {tn} {prec}: not measured ({type(e).__name__}: {str(e)[:160]})")
                        continue
                    rows.append({k: res.get(k) for k in ("target", "precision", "prepared", "providers", "measured_ms",
                                                         "rounds_ms", "estimate_ms", "error_pct")})
                    err = f"{res['error_pct']:+.1f}%" if res.get("error_pct") is not None else "-"
                    lines.append(f"resnet50 {tn:14s} {prec}: measured {res['measured_ms']:7.3f} ms, derived "
                                 f"{res['estimate_ms']:7.3f} ms ({err})")

    if tname and gpu_backend.available()[0] == "ort-gpu":
        run("onnxruntime-gpu models", ort_models)

    # the measured terms, as a spec["model"] override: launch_us is what a tiny kernel takes beyond min_kernel_us
    terms, fitted = {}, state["fitted"]
    if state["per"] is not None:
        terms["launch_us"] = round(max(0.5, state["per"] - (model.lat["min_kernel_us"] if model else 2.5)), 3)
    if state["bw"] and spec:
        terms["dram"] = round(state["bw"] / spec["mem_gbs"], 3)
    l2_rows = [r for r in report["sections"].get("bandwidth", []) if r.get("what", "").startswith("L2") and r.get("gbs")]
    if l2_rows:
        terms["l2_gbs"] = round(l2_rows[0]["gbs"], 1)
    if fitted.get("fp16_fraction_of_peak"):
        terms["tensor"] = round(fitted["fp16_fraction_of_peak"], 3)
    report["measured_terms"] = {"model": terms, "fractions_of_peak": fitted}
    lines.append(f"\nmeasured terms (a spec['model'] override; measured with PyTorch on {props.name}): {terms}")
    dump()

    # the GPU profiler backend's micro-benchmark mode (profilers/gpu.py), as `latency profile --target NAME`
    # runs it: its rows, its fitted terms and the measured-terms file that makes the derived target calibrated
    def backend(rows):
        runner = gpu_backend.TorchRunner(reps=5 if args.quick else 20)
        mb_rows = gpu_backend.microbenchmark(runner, budget_s=max(10.0, BUDGET_S + BACKEND_S - (time.time() - t0)),
                                             l2_mb=spec.get("l2_mb"))
        mb_fit = gpu_backend.fit_terms(spec, mb_rows)
        rows.extend(mb_rows)
        report["profiler_backend"] = {"fitted": mb_fit, "backend": gpu_backend.available()[0]}
        lines.append(f"profiler backend (profilers/gpu.py, {runner.version}): fitted {mb_fit['terms']}")
        for k, v in mb_fit["basis"].items():
            lines.append(f"  {k}: {v}")
        if out is not None:
            out.mkdir(parents=True, exist_ok=True)
            written = gpu_backend.write_terms(get_target(tname), mb_fit, mb_rows, f"micro-benchmark, {runner.version}",
                                              out / f"{tname}.{slug}.gpu-terms.json")
            lines.append(f"  measured terms written to {written.name} (copy it to the user profiles folder as "
                         f"{tname}.gpu-terms.json to calibrate the target)")

    if tname and spec and time.time() - t0 < BUDGET_S + BACKEND_S:
        t_b = time.time()
        run("profiler backend", backend, budget=BUDGET_S + BACKEND_S)  # the last section may use the reserved minute
        lines.append(f"(profiler backend {time.time() - t_b:.0f} s)")
    lines.append(f"({time.time() - t0:.0f} s, imports included)")
    dump()
    return 0


def _graph_time(torch, timer, net, feed, reps):
    """(the model replayed as one CUDA graph (no per-kernel host launches) in us, None) or (None, why capture
    failed)."""
    from profilers.gpu import cuda_graph_of

    try:
        return timer(cuda_graph_of(torch, lambda: net(*feed), n=1, warmup=3).replay, reps=reps), None
    except Exception as e:  # noqa: BLE001 - capture is not possible everywhere (old drivers, some ops)
        try:
            torch.cuda.synchronize()
        except Exception:  # noqa: BLE001
            pass
        return None, f"capture failed: {type(e).__name__}: {str(e).splitlines()[0][:120] if str(e) else ''}"


def _torch_resnet50(torch, dev, dt):
    """ResNet-50 (torchvision's layout) at batch 1, built here so that torchvision is not needed."""
    nn = torch.nn

    class Bottleneck(nn.Module):
        def __init__(self, cin, mid, stride):
            super().__init__()
            cout = mid * 4
            self.c1, self.b1 = nn.Conv2d(cin, mid, 1, bias=False), nn.BatchNorm2d(mid)
            self.c2, self.b2 = nn.Conv2d(mid, mid, 3, stride, 1, bias=False), nn.BatchNorm2d(mid)
            self.c3, self.b3 = nn.Conv2d(mid, cout, 1, bias=False), nn.BatchNorm2d(cout)
            self.down = (nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
                         if stride != 1 or cin != cout else nn.Identity())

        def forward(self, x):
            y = torch.relu(self.b1(self.c1(x)))
            y = torch.relu(self.b2(self.c2(y)))
            return torch.relu(self.b3(self.c3(y)) + self.down(x))

    layers, cin = [nn.Conv2d(3, 64, 7, 2, 3, bias=False), nn.BatchNorm2d(64), nn.ReLU(), nn.MaxPool2d(3, 2, 1)], 64
    for mid, blocks, stride in ((64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2)):
        for i in range(blocks):
            layers.append(Bottleneck(cin, mid, stride if i == 0 else 1))
            cin = mid * 4
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(2048, 1000)]
    net = nn.Sequential(*layers).to(dev).eval().to(dt)
    fmt = torch.channels_last if dt == torch.float16 else torch.contiguous_format
    net = net.to(memory_format=fmt)
    return net, (torch.randn(1, 3, 224, 224, device=dev, dtype=dt).to(memory_format=fmt),)


def _torch_bert_base(torch, dev, dt, seq=128):
    """BERT-Base's encoder (12 post-norm layers, 768 hidden, 12 heads, GELU) at batch 1, sequence 128."""
    nn = torch.nn
    layer = nn.TransformerEncoderLayer(768, 12, 3072, dropout=0.0, activation="gelu", batch_first=True)
    net = nn.TransformerEncoder(layer, 12, enable_nested_tensor=False).to(dev).eval().to(dt)
    return net, (torch.randn(1, seq, 768, device=dev, dtype=dt),)


if __name__ == "__main__":
    raise SystemExit(main())
