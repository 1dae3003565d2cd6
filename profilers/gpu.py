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
  micro-benchmark mode (:func:`microbenchmark`): achievable DRAM bandwidth, L2 bandwidth, GEMM
  throughput per precision across shapes, convolution throughput, launch cost, timed with CUDA events; then
  :func:`fit_terms` fits the cost model's terms and :func:`write_terms` stores them, labelled
  ``measured`` with what measured them, where :func:`latency.cost.gpu.load_terms` finds them: the
  derived target becomes a calibrated one.

Nothing here is imported by ``latency/``; importing this module imports no GPU library.
"""

from __future__ import annotations

import importlib.util
import json
import statistics
import time
from pathlib import Path

from latency.errors import LatencyError


#: micro-benchmark shapes: GEMMs (m, n, k) from latency-bound to peak-bound, convolutions
#: (n, c, h, w, k, r), copy sizes (bytes)
GEMM_SHAPES = ((256, 256, 256), (1024, 1024, 1024), (2048, 2048, 2048), (4096, 4096, 4096), (8192, 8192, 8192),
               (128, 4096, 4096), (16, 4096, 4096))
CONV_SHAPES = ((1, 64, 56, 56, 64, 3), (1, 256, 14, 14, 256, 3), (8, 128, 28, 28, 128, 3), (32, 256, 14, 14, 256, 3))
COPY_BYTES = (1 << 20, 16 << 20, 256 << 20, 1 << 30)
#: L2-resident copies: each buffer this share of the card's L2 (both together a quarter, then half of it)
L2_COPY_SHARES = (1 / 8, 1 / 4)
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
    """The GPU's name, compute capability, driver, clocks and memory from nvidia-smi
    (:func:`latency.targets.gpu.read_gpu`, the fields a GPU profile's fingerprint keeps), and the runtimes' versions."""
    from latency.targets.gpu import read_gpu

    rec: dict = {}
    try:
        rec.update(read_gpu())
    except LatencyError as e:
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

#: cycles of the spin kernel (``torch.cuda._sleep``) queued before each timed run, about 0.5 ms at 2 GHz: the GPU
#: stays busy while the host enqueues, so CUDA events bracket GPU work only
SPIN_CYCLES = 1_000_000


def cuda_graph_of(torch, fn, n: int = 1, warmup: int = 1):
    """A CUDA graph of ``n`` calls of ``fn`` (after ``warmup`` calls on a side stream, as capture needs);
    replaying it runs them without host dispatch. Raises where capture is refused."""
    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):
        for _ in range(warmup):
            fn()
    torch.cuda.current_stream().wait_stream(s)
    g = torch.cuda.CUDAGraph()
    with torch.cuda.graph(g):
        for _ in range(n):
            fn()
    return g


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
        spin = getattr(t.cuda, "_sleep", None)
        for _ in range(3):
            fn()
        t.cuda.synchronize()
        times = []
        for _ in range(self.reps):
            a, b = t.cuda.Event(enable_timing=True), t.cuda.Event(enable_timing=True)
            if spin is not None:
                spin(SPIN_CYCLES)
            a.record()
            fn()
            b.record()
            b.synchronize()
            times.append(a.elapsed_time(b) * 1e3)
        return statistics.median(times)

    def launch_us(self) -> float:
        """A tiny kernel's GPU time back to back: ``n`` of them replayed from a CUDA graph (no host dispatch),
        or launched eagerly where capture fails."""
        t = self.torch
        x = t.zeros(1, device=self.dev)
        n = 100
        try:
            return self._time_us(cuda_graph_of(t, lambda: x.add_(1), n).replay) / n
        except Exception:  # noqa: BLE001 - capture refused: eager launches
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


def microbenchmark(runner, precisions=PRECISIONS, budget_s: float = 300.0, l2_mb: float | None = None) -> list[dict]:
    """Measure launch cost, copy bandwidth, GEMM and convolution throughput with ``runner`` (rows of
    ``{"term", "shape", "precision", "us"}``; a shape the runner cannot run is recorded with its error).
    With ``l2_mb`` (the card's L2), also copies small enough to stay in L2 (term ``l2copy``): the same
    two buffers copied again and again, so that after the warm-up every read hits L2."""
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
    for share in (L2_COPY_SHARES if l2_mb else ()):
        nb = int(l2_mb * 1e6 * share) // 4 * 4
        add("l2copy", (nb,), "", lambda nb=nb: runner.copy_us(nb))
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

    * ``dram``: the best copy rate (read + write bytes per second) over the quoted bandwidth, of the
      copies whose two buffers are at least twice the L2 (a smaller copy is partly served by L2: on an
      H100 a 16 MB copy never leaves its 50 MB L2);
    * ``l2_gbs``: the best rate of the L2-resident copies (``l2copy``), each less the back-to-back
      launch time (these copies last a few microseconds), where that rate beats DRAM's;
    * ``tensor``: the best GEMM / convolution rate in fp16 and int8 over the tensor-core peak of that
      precision (the model's tiles reach their full efficiency on the largest shapes), the lower of
      the two, as the model uses one fraction for both;
    * ``cuda``: the best fp32 rate over the CUDA-core fp32 peak, on a card without TF32 (where fp32
      runs on TF32 tensor cores it is a tensor term and ``cuda`` is left as derived);
    * ``launch_us``: what a one-element kernel takes back to back beyond ``min_kernel_us`` (the spec's, or
      the model's default: the model prices a tiny kernel at min_kernel_us + launch_us), at least 0.5 us.

    Each fraction is clipped to (0.05, 1.0]; a term with no usable row is left out (stays derived)."""
    ok = [r for r in rows if r.get("us")]
    peaks = spec["peak_tflops"]
    out, basis = {}, {}
    l2_bytes = float(spec.get("l2_mb") or 0.0) * 1e6
    copies = [2.0 * r["shape"][0] / r["us"] / 1e3 for r in ok  # GB/s
              if r["term"] == "copy" and 2.0 * r["shape"][0] >= 2.0 * l2_bytes]
    if copies:
        out["dram"] = min(1.0, max(0.05, max(copies) / float(spec["mem_gbs"])))
        basis["dram"] = f"best copy {max(copies):.0f} GB/s of {spec['mem_gbs']} GB/s quoted"
    launch = [r["us"] for r in ok if r["term"] == "launch"]
    fixed = launch[0] if launch else 0.0
    l2 = [2.0 * r["shape"][0] / (r["us"] - fixed) / 1e3 for r in ok if r["term"] == "l2copy" and r["us"] > 1.5 * fixed]
    if l2 and max(l2) > (max(copies) if copies else 0.0):
        out["l2_gbs"] = round(max(l2), 1)
        basis["l2_gbs"] = (f"best L2-resident copy {max(l2):.0f} GB/s (read + write, less {fixed:.2f} us of launch)")
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
    if launch:
        from latency.cost.gpu import LATENCY

        min_k = float((spec.get("model") or {}).get("min_kernel_us", LATENCY["min_kernel_us"][0]))
        out["launch_us"] = round(max(0.5, launch[0] - min_k), 3)
        basis["launch_us"] = (f"back-to-back one-element kernels: {launch[0]:.2f} us each, less min_kernel_us "
                              f"{min_k:g} us")
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
    rows = microbenchmark(runner, budget_s=budget_s, l2_mb=target.spec.get("l2_mb"))
    return write_terms(target, fit_terms(target.spec, rows), rows, f"micro-benchmark, {runner.version}", path)


# ---- the operator sweep through onnxruntime-gpu ------------------------------------------------------------


def providers_for(target, precision: str = "fp32", cache_dir: str | None = None) -> list:
    """onnxruntime providers that run ``target``'s runtime: the TensorRT EP (builder precision flags from
    ``precision``) for the TensorRT targets, the CUDA EP for the ``*-ort-cuda`` ones. ``cache_dir``: where
    the TensorRT EP keeps its engines and timing cache, so that a fresh session of a model already built
    loads its engine instead of building it again (the whole-model protocol's fresh sessions per phase)."""
    import onnxruntime as ort

    have = set(ort.get_available_providers())
    if target.runtime == "tensorrt":
        if "TensorrtExecutionProvider" not in have:
            raise LatencyError(f"target {target.name} runs TensorRT: onnxruntime-gpu here has no TensorrtExecutionProvider "
                               f"(install TensorRT's libraries; available: {', '.join(sorted(have))})")
        opts = {"trt_fp16_enable": precision in ("fp16", "int8"), "trt_int8_enable": precision == "int8"}
        if cache_dir:
            opts.update(trt_engine_cache_enable=True, trt_engine_cache_path=cache_dir, trt_timing_cache_enable=True,
                        trt_timing_cache_path=cache_dir)
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


# ---- whole models through onnxruntime-gpu ------------------------------------------------------------------

#: the precisions a GPU runtime measures a whole model in: TensorRT's builder precisions (fp16 and int8 are
#: builder flags of the TensorRT EP); onnxruntime's CUDA EP runs the model's own types, fp16 after conversion,
#: and has no int8 convolution or GEMM path for a QDQ model (it runs the float ops between Q/DQ pairs)
E2E_PRECISIONS = {"tensorrt": ("fp32", "fp16", "int8"), "onnxruntime": ("fp32", "fp16")}
_QDQ = ("QuantizeLinear", "DequantizeLinear")


def e2e_precisions(target) -> tuple:
    """The precisions :func:`measure_models_gpu` measures ``target``'s whole models in."""
    return E2E_PRECISIONS.get(target.runtime, ())


def _proto(model):
    import onnx

    if isinstance(model, onnx.ModelProto):
        return model
    if isinstance(model, (bytes, bytearray)):
        return onnx.load_model_from_string(bytes(model))
    return onnx.load(str(model))


def has_qdq(model) -> bool:
    """Whether the model carries Q/DQ nodes (it is explicitly quantized)."""
    return any(n.op_type in _QDQ for n in _proto(model).graph.node)


def default_precision(target, model) -> str:
    """The precision a model is measured in when none is asked: int8 for a QDQ model on TensorRT (explicit
    quantization needs the int8 builder flag), else fp32 (as stored)."""
    return "int8" if target.runtime == "tensorrt" and has_qdq(model) else "fp32"


def _quantize_qdq(proto, feed):
    """``proto`` quantized by onnxruntime.quantization.quantize_static into TensorRT's explicit-quantization
    form: QDQ, symmetric int8 activations (zero point 0, as TensorRT requires) and per-channel int8 weights,
    calibrated (MinMax) on ``feed``."""
    import tempfile

    import onnx
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    class _Reader(CalibrationDataReader):
        def __init__(self):
            self.left = [feed]

        def get_next(self):
            return self.left.pop() if self.left else None

    with tempfile.TemporaryDirectory(prefix="latency-qdq-") as tmp:
        src, dst = Path(tmp) / "model.onnx", Path(tmp) / "model.qdq.onnx"
        onnx.save(proto, str(src))
        quantize_static(str(src), str(dst), _Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QInt8, weight_type=QuantType.QInt8,
                        extra_options={"ActivationSymmetric": True, "WeightSymmetric": True})
        return onnx.load(str(dst))


def prepare_model(model, target, precision: str, feed: dict | None = None) -> tuple[bytes, str]:
    """(the ONNX bytes the runtime runs for ``precision``, how they were made).

    * TensorRT: the model as stored; fp16 and int8 are builder flags. A QDQ model is explicitly
      quantized and measured in int8 only. A float model in int8 is first quantized by
      :func:`_quantize_qdq` (calibrated on ``feed``): TensorRT's explicit quantization, as its
      documentation recommends over implicit calibration, which the TensorRT EP would need a table for.
    * onnxruntime's CUDA EP: fp32 as stored; fp16 the model converted by onnxconverter-common's
      ``convert_float_to_float16`` (``keep_io_types=True``), as ``latency whatif --precision fp16`` does.

    A precision the runtime has no whole-model path for is a :class:`latency.errors.UnknownPrecision`
    naming the ones it has."""
    from latency.errors import UnknownPrecision

    valid = e2e_precisions(target)
    if precision not in valid:
        raise UnknownPrecision(target.name, precision, valid)
    proto = _proto(model)
    qdq = any(n.op_type in _QDQ for n in proto.graph.node)
    if target.runtime == "tensorrt":
        if qdq and precision != "int8":
            raise LatencyError(f"the model carries Q/DQ nodes: TensorRT builds it explicitly quantized, so it is "
                               f"measured in int8 (--precision int8), not {precision}")
        if precision == "int8" and not qdq:
            if feed is None:
                raise LatencyError("a float model measured in int8 on TensorRT is quantized first: give its inputs")
            return _quantize_qdq(proto, feed).SerializeToString(), (
                "quantize_static (QDQ, symmetric int8 activations, per-channel int8 weights, MinMax on one random "
                "input), built with TensorRT's int8 and fp16 flags")
        flags = {"fp32": "no precision flag (TF32 where the card has it)", "fp16": "the fp16 flag",
                 "int8": "the int8 and fp16 flags (explicit quantization: the model's own Q/DQ nodes)"}[precision]
        return proto.SerializeToString(), f"the model as stored, built with {flags}"
    if precision == "fp16":
        from onnxconverter_common import float16

        return (float16.convert_float_to_float16(proto, keep_io_types=True).SerializeToString(),
                "onnxconverter-common convert_float_to_float16 (keep_io_types=True)")
    return proto.SerializeToString(), "the model as stored"


class BoundSession:
    """An onnxruntime session whose inputs and outputs stay on the device (``device``: ``cuda``): a run is
    ``run_with_iobinding`` of inputs copied to the device once, then the outputs synchronised; host copies
    are not in its time (as trtexec's GPU compute time leaves them out). Has what
    :func:`profilers.e2e.measure_models` calls: ``get_inputs()`` and ``run(None, feed)``."""

    def __init__(self, sess, device: str = "cuda"):
        self.sess, self.device, self._bound = sess, device, None

    def get_inputs(self):
        return self.sess.get_inputs()

    def get_providers(self):
        return self.sess.get_providers()

    def run(self, _outputs, feed):
        import onnxruntime as ort

        if self._bound is None or self._bound[0] is not feed:
            b = self.sess.io_binding()
            for name, value in feed.items():
                b.bind_ortvalue_input(name, ort.OrtValue.ortvalue_from_numpy(value, self.device, 0))
            for out in self.sess.get_outputs():
                b.bind_output(out.name, self.device)
            self._bound = (feed, b)
        binding = self._bound[1]
        self.sess.run_with_iobinding(binding)
        binding.synchronize_outputs()


def session_factory(target, precision: str, cache_dir: str | None = None, device: str = "cuda", providers=None):
    """``(model, threads, level) -> BoundSession`` on ``target``'s execution provider. A session in which
    onnxruntime did not start that provider (a CUDA or TensorRT library missing: onnxruntime then runs the
    model on the CPU and only warns) is refused with a :class:`LatencyError`, never measured."""
    import onnxruntime as ort

    from .e2e import _source, session_options

    provs = providers if providers is not None else providers_for(target, precision, cache_dir)
    want = provs[0][0] if isinstance(provs[0], tuple) else provs[0]

    def make(model, threads, level):
        sess = ort.InferenceSession(_source(model), session_options(threads, level), providers=provs)
        have = sess.get_providers()
        if want not in have:
            raise LatencyError(f"onnxruntime did not start {want} for {target.name} (session providers: "
                               f"{', '.join(have)}): refusing to measure what would run on the CPU")
        return BoundSession(sess, device)

    return make


def measure_models_gpu(models, target, precision: str = "fp32", rounds: int = 6, phases: int = 3,
                       confirm: float | None = None, max_phases: int = 6, feeds=None, progress=None,
                       budget_ms_per_round: float = 20.0, providers=None, device: str = "cuda") -> dict:
    """Whole models (name -> prepared ONNX bytes, :func:`prepare_model`) timed on ``target``'s GPU runtime with
    the robust protocol of :func:`profilers.e2e.measure_models` (fresh sessions per phase, round-robin rounds,
    median per round, minimum over rounds, extra phases until a second round confirms the fastest); each run
    is a :class:`BoundSession` run. TensorRT engines are cached for the call, so a fresh session loads its
    engine rather than building it again. Returns measure_models' dict per name."""
    import tempfile

    from .e2e import CONFIRM, measure_models

    with tempfile.TemporaryDirectory(prefix="latency-trt-") as cache:
        make = session_factory(target, precision, cache, device=device, providers=providers)
        return measure_models(models, rounds=rounds, phases=phases, threads=1, level="all",
                              budget_ms_per_round=budget_ms_per_round, progress=progress, feeds=feeds,
                              confirm=CONFIRM if confirm is None else confirm, max_phases=max_phases, session=make)


def require_ort_gpu(target) -> None:
    """A :class:`LatencyError` in one line unless this host runs ``target``'s models through onnxruntime-gpu."""
    backend, why = available()
    if backend != "ort-gpu":
        raise LatencyError(f"measuring whole models on {target.name} needs onnxruntime-gpu with its CUDA / TensorRT "
                           f"execution provider ({GPU_INSTALL_HINT})" + (f"; this host has {backend} only (the "
                           f"micro-benchmark mode: latency profile --target {target.name})" if backend else f": {why}"))


def validate_gpu(model, target, precision: str | None = None, shapes=None, batch=None, phases: int = 3,
                 progress=None, providers=None, device: str = "cuda", check_host: bool = True, profile=None) -> dict:
    """Measure ``model`` (an ONNX path) end to end on this host's GPU through ``target``'s runtime and put it
    beside ``target``'s estimate in the same precision: ``latency validate MODEL --target t4 --precision fp16``.

    The measured time is the minimum over rounds of the round medians (:func:`measure_models_gpu`, ``phases``
    fresh-session phases of 2 rounds, up to twice as many until confirmed); the GPU's record (name, compute
    capability, driver, clocks) and the runtime versions come with it. ``providers`` / ``device`` /
    ``check_host``: for a test of the pipeline on another execution provider; ``profile``: the profile to
    estimate from (default: the target's, else its derived cost model). Returns a dict (the ``--json``
    output); ``error_pct`` = 100 * (estimate - measured) / measured."""
    import os

    import onnxruntime as ort

    from latency.estimator import Estimator
    from latency.graph import load_graph
    from latency.targets.gpu import runtime_versions

    from .e2e import CONFIRM, _source, make_inputs, session_options
    from .validate import _FixedShapes, error_pct

    t0 = time.time()
    if target.device != "gpu" and check_host:
        raise LatencyError(f"target {target.name} is not a GPU target")
    if phases < 1:
        raise LatencyError(f"--phases must be at least 1, got {phases}")
    if check_host:
        require_ort_gpu(target)
    path = os.fspath(model)
    graph = load_graph(path, shapes=shapes, batch=batch)  # one-line ModelError/DynamicShapeError on bad input
    precision = precision or default_precision(target, path)
    if precision not in e2e_precisions(target):
        from latency.errors import UnknownPrecision

        raise UnknownPrecision(target.name, precision, e2e_precisions(target))
    try:
        cpu = ort.InferenceSession(_source(path), session_options(1, "all"), providers=["CPUExecutionProvider"])
        feed = make_inputs(_FixedShapes(cpu, graph), path)
        del cpu
    except Exception as e:  # noqa: BLE001 - the runtime's own refusal, in one line
        raise LatencyError(f"onnxruntime cannot load {path}: {type(e).__name__}: {str(e).splitlines()[0][:300]}") \
            from None
    prepared, how = prepare_model(path, target, precision, feed)
    est = Estimator(target, profile=profile).estimate(graph, precision=precision)
    rounds = 2 * phases
    r = measure_models_gpu({"model": prepared}, target, precision, rounds=rounds, phases=phases,
                           max_phases=2 * phases, feeds={"model": feed}, providers=providers, device=device,
                           progress=progress)["model"]
    if r["error"]:
        raise LatencyError(f"{target.name} cannot run {path} in {precision}: {r['error']}")
    provs = providers if providers is not None else providers_for(target, precision)
    warnings = list(est.warnings)
    if not r["confirmed"]:
        warnings.append(f"the end-to-end minimum is unconfirmed: no second round within {CONFIRM:.0%} of the fastest "
                        f"after {r['phases']} phases; rerun, or with more --phases")
    return {
        "model": path, "target": target.name, "precision": precision, "prepared": how,
        "runtime": target.runtime, "providers": [p[0] if isinstance(p, tuple) else p for p in provs],
        "device": {**device_record(), **runtime_versions(target.runtime)} if check_host else {}, "protocol": (
            f"end to end: {phases} phases x 2 rounds, fresh sessions per phase (TensorRT engines cached), up to "
            f"{2 * phases} phases until a second round is within {CONFIRM:.0%} of the fastest, min of round medians; "
            f"inputs and outputs bound on the GPU, each run synchronised"),
        "measured_ms": r["latency_ms"], "median_ms": r["median_ms"], "rounds_ms": r["rounds_ms"],
        "runs_per_round": r["runs_per_round"], "confirmed": r["confirmed"], "first_run_ms": r["first_run_ms"],
        "session_s": r["session_s"],
        "estimate_ms": est.total_ms, "estimate_source": est.profile or "derived (GPU cost model, spec sheet)",
        "error_pct": error_pct(est.total_ms, r["latency_ms"]), "uncovered": len(est.uncovered),
        "warnings": warnings, "seconds": round(time.time() - t0, 1),
    }


def render_validation(res: dict) -> list[str]:
    """The lines ``latency validate`` prints for a GPU target."""
    dev = res["device"]
    card = dev.get("gpu_name") or "?"
    lines = [f"{res['model']} on {res['target']} ({res['runtime']}, {res['precision']}: {res['prepared']})",
             f"measured on {card} (compute capability {dev.get('compute_capability', '?')}, driver "
             f"{dev.get('driver_version', '?')}, SM clock {dev.get('sm_clock_mhz', '?')}/"
             f"{dev.get('sm_clock_max_mhz', '?')} MHz), onnxruntime {dev.get('onnxruntime_version', '?')}"
             + (f", TensorRT {dev['tensorrt_version']}" if dev.get("tensorrt_version") else "")
             + f", providers {', '.join(res['providers'])}",
             f"protocol: {res['protocol']}",
             f"measured  {res['measured_ms']:9.3f} ms (median of rounds {res['median_ms']:.3f} ms)",
             f"estimate  {res['estimate_ms']:9.3f} ms ({res['estimate_source']})"
             + (f", {res['uncovered']} node(s) uncovered" if res["uncovered"] else ""),
             f"error     {res['error_pct']:+9.1f} %" if res["error_pct"] is not None else "error     -"]
    return lines
