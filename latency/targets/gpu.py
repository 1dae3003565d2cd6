"""GPU targets: NVIDIA T4, A10, L4, A100, H100 and H200 running TensorRT.

Each declaration holds the card's spec sheet, every figure with the document it comes from, and is
priced by the GPU cost model (:mod:`latency.cost.gpu`) through TensorRT's graph
(:mod:`latency.fusion.tensorrt`) until a GPU profile is measured: its provenance is ``derived``,
nothing is measured. TensorRT is the runtime, since the published numbers people compare with are
TensorRT's. onnxruntime's CUDA execution provider is the second runtime, as a target variant of each
card (``t4-ort-cuda``, ...): its own pass list (:mod:`latency.fusion.ort_cuda`), the same spec sheet
and cost model.

Peak figures are dense (the datasheets quote the tensor-core ones "with sparsity" on the newer
cards: those are halved here, as the datasheets' own footnotes say). ``fp32``: the CUDA cores'
FMA peak; ``fp16_cuda``: non-tensor half precision; ``tf32``, ``fp16``, ``int8``: tensor cores.
"""

from __future__ import annotations

import json

from .base import Target

_T4_DATASHEET = ("NVIDIA T4 Tensor Core GPU datasheet, https://www.nvidia.com/content/dam/en-zz/Solutions/"
                 "Data-Center/tesla-t4/t4-tensor-core-datasheet-951643.pdf")
_TURING_WP = ("NVIDIA Turing GPU Architecture whitepaper, appendix A (Tesla T4), https://images.nvidia.com/aem-dam/"
              "en-zz/Solutions/design-visualization/technologies/turing-architecture/"
              "NVIDIA-Turing-Architecture-Whitepaper.pdf")
_T4_QUERY = ("deviceQuery on a Tesla T4: 40 multiprocessors, 1590 MHz, L2 4194304 bytes, "
             "https://gist.github.com/Terminus-IMRC/5e4b7782c27106dec287050b323cd059")
_A10_DATASHEET = ("NVIDIA A10 Tensor Core GPU datasheet, https://www.nvidia.com/content/dam/en-zz/Solutions/Data-Center/"
                  "a10/pdf/a10-datasheet.pdf")
_GA102_WP = ("NVIDIA Ampere GA102 GPU Architecture whitepaper (128 FP32 cores per SM), https://www.nvidia.com/content/"
             "PDF/nvidia-ampere-ga-102-gpu-architecture-whitepaper-v2.pdf")
_A10_CARD = ("A10 PCIe card database entry (GA102-890: 9216 cores, 72 SMs, 1695 MHz boost, 6 MB L2), "
             "https://sysrqmts.com/ru/gpus/compare/nvidia-a10-pcie-vs-nvidia-quadro-rtx-4000")
_L4_DATASHEET = ("NVIDIA L4 Tensor Core GPU datasheet, https://resources.nvidia.com/en-us-data-center-overview/"
                 "l4-gpu-datasheet")
_ADA_WP = ("NVIDIA Ada GPU Architecture whitepaper (128 FP32 cores per SM; AD104 L2 48 MB), https://images.nvidia.com/"
           "aem-dam/Solutions/geforce/ada/nvidia-ada-gpu-architecture.pdf")
_L4_CARD = ("L4 card database entries (AD104: 7424 cores, 2040 MHz boost, 48 MB L2), "
            "https://fpsbench.com/compare/gpu/nvidia-l4-vs-nvidia-tesla-m40, https://cputronic.com/de/gpu/nvidia-l4")
_A100_DATASHEET = ("NVIDIA A100 Tensor Core GPU datasheet, https://www.nvidia.com/content/dam/en-zz/Solutions/"
                   "Data-Center/a100/pdf/nvidia-a100-datasheet-us-nvidia-1758950-r4-web.pdf")
_A100_WP = ("NVIDIA A100 Tensor Core GPU Architecture whitepaper, https://images.nvidia.com/aem-dam/en-zz/Solutions/"
            "data-center/nvidia-ampere-architecture-whitepaper.pdf")
_H100_DATASHEET = ("NVIDIA H100 Tensor Core GPU datasheet, https://resources.nvidia.com/en-us-tensor-core/"
                   "nvidia-tensor-core-gpu-datasheet")
_H100_WP = ("NVIDIA H100 Tensor Core GPU Architecture whitepaper, https://resources.nvidia.com/en-us-tensor-core/"
            "gtc22-whitepaper-hopper")
_H200_DATASHEET = ("NVIDIA H200 Tensor Core GPU product page and datasheet (H200 SXM: 141 GB HBM3e, 4.8 TB/s, FP32 67 "
                   "TFLOPS, TF32 989 / FP16 1,979 / INT8 3,958 with sparsity, up to 700 W), "
                   "https://www.nvidia.com/en-us/data-center/h200/")
_H200_DIE = ("the H200 is the H100 SXM5's GH100 die (132 SMs, 16,896 FP32 cores, 50 MB L2) with HBM3e stacks: "
             "https://www.aiminingco.com/gpu/h200/specs, https://ai-hpc.github.io/ai-hardware-engineer-roadmap/ "
             "(8x-H200 Hardware Architecture)")
_H100_CLOCKS = ("H100 SXM5 clocks: 1.83 GHz at which the tensor peaks are quoted, 1.98 GHz max boost, "
                "https://glennklockwood.com/garden/processors/h100")

_GPU_BENCHES = "te42kyfo/gpu-benches at commit 3088b333 (https://github.com/te42kyfo/gpu-benches)"
_L2_A100 = (f"A100 80GB measured: gpu-l2-cache/a100_80.txt of {_GPU_BENCHES}, 5.35-5.48 TB/s from 2 to 25 MB "
            "(every SM reading 512 kB chunks of an L2-resident buffer; DRAM 1.73-1.87 TB/s in the same run); the "
            "40 GB SXM4 card has the same GA100 with 108 SMs at 1410 MHz. Chips and Cheese measured 4.5 TB/s across "
            "the whole 40 MB of an A100-SXM4-40GB ('Nvidia's H100: Funny L2, and Tons of Bandwidth', 2023)")
_L2_HOPPER = (f"H200 measured (the same GH100 die, 132 SMs): gpu-l2-cache/h200.txt of {_GPU_BENCHES}, 9.5-10.3 "
              "TB/s from 5 to 40 MB (DRAM 3.89 TB/s in the same run); NVIDIA publishes no L2 bandwidth for Hopper")
_L2_GA102 = (f"derived: the A40 (GA102, 84 SMs at 1725-1740 MHz) measured 2.39-2.44 TB/s from 0.3 to 10 MB "
             f"(gpu-cache/a40.txt of {_GPU_BENCHES}), 16.7 bytes per SM per clock, times this card's SMs x boost "
             "clock; no measurement of this card found")
_L2_AD10X = (f"derived: the L40 (AD102, 142 SMs at 2490 MHz) measured 5.10-5.33 TB/s from 1.5 to 92 MB "
             f"(gpu-l2-cache/l40.txt of {_GPU_BENCHES}; DRAM 0.80-0.85 TB/s in the same run), 14.7 bytes per SM per "
             "clock, times this card's SMs x boost clock (the 72 W card may hold a lower clock); no measurement of "
             "the L4 or another AD104 found")


def _spec(name, docs, arch, sm, sm_count, boost_mhz, peaks, mem_gbs, l2_mb, memory, power_w, sources, notes="",
          model=None, model_basis="", pcie_gbs=None, l2_gbs=None):
    """A GPU spec sheet: the figures the cost model reads, each with its source (``sources``); ``model``:
    this card's values of the cost model's terms where they were fitted (``model_basis`` says on what)."""
    peak_gflops = {"fp32": 1000.0 * peaks.get("tf32", peaks["fp32"]), "fp16": 1000.0 * peaks["fp16"],
                   "int8": 1000.0 * peaks["int8"]}
    return {
        "name": name, "arch": arch, "sm": sm, "sm_count": sm_count, "boost_mhz": boost_mhz,
        "peak_tflops": dict(peaks), "mem_gbs": mem_gbs, "l2_mb": l2_mb, "memory": memory, "power_w": power_w,
        # the best unit per precision, as the report's roofline reads it
        "peak_gflops": peak_gflops,
        "source": f"the {docs}, through the GPU cost model (latency/cost/gpu.py)",
        "sources": dict(sources), "notes": notes,
        **({"model": dict(model), "model_basis": model_basis} if model else {}),
        # host link, one direction (GB/s): what copying a network's inputs / outputs costs
        **({"pcie_gbs": pcie_gbs} if pcie_gbs else {}),
        # L2 read bandwidth (GB/s) where a figure is known: the cost model's rate for L2 hits
        **({"l2_gbs": l2_gbs} if l2_gbs else {}),
    }


#: NVIDIA T4 (Turing TU104, sm_75), 70 W, 16 GB GDDR6
T4_SPEC = _spec("NVIDIA T4", "NVIDIA T4 datasheet and Turing whitepaper", "Turing", 75, 40, 1590,
                {"fp32": 8.1, "fp16_cuda": 16.2, "fp16": 65.0, "int8": 130.0}, 320, 4.0, "16 GB GDDR6", 70,
                {"sm_count": f"{_TURING_WP}; {_T4_QUERY}", "boost_mhz": f"{_TURING_WP}; {_T4_QUERY}",
                 "fp32": _T4_DATASHEET, "fp16_cuda": _TURING_WP, "fp16": f"{_T4_DATASHEET} (mixed precision)",
                 "int8": _T4_DATASHEET, "mem_gbs": _T4_DATASHEET, "l2_mb": f"{_TURING_WP}; {_T4_QUERY}",
                 "pcie_gbs": f"{_T4_DATASHEET} (x16 PCIe Gen3: 8 GT/s x 16 lanes, 128b/130b, per direction)"},
                "no TF32 (Turing): fp32 GEMMs run on the CUDA cores",
                model={"tensor": 0.75, "dram": 0.80, "launch_us": 5.0, "min_kernel_us": 4.0, "wave_us": 2.0,
                       "conv": 0.50, "conv_int8": 0.30},
                pcie_gbs=15.75,
                model_basis="fitted (multi-start coordinate descent over a grid) on the 14 'fit' figures of "
                            "benchmarks/gpu_published.py (NVIDIA demoBERT on TensorRT 8.4.3; mmdeploy's ResNet-50, "
                            "ResNeXt-50, SE-ResNet-50, ShuffleNetV2 and SRCNN on TensorRT 7.2.3.4; trtexec --fp16 "
                            "MobileNetV3-Large, ResNet-152 and ResNeXt-50 on TensorRT 7.2.3.4; all T4, batch 1); on "
                            "the 17 held-out T4 figures the error is a median -2.2%, 16 of 17 within 25% "
                            "(benchmarks/results/gpu_published.txt)")

#: NVIDIA A10 (Ampere GA102, sm_86), 150 W, 24 GB GDDR6
A10_SPEC = _spec("NVIDIA A10", "NVIDIA A10 datasheet and GA102 whitepaper", "Ampere", 86, 72, 1695,
                 {"fp32": 31.2, "fp16_cuda": 31.2, "tf32": 62.5, "fp16": 125.0, "int8": 250.0}, 600, 6.0,
                 "24 GB GDDR6", 150,
                 {"sm_count": f"9216 CUDA cores ({_A10_DATASHEET}) / 128 per SM ({_GA102_WP}); {_A10_CARD}",
                  "boost_mhz": _A10_CARD, "fp32": _A10_DATASHEET, "fp16_cuda": f"{_GA102_WP} (1:1 with FP32)",
                  "tf32": f"{_A10_DATASHEET} (125 with sparsity, halved)",
                  "fp16": f"{_A10_DATASHEET} (250 with sparsity, halved)",
                  "int8": f"{_A10_DATASHEET} (500 with sparsity, halved)", "mem_gbs": _A10_DATASHEET,
                  "l2_mb": _A10_CARD, "l2_gbs": f"{_L2_GA102}: 72 x 1.695 GHz x 16.7 B"}, l2_gbs=2040)

#: NVIDIA L4 (Ada AD104, sm_89), 72 W, 24 GB GDDR6
L4_SPEC = _spec("NVIDIA L4", "NVIDIA L4 datasheet and Ada whitepaper", "Ada Lovelace", 89, 58, 2040,
                {"fp32": 30.3, "fp16_cuda": 30.3, "tf32": 60.0, "fp16": 121.0, "int8": 242.5}, 300, 48.0,
                "24 GB GDDR6", 72,
                {"sm_count": f"7424 CUDA cores / 128 per SM ({_ADA_WP}); {_L4_CARD}", "boost_mhz": _L4_CARD,
                 "fp32": _L4_DATASHEET, "fp16_cuda": f"{_ADA_WP} (1:1 with FP32)",
                 "tf32": f"{_L4_DATASHEET} (120 with sparsity, halved)",
                 "fp16": f"{_L4_DATASHEET} (242 with sparsity, halved)",
                 "int8": f"{_L4_DATASHEET} (485 with sparsity, halved)", "mem_gbs": _L4_DATASHEET,
                 "l2_mb": f"{_ADA_WP}; {_L4_CARD}", "l2_gbs": f"{_L2_AD10X}: 58 x 2.04 GHz x 14.7 B"}, l2_gbs=1740)

#: NVIDIA A100 SXM4 40 GB (Ampere GA100, sm_80), 400 W, HBM2 (the 80 GB card: 2039 GB/s, same SMs and L2)
A100_SPEC = _spec("NVIDIA A100-SXM4-40GB", "NVIDIA A100 datasheet and whitepaper", "Ampere", 80, 108, 1410,
                  {"fp32": 19.5, "fp16_cuda": 78.0, "tf32": 156.0, "fp16": 312.0, "int8": 624.0}, 1555, 40.0,
                  "40 GB HBM2", 400,
                  {"sm_count": _A100_WP, "boost_mhz": _A100_WP, "fp32": _A100_DATASHEET, "fp16_cuda": _A100_WP,
                   "tf32": _A100_DATASHEET, "fp16": _A100_DATASHEET, "int8": _A100_DATASHEET,
                   "mem_gbs": _A100_DATASHEET, "l2_mb": _A100_WP, "l2_gbs": _L2_A100},
                  "the 80 GB card has 2039 GB/s (A100 80GB datasheet); everything else the same", l2_gbs=5400)

#: NVIDIA H100 SXM5 80 GB (Hopper GH100, sm_90), 700 W, HBM3 (the PCIe card: 114 SMs, 2.0 TB/s)
H100_SPEC = _spec("NVIDIA H100-SXM5-80GB", "NVIDIA H100 datasheet and whitepaper", "Hopper", 90, 132, 1980,
                  {"fp32": 66.9, "fp16_cuda": 133.8, "tf32": 494.7, "fp16": 989.4, "int8": 1978.9}, 3350, 50.0,
                  "80 GB HBM3", 700,
                  {"sm_count": _H100_WP, "boost_mhz": _H100_CLOCKS, "fp32": _H100_DATASHEET,
                   "fp16_cuda": f"{_H100_WP}; {_H100_CLOCKS}",
                   "tf32": f"{_H100_DATASHEET} (989 with sparsity, halved)",
                   "fp16": f"{_H100_DATASHEET} (1979 with sparsity, halved)",
                   "int8": f"{_H100_DATASHEET} (3958 with sparsity, halved)", "mem_gbs": _H100_DATASHEET,
                   "l2_mb": _H100_WP, "l2_gbs": _L2_HOPPER},
                  "the PCIe card (H100 PCIe) has 114 SMs, 2.0 TB/s HBM2e and 756/1513 dense fp16/int8 peaks: "
                  "a different target", l2_gbs=9800)


#: NVIDIA H200 SXM 141 GB (Hopper GH100, sm_90), 700 W, HBM3e: the H100 SXM5's compute with 43% more bandwidth
H200_SPEC = _spec("NVIDIA H200", "NVIDIA H200 datasheet and the H100 whitepaper (same GH100 die)", "Hopper", 90, 132,
                  1980, {"fp32": 66.9, "fp16_cuda": 133.8, "tf32": 494.7, "fp16": 989.4, "int8": 1978.9}, 4800, 50.0,
                  "141 GB HBM3e", 700,
                  {"sm_count": f"{_H200_DIE}; {_H100_WP}", "boost_mhz": f"{_H200_DIE}; {_H100_CLOCKS}",
                   "fp32": _H200_DATASHEET, "fp16_cuda": f"{_H100_WP}; {_H100_CLOCKS} (same die)",
                   "tf32": f"{_H200_DATASHEET} (989 with sparsity, halved)",
                   "fp16": f"{_H200_DATASHEET} (1,979 with sparsity, halved)",
                   "int8": f"{_H200_DATASHEET} (3,958 with sparsity, halved)", "mem_gbs": _H200_DATASHEET,
                   "l2_mb": f"{_H200_DIE}; {_H100_WP}", "l2_gbs": _L2_HOPPER},
                  "the H200 NVL (PCIe, 600 W) has the same memory but lower quoted peaks (FP16 1,671 with sparsity): "
                  "a different target", l2_gbs=9800)


def _spec_of(name, spec):
    """The spec the cost model prices ``name`` with: measured terms over the derived ones where
    ``latency profile --target NAME`` measured them on such a GPU (:func:`latency.cost.gpu.load_terms`)."""
    from ..cost.gpu import calibrated_spec, load_terms

    doc = load_terms(name) if name else None
    if not doc:
        return spec
    key = (name, doc.get("measured_at"), json.dumps(doc["terms"], sort_keys=True))
    hit = _CALIBRATED.get(key)
    if hit is None:  # one spec object per measurement, so that model_for builds its model once
        hit = _CALIBRATED[key] = calibrated_spec(spec, doc)
    return hit


_CALIBRATED: dict = {}


def _trt_rules(spec, name=None):
    def passes():
        from ..cost.gpu import model_for
        from ..fusion.tensorrt import tensorrt_rules

        return tensorrt_rules(sm=spec["sm"], tf32="tf32" in spec["peak_tflops"],
                              pricer=model_for(_spec_of(name, spec)).price)
    return passes


def _cost(spec, name=None):
    def model():
        from ..cost.gpu import model_for

        return model_for(_spec_of(name, spec))
    return model


GPU_INSTALL = ("install onnxruntime-gpu (pip install 'latency[gpu]') for the operator sweep, or PyTorch / CuPy "
               "with CUDA for the micro-benchmark mode")


def gpu_backend() -> tuple:
    """(measuring backend, why not) on this host: ``ort-gpu`` (onnxruntime-gpu with the CUDA or TensorRT
    execution provider), ``torch`` or ``cupy`` (the micro-benchmark mode), or None and what to install.
    Light: looks for the driver and the packages, imports only onnxruntime (and torch where it is there)."""
    import importlib.util
    import shutil
    from pathlib import Path

    def has(mod):
        try:
            return importlib.util.find_spec(mod) is not None
        except (ImportError, ValueError):
            return False

    if shutil.which("nvidia-smi") is None and not Path("/dev/nvidia0").exists():
        return None, f"no NVIDIA GPU on this host (no nvidia-smi, no /dev/nvidia0): run on a GPU host and {GPU_INSTALL}"
    if has("onnxruntime"):
        import onnxruntime as ort

        if {"CUDAExecutionProvider", "TensorrtExecutionProvider"} & set(ort.get_available_providers()):
            return "ort-gpu", ""
    if has("torch"):
        import torch

        if torch.cuda.is_available():
            return "torch", ""
    if has("cupy"):
        return "cupy", ""
    return None, f"an NVIDIA GPU is here but no GPU runtime is installed: {GPU_INSTALL}"


def _host_check(_host) -> str:
    return gpu_backend()[1]


# ---- the measuring GPU's fingerprint -------------------------------------------------------------------------

#: nvidia-smi fields of a GPU's record -> its keys; ``compute_cap`` needs driver 510 or later (asked apart)
SMI_FIELDS = {"name": "gpu_name", "driver_version": "driver_version", "clocks.max.sm": "sm_clock_max_mhz",
              "clocks.max.mem": "mem_clock_max_mhz", "clocks.sm": "sm_clock_mhz", "memory.total": "memory_total_mib",
              "power.limit": "power_limit_w", "pci.bus_id": "pci_bus_id"}
#: the keys of a GPU's record that name the card (the rest, current clock, power limit, bus, describe its state)
GPU_IDENTITY = ("gpu_name", "compute_capability", "driver_version", "sm_clock_max_mhz", "mem_clock_max_mhz")


def _smi(fields, index: int) -> list[str] | None:
    import subprocess

    try:
        r = subprocess.run(["nvidia-smi", f"--query-gpu={','.join(fields)}", "--format=csv,noheader,nounits",
                            "-i", str(index)], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None
    if r.returncode != 0 or not r.stdout.strip():
        return None
    return [v.strip() for v in r.stdout.strip().splitlines()[0].split(",")]


def read_gpu(index: int = 0) -> dict:
    """GPU ``index`` as nvidia-smi reports it (keys of :data:`SMI_FIELDS` and ``compute_capability``);
    a :class:`LatencyError` where there is no NVIDIA GPU or nvidia-smi cannot be read."""
    import shutil

    from ..errors import LatencyError

    if shutil.which("nvidia-smi") is None:
        raise LatencyError(f"no NVIDIA GPU on this host (no nvidia-smi): a GPU target's fingerprint names the card "
                           f"it was measured on; run on a GPU host and {GPU_INSTALL}")
    vals = _smi(tuple(SMI_FIELDS), index)
    if vals is None or len(vals) != len(SMI_FIELDS):
        raise LatencyError(f"nvidia-smi cannot describe GPU {index} on this host")
    rec = {key: v for key, v in zip(SMI_FIELDS.values(), vals) if v and not v.startswith("[")}
    cap = _smi(("compute_cap",), index)
    if cap and cap[0] and not cap[0].startswith("["):
        rec["compute_capability"] = cap[0]
    return rec


def runtime_versions(runtime: str) -> dict:
    """Versions of what runs a GPU target's kernels here: onnxruntime (with its GPU providers) and, for
    TensorRT, the TensorRT library (its Python module, else ``getInferLibVersion`` of libnvinfer);
    a version that cannot be found is left out."""
    import importlib.util

    out: dict = {}
    if importlib.util.find_spec("onnxruntime") is not None:
        import onnxruntime as ort

        out["onnxruntime_version"] = ort.__version__
    if runtime == "tensorrt":
        v = None
        if importlib.util.find_spec("tensorrt") is not None:
            try:
                import tensorrt

                v = tensorrt.__version__
            except Exception:  # noqa: BLE001 - a broken install: try the library itself
                v = None
        if v is None:
            v = _nvinfer_version()
        if v:
            out["tensorrt_version"] = v
    return out


def _nvinfer_version() -> str | None:
    import ctypes

    for lib in ("libnvinfer.so", "libnvinfer.so.10", "libnvinfer.so.8"):
        try:
            n = int(ctypes.CDLL(lib).getInferLibVersion())
        except (OSError, AttributeError):
            continue
        # TensorRT 10: major * 10000 + minor * 100 + patch; earlier: major * 1000 + minor * 100 + patch
        return (f"{n // 10000}.{n // 100 % 100}.{n % 100}" if n >= 10000 else f"{n // 1000}.{n // 100 % 10}.{n % 100}")
    return None


def gpu_fingerprint(target, gpu: dict | None = None, versions: dict | None = None) -> dict:
    """What identifies the device a GPU target's rows were measured on: the card (name, compute
    capability, driver, maximum SM and memory clocks: :data:`GPU_IDENTITY`) and the runtime (runtime,
    its version, provider). ``gpu``: a record as :func:`read_gpu` returns it (default: this host's GPU 0);
    ``versions``: as :func:`runtime_versions` (default: this host's). Two cards of one target (an H100
    SXM5 and an H100 PCIe under ``h100``, or one card on two drivers) get two fingerprints, so two target
    ids in a profile database, and ``latency db merge`` keeps them apart."""
    gpu = read_gpu() if gpu is None else gpu
    versions = runtime_versions(target.runtime) if versions is None else versions
    fp = {k: gpu.get(k) for k in GPU_IDENTITY}
    runtime_version = versions.get("tensorrt_version") if target.runtime == "tensorrt" else \
        versions.get("onnxruntime_version")
    fp.update({"runtime": target.runtime, "runtime_version": runtime_version, "provider": target.provider,
               "isa": target.isa, "threads": target.threads})
    if target.runtime == "tensorrt":  # measured through onnxruntime-gpu's TensorRT execution provider
        fp["onnxruntime_version"] = versions.get("onnxruntime_version")
    return fp


def gpu_device_record(target, gpu: dict | None = None, versions: dict | None = None) -> dict:
    """The device record of a GPU profile (:func:`latency.profiles.write_device_record`): the card as
    :func:`read_gpu` reports it and the runtime versions, ``kind`` ``gpu``."""
    gpu = read_gpu() if gpu is None else gpu
    versions = runtime_versions(target.runtime) if versions is None else versions
    return {"kind": "gpu", "vendor": "NVIDIA", **gpu, **versions}


def _gpu(name, spec, isa, what):
    return Target(name, f"{what}, TensorRT (derived from the spec sheet; no profile measured)", "gpu", "tensorrt",
                  "TensorRT", isa, 1, None, "gpu", spec=spec, fusion=_trt_rules(spec, name), cost=_cost(spec, name),
                  host_check=_host_check, fingerprinter=gpu_fingerprint)


def _ort_cuda_rules(spec):
    def passes():
        from ..fusion.ort_cuda import ort_cuda_rules

        return ort_cuda_rules(sm=spec["sm"], tf32="tf32" in spec["peak_tflops"])
    return passes


# The second runtime is a target variant (``t4-ort-cuda``) rather than a ``--runtime`` option: a target
# in this registry *is* a device + runtime + provider, and everything keyed by a target name follows
# from that (a profile's rows and fingerprint in the store, `latency targets`, `latency profile --target`,
# the pass list a target's declaration names). A runtime flag would make two runtimes share one target
# name and so one profile; a variant keeps the CUDA EP's measurements apart from TensorRT's, and needs no
# option on every command that takes --target.
def _ort_gpu(name, spec, isa, what):
    return Target(name, f"{what}, onnxruntime CUDA EP (derived from the spec sheet; no profile measured)", "gpu",
                  "onnxruntime", "CUDAExecutionProvider", isa, 1, None, "gpu", spec=spec, fusion=_ort_cuda_rules(spec),
                  cost=_cost(spec, name.split("-ort-cuda")[0]),  # the card's measured terms
                  host_check=_host_check, fingerprinter=gpu_fingerprint)


_CARDS = (
    ("t4", T4_SPEC, "cuda-sm75", "NVIDIA T4 GPU (Turing, sm_75, 70 W)"),
    ("a10", A10_SPEC, "cuda-sm86", "NVIDIA A10 GPU (Ampere, sm_86, 150 W)"),
    ("l4", L4_SPEC, "cuda-sm89", "NVIDIA L4 GPU (Ada Lovelace, sm_89, 72 W)"),
    ("a100", A100_SPEC, "cuda-sm80", "NVIDIA A100 SXM4 40 GB GPU (Ampere, sm_80)"),
    ("h100", H100_SPEC, "cuda-sm90", "NVIDIA H100 SXM5 80 GB GPU (Hopper, sm_90)"),
    ("h200", H200_SPEC, "cuda-sm90", "NVIDIA H200 SXM 141 GB GPU (Hopper, sm_90)"),
)

TARGETS = tuple(_gpu(*c) for c in _CARDS) + tuple(_ort_gpu(f"{c[0]}-ort-cuda", *c[1:]) for c in _CARDS)

