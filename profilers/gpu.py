"""The GPU measuring backend: what this host can measure a GPU target with, the GPU's record, and the
micro-benchmark mode that measures the GPU cost model's own terms and fits the target's parameters.

Backends, in order of preference (:func:`available`):

* ``ort-gpu``: onnxruntime-gpu (``pip install 'latency[gpu]'``) with its CUDA / TensorRT execution
  providers: the operator sweep (:func:`measure_chunk_for`, through :mod:`profilers.backends` and the
  resumable sweep into the same database), each kernel's one-node model run with inputs and outputs
  bound on the GPU, timed as the median synchronised run less a one-Identity run (onnxruntime's own
  per-node times on the CUDA EP measure the asynchronous launch, not the kernel), the GPU's record
  (name, driver, clocks, runtime versions) in every row;
* ``torch`` / ``cupy``: neither onnxruntime-gpu nor TensorRT, but PyTorch or CuPy with CUDA: the
  micro-benchmark mode (:func:`microbenchmark`): achievable DRAM bandwidth, GEMM throughput per
  precision across shapes, convolution throughput, launch cost, timed with CUDA events; then
  :func:`fit_terms` fits the cost model's terms and :func:`write_terms` stores them, labelled
  ``measured`` with what measured them, where :func:`latency.cost.gpu.load_terms` finds them: the
  derived target becomes a calibrated one.

Nothing here is imported by ``latency/``; importing this module imports no GPU library.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import statistics
import subprocess
import time
from pathlib import Path

from latency.errors import LatencyError


#: micro-benchmark shapes: GEMMs (m, n, k) from latency-bound to peak-bound, convolutions
#: (n, c, h, w, k, r), copy sizes (bytes)
GEMM_SHAPES = ((256, 256, 256), (1024, 1024, 1024), (2048, 2048, 2048), (4096, 4096, 4096), (8192, 8192, 8192),
               (128, 4096, 4096), (16, 4096, 4096))
CONV_SHAPES = ((1, 64, 56, 56, 64, 3), (1, 256, 14, 14, 256, 3), (8, 128, 28, 28, 128, 3), (32, 256, 14, 14, 256, 3))
COPY_BYTES = (1 << 20, 16 << 20, 256 << 20, 1 << 30)
PRECISIONS = ("fp32", "fp16", "int8")


def _has(mod: str) -> bool:
    try:
        return importlib.util.find_spec(mod) is not None
    except (ImportError, ValueError):
        return False


def available() -> tuple[str | None, str]:
    """(backend name, why not): ``ort-gpu``, ``torch`` or ``cupy`` where one can reach an NVIDIA GPU here."""
    from latency.targets.gpu import gpu_backend

    return gpu_backend()


def device_record() -> dict:
    """The GPU's name, driver, clocks and memory from nvidia-smi, and the runtimes' versions."""
    rec: dict = {}
    if shutil.which("nvidia-smi"):
        fields = ("name", "driver_version", "clocks.max.sm", "clocks.max.mem", "clocks.sm", "memory.total",
                  "pci.bus_id", "power.limit")
        try:
            out = subprocess.run(["nvidia-smi", f"--query-gpu={','.join(fields)}", "--format=csv,noheader,nounits"],
                                 capture_output=True, text=True, timeout=20, check=True).stdout.splitlines()[0]
            rec.update({f"gpu_{k.replace('.', '_')}": v.strip() for k, v in zip(fields, out.split(","))})
        except (subprocess.SubprocessError, OSError, IndexError) as e:
            rec["gpu_query_error"] = str(e)
    for mod in ("onnxruntime", "tensorrt", "torch", "cupy"):
        if _has(mod):
            try:
                rec[f"{mod}_version"] = __import__(mod).__version__
            except Exception as e:  # noqa: BLE001 - a broken install is recorded, not fatal
                rec[f"{mod}_version"] = f"unimportable: {e}"
    if _has("torch"):
        import torch

        if torch.cuda.is_available():
            rec["cuda_runtime"] = torch.version.cuda
            rec["cudnn_version"] = str(torch.backends.cudnn.version())
    return rec


# ---- the micro-benchmark mode ------------------------------------------------------------------------------


class TorchRunner:
    """Times the cost model's terms with PyTorch on CUDA (CUDA events, median of ``reps`` after warm-up)."""

    name = "torch"

    def __init__(self, reps: int = 20):
        import torch

        self.torch, self.reps = torch, reps
        self.dev = torch.device("cuda")
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        self.version = f"torch {torch.__version__}, CUDA {torch.version.cuda}"

    def _time_us(self, fn) -> float:
        t = self.torch
        for _ in range(3):
            fn()
        t.cuda.synchronize()
        times = []
        for _ in range(self.reps):
            a, b = t.cuda.Event(enable_timing=True), t.cuda.Event(enable_timing=True)
            a.record()
            fn()
            b.record()
            b.synchronize()
            times.append(a.elapsed_time(b) * 1e3)
        return statistics.median(times)

    def launch_us(self) -> float:
        x = self.torch.zeros(1, device=self.dev)
        n = 100
        return self._time_us(lambda: [x.add_(1) for _ in range(n)]) / n

    def copy_us(self, nbytes: int) -> float:
        a = self.torch.empty(nbytes // 4, dtype=self.torch.float32, device=self.dev)
        b = self.torch.empty_like(a)
        return self._time_us(lambda: b.copy_(a))

    def gemm_us(self, m: int, n: int, k: int, precision: str) -> float:
        t = self.torch
        if precision == "int8":
            a = t.randint(-8, 8, (m, k), dtype=t.int8, device=self.dev)
            b = t.randint(-8, 8, (n, k), dtype=t.int8, device=self.dev).t()
            return self._time_us(lambda: t._int_mm(a, b))
        dt = {"fp32": t.float32, "fp16": t.float16}[precision]
        a, b = t.randn(m, k, dtype=dt, device=self.dev), t.randn(k, n, dtype=dt, device=self.dev)
        return self._time_us(lambda: a @ b)

    def conv_us(self, n, c, h, w, k, r, precision: str) -> float:
        t = self.torch
        if precision == "int8":
            raise NotImplementedError("PyTorch has no int8 cuDNN convolution")
        dt = {"fp32": t.float32, "fp16": t.float16}[precision]
        x = t.randn(n, c, h, w, dtype=dt, device=self.dev).to(memory_format=t.channels_last)
        wt = t.randn(k, c, r, r, dtype=dt, device=self.dev).to(memory_format=t.channels_last)
        t.backends.cudnn.benchmark = True
        return self._time_us(lambda: t.nn.functional.conv2d(x, wt, padding=r // 2))


def microbenchmark(runner, precisions=PRECISIONS, budget_s: float = 300.0) -> list[dict]:
    """Measure launch cost, copy bandwidth, GEMM and convolution throughput with ``runner`` (rows of
    ``{"term", "shape", "precision", "us"}``; a shape the runner cannot run is recorded with its error)."""
    rows, t0 = [], time.monotonic()

    def add(term, shape, prec, fn):
        if time.monotonic() - t0 > budget_s:
            return
        try:
            rows.append({"term": term, "shape": list(shape), "precision": prec, "us": float(fn())})
        except Exception as e:  # noqa: BLE001 - e.g. out of memory, no int8 path: recorded, not fatal
            rows.append({"term": term, "shape": list(shape), "precision": prec, "us": None,
                         "error": f"{type(e).__name__}: {e}"[:200]})

    add("launch", (), "", runner.launch_us)
    for nb in COPY_BYTES:
        add("copy", (nb,), "", lambda nb=nb: runner.copy_us(nb))
    for prec in precisions:
        for s in GEMM_SHAPES:
            add("gemm", s, prec, lambda s=s, prec=prec: runner.gemm_us(*s, prec))
        for s in CONV_SHAPES:
            add("conv", s, prec, lambda s=s, prec=prec: runner.conv_us(*s, prec))
    return rows


def _flops(row) -> float:
    if row["term"] == "gemm":
        m, n, k = row["shape"]
        return 2.0 * m * n * k
    n, c, h, w, k, r = row["shape"]
    return 2.0 * n * h * w * k * c * r * r


def fit_terms(spec: dict, rows: list[dict]) -> dict:
    """The cost model's terms (:data:`latency.cost.gpu.ACHIEVABLE`, ``launch_us``, ``min_kernel_us``) from
    micro-benchmark rows on the GPU of ``spec``:

    * ``dram``: the best copy rate (read + write bytes per second) over the quoted bandwidth;
    * ``tensor``: the best GEMM / convolution rate in fp16 and int8 over the tensor-core peak of that
      precision (the model's tiles reach their full efficiency on the largest shapes), the lower of
      the two, as the model uses one fraction for both;
    * ``cuda``: the best fp32 rate over the CUDA-core fp32 peak, on a card without TF32 (where fp32
      runs on TF32 tensor cores it is a tensor term and ``cuda`` is left as derived);
    * ``launch_us`` and ``min_kernel_us``: the back-to-back time of a one-element kernel.

    Each fraction is clipped to (0.05, 1.0]; a term with no usable row is left out (stays derived)."""
    ok = [r for r in rows if r.get("us")]
    peaks = spec["peak_tflops"]
    out, basis = {}, {}
    copies = [2.0 * r["shape"][0] / r["us"] / 1e3 for r in ok if r["term"] == "copy"]  # GB/s
    if copies:
        out["dram"] = min(1.0, max(0.05, max(copies) / float(spec["mem_gbs"])))
        basis["dram"] = f"best copy {max(copies):.0f} GB/s of {spec['mem_gbs']} GB/s quoted"
    tensor = []
    for prec in ("fp16", "int8"):
        rates = [_flops(r) / r["us"] / 1e6 for r in ok if r["term"] in ("gemm", "conv") and r["precision"] == prec]
        if rates and peaks.get(prec):
            tensor.append(max(rates) / peaks[prec])
            basis[f"tensor_{prec}"] = f"best {prec} {max(rates):.1f} TFLOPS of {peaks[prec]} peak"
    if tensor:
        out["tensor"] = min(1.0, max(0.05, min(tensor)))
    fp32 = [_flops(r) / r["us"] / 1e6 for r in ok if r["term"] in ("gemm", "conv") and r["precision"] == "fp32"]
    if fp32 and "tf32" not in peaks:
        out["cuda"] = min(1.0, max(0.05, max(fp32) / peaks["fp32"]))
        basis["cuda"] = f"best fp32 {max(fp32):.1f} TFLOPS of {peaks['fp32']} CUDA-core peak"
    launch = [r["us"] for r in ok if r["term"] == "launch"]
    if launch:
        out["launch_us"] = out["min_kernel_us"] = round(launch[0], 3)
        basis["launch_us"] = f"back-to-back one-element kernels: {launch[0]:.2f} us each"
    return {"terms": out, "basis": basis}


def write_terms(target, fitted: dict, rows: list[dict], measured_with: str, path: Path | None = None) -> Path:
    """Store the fitted terms of ``target`` as a measured profile of the GPU cost model's terms."""
    from latency.cost.gpu import terms_path

    path = Path(path) if path else terms_path(target.name)
    path.parent.mkdir(parents=True, exist_ok=True)
    doc = {"target": target.name, "provenance": "measured", "measured_with": measured_with,
           "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "device": device_record(),
           "terms": fitted["terms"], "basis": fitted["basis"], "rows": rows}
    path.write_text(json.dumps(doc, indent=1))
    return path


def runner_for(backend: str):
    """The micro-benchmark runner of ``backend`` (``torch``; CuPy is recognised but has no runner yet)."""
    if backend == "torch":
        return TorchRunner()
    raise LatencyError(f"no micro-benchmark runner for {backend!r} (known: torch); install PyTorch with CUDA")


def calibrate_target(target, budget_s: float = 300.0, path: Path | None = None) -> Path:
    """Micro-benchmark this host's GPU and write ``target``'s measured terms; the file's path."""
    backend, why = available()
    if backend is None:
        raise LatencyError(why)
    if backend == "ort-gpu" and not _has("torch"):
        raise LatencyError("the micro-benchmark mode needs PyTorch with CUDA; with onnxruntime-gpu use the "
                           "operator sweep (latency profile --target ... --db FILE)")
    runner = runner_for("torch" if backend == "ort-gpu" else backend)
    rows = microbenchmark(runner, budget_s=budget_s)
    return write_terms(target, fit_terms(target.spec, rows), rows, f"micro-benchmark, {runner.version}", path)


# ---- the operator sweep through onnxruntime-gpu ------------------------------------------------------------


def providers_for(target, precision: str = "fp32") -> list:
    """onnxruntime providers that run ``target``'s runtime: the TensorRT EP (builder precision flags from
    ``precision``) for the TensorRT targets, the CUDA EP for the ``*-ort-cuda`` ones."""
    import onnxruntime as ort

    have = set(ort.get_available_providers())
    if target.runtime == "tensorrt":
        if "TensorrtExecutionProvider" not in have:
            raise LatencyError(f"target {target.name} runs TensorRT: onnxruntime-gpu here has no TensorrtExecutionProvider "
                               f"(install TensorRT's libraries; available: {', '.join(sorted(have))})")
        opts = {"trt_fp16_enable": precision in ("fp16", "int8"), "trt_int8_enable": precision == "int8"}
        return [("TensorrtExecutionProvider", opts), "CUDAExecutionProvider"]
    if "CUDAExecutionProvider" not in have:
        raise LatencyError(f"target {target.name}: onnxruntime here has no CUDAExecutionProvider; {GPU_INSTALL_HINT}")
    return [("CUDAExecutionProvider", {"use_tf32": 1})]


GPU_INSTALL_HINT = "pip install 'latency[gpu]' (onnxruntime-gpu)"


def _run_timer(sess, feed, reps: int) -> list[float]:
    """Wall times (us) of ``reps`` synchronised runs with inputs and outputs bound on the GPU."""
    import onnxruntime as ort

    binding = sess.io_binding()
    for name, value in feed.items():
        binding.bind_ortvalue_input(name, ort.OrtValue.ortvalue_from_numpy(value, "cuda", 0))
    for out in sess.get_outputs():
        binding.bind_output(out.name, "cuda")
    for _ in range(3):
        sess.run_with_iobinding(binding)
    times = []
    for _ in range(reps):
        t0 = time.perf_counter_ns()
        sess.run_with_iobinding(binding)   # returns once the GPU stream has finished the run
        times.append((time.perf_counter_ns() - t0) / 1000.0)
    return times


def measure_chunk_for(target, reps: int = 50):
    """A ``measure_chunk(configs)`` for ``target`` through onnxruntime-gpu: each config's one-kernel model
    (:func:`profilers.builders.build`) run with inputs and outputs on the GPU; its latency is the median
    synchronised run minus the median run of a one-Identity model of the same session settings (the
    per-run cost of a session on this GPU, recorded in ``extra``). The GPU's record goes into ``extra``."""

    def measure_chunk(configs) -> list[dict]:
        import numpy as np
        import onnxruntime as ort
        from onnx import TensorProto, helper

        from profilers.builders import NotBuildable, build, feeds

        so = ort.SessionOptions()
        so.log_severity_level = 3
        ident = helper.make_model(helper.make_graph(
            [helper.make_node("Identity", ["x"], ["y"])], "base",
            [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
            [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])]), opset_imports=[helper.make_opsetid("", 17)])
        ident.ir_version = 8

        dev = device_record()
        rows, base = [], {}
        for cfg in configs:
            row = {"latency_us": None, "median_us": None, "spread": None, "n_rounds": 0, "n_runs": 0, "rounds_us": [],
                   "canary_us": [], "unstable": 0, "remeasured": 0, "kernel_ops": [], "error": None, "extra": {}}
            try:
                provs = providers_for(target, cfg.precision)
                key = repr(provs)
                if key not in base:
                    s0 = ort.InferenceSession(ident.SerializeToString(), so, providers=provs)
                    base[key] = statistics.median(_run_timer(s0, {"x": np.zeros(1, np.float32)}, reps))
                m = build(cfg)
                sess = ort.InferenceSession(m.SerializeToString(), so, providers=provs)
                times = _run_timer(sess, feeds(m), reps)
                med = statistics.median(times)
                q1, q3 = np.percentile(times, [25, 75])
                row.update(latency_us=max(0.0, med - base[key]), median_us=med, spread=float((q3 - q1) / med),
                           n_rounds=1, n_runs=reps, rounds_us=[round(med, 3)],
                           kernel_ops=sorted({n.op_type for n in m.graph.node}),
                           extra={"per_run_us": round(base[key], 2), "providers": sess.get_providers(),
                                  "statistic": "median synchronised run minus a one-Identity run", "gpu": dev})
            except NotBuildable as e:
                row["error"] = f"not buildable: {e}"
            except LatencyError:
                raise
            except Exception as e:  # noqa: BLE001 - one failing config is a row with its error
                row["error"] = f"{type(e).__name__}: {str(e).splitlines()[0][:300] if str(e) else ''}"
            rows.append(row)
        return rows

    return measure_chunk
