"""The GPU cost model: one kernel's time on an NVIDIA GPU, derived from the card's spec sheet.

Per kernel, in microseconds::

    time = max(compute, memory, min_kernel) + launch

* ``compute``: GEMM-like kernels (convolutions as implicit GEMMs, MatMul/Gemm, fused attention, the
  steps of a recurrent layer) run as output tiles of tm x tn spread over the SMs. A tile of a wave
  takes ``2 * tm * tn * K / (per-SM achievable throughput * tile efficiency)`` and the kernel takes
  ``ceil(tiles / SMs)`` waves (wave quantisation); K and N are first padded to the vector width of
  the precision's tensor-core format (tile quantisation of the channels). As TensorRT times its
  tactics and keeps the fastest, the model prices a set of tile shapes and split-K factors and
  keeps the fastest. The throughput is the spec-sheet peak of the precision's unit (tensor cores
  for fp16/int8, and for fp32 where the card has TF32, which TensorRT enables by default; CUDA
  cores otherwise) times the achievable fraction :data:`ACHIEVABLE`. Other kernels compute at the
  CUDA-core rate.
* ``memory``: the bytes a kernel moves, from DRAM at an achievable fraction of the quoted
  bandwidth. An input activation small enough to stay in L2 since its producer wrote it is read
  from L2 at the card's L2 bandwidth (``l2_gbs`` of its spec sheet: measured on the card or on a
  chip of its architecture scaled by SMs x clock; :data:`L2_SPEEDUP` times the DRAM rate where no
  figure is known); a GEMM re-reads its operands once per row or column of tiles, from L2 when they
  fit there, else from DRAM.
* ``min_kernel``: however little a kernel does it occupies the GPU this long (small kernels are
  latency-bound).
* ``launch``: what every kernel adds beyond its modelled work: the gap between two dependent kernels
  on one stream and the ramp-up and tail of its grid. Each wave of a GEMM also pays ``wave_us``
  (filling its operand pipeline, writing its last tile).

Per inference: ``per_run_us`` (the engine's enqueue and the synchronisation that ends it), carried
as an :class:`~latency.overhead.OverheadModel`.

The numbers are derived, not measured: :data:`ACHIEVABLE`, the tile efficiencies and the three
latency terms are stated assumptions (each with its basis below); ``benchmarks/gpu_published.py``
compares the result with published TensorRT T4 latencies and ``benchmarks/gpu_check.py`` measures
these very terms on a GPU. A target's spec may override any of them (``spec["model"]``).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..ops import Config, bytes_moved, conv_out_shape, convt_out_shape, elem_bytes, get_kind, matmul_dims

#: the source label of every price this model gives
SOURCE = "derived:gpu-model"

#: fraction of the spec-sheet peak that a well-tuned kernel sustains, per unit, and its basis
ACHIEVABLE = {
    "tensor": (0.65, "assumed: cuBLAS/CUTLASS tensor-core GEMMs sustain roughly 65-85% of the dense peak on "
                     "large shapes; the low end, because the peaks are quoted at the boost clock and the "
                     "70-75 W cards (T4, L4) run below it under sustained tensor load"),
    "cuda": (0.70, "assumed: SIMT (CUDA-core) FMA kernels sustain roughly 70% of the FP32 peak"),
    "dram": (0.80, "assumed: streaming kernels reach roughly 80% of the quoted DRAM bandwidth (GDDR6 and HBM)"),
}

#: the share of a GEMM's achievable tensor-core rate that an implicit-GEMM convolution kernel sustains
#: (``conv``: fp16 / tf32; ``conv_int8``: int8), and its basis. The values are the T4's, fitted on the fit
#: half of benchmarks/gpu_published.py (the only card with published batch-1 CNN latencies in fp16 and
#: int8 there); every other card takes the same shares until it is measured
CONV_EFFICIENCY = {
    "conv": (0.50, "implicit-GEMM convolutions gather their A operand through im2col index arithmetic, one filter "
                  "tap at a time, and at batch 1 run few CTAs per SM: they sustain less of the tensor-core rate than "
                  "a GEMM of the same M x N x K (cuDNN / TensorRT convolution tactics); fitted on the T4 "
                  "(benchmarks/gpu_published.py --fit)"),
    "conv_int8": (0.30, "int8 convolutions run on IMMA in TensorRT's channel-interleaved formats (kCHW32 / kCHW4): at "
                       "batch 1 they gain little over fp16 (mmdeploy's TensorRT 7.2 T4 table: int8 only 3-10% faster "
                       "than fp16 on ResNet-50, ResNeXt-50, SE-ResNet-50 and ShuffleNetV2), a far smaller gain than "
                       "the 2x of the int8 peak; fitted on the T4 (benchmarks/gpu_published.py --fit)"),
}

#: how much faster an L2 hit is read than DRAM where the spec sheet gives no L2 bandwidth (``l2_gbs``), and its basis
L2_SPEEDUP = (3.0, "A100 whitepaper: L2 read bandwidth 5120 B/clk (7.2 TB/s at 1410 MHz), 4.6x its HBM2; "
                   "taken as 3x for the narrower L2 of the smaller parts; used only for a card whose spec sheet "
                   "has no l2_gbs")
#: the share of L2 an activation may use and still be there for its consumer, and its basis
L2_SHARE = (0.5, "assumed: half the L2; the rest holds the weights and tiles streaming through it")

#: fixed costs per kernel and per inference (us), and their basis
LATENCY = {
    "min_kernel_us": (2.5, "assumed: the shortest a kernel with any work keeps the GPU busy (grid launch, one "
                           "wave, write-back); measured by benchmarks/gpu_check.py"),
    "launch_us": (2.0, "assumed: what every kernel adds beyond its modelled work, the gap between two dependent "
                       "kernels on one stream and the ramp-up and tail of its grid; measured by "
                       "benchmarks/gpu_check.py"),
    "wave_us": (1.0, "assumed: what each wave of GEMM tiles adds beyond its multiply-adds, two DRAM round trips "
                     "(the first operand stage in, the last output tile out) of about 0.5 us each"),
    "per_run_us": (10.0, "assumed: one TensorRT enqueue and the event that ends it, beyond its kernels"),
}

#: the share of the host link's per-direction rate a pinned-memory copy reaches, and its basis
PCIE_ACHIEVABLE = (0.80, "assumed: pinned cudaMemcpyAsync reaches roughly 12-13 of the 15.75 GB/s of PCIe Gen3 x16")
#: the fixed cost of one host<->device copy (us), and its basis
COPY_US = (8.0, "assumed: one cudaMemcpyAsync's setup and completion, a few microseconds, with its stream sync")

#: tensor-core threadblock tiles (tm, tn, efficiency): CUTLASS's default GEMM tile shapes; a smaller tile
#: reuses each loaded operand less, so it sustains less of the SM's peak (efficiencies assumed)
TENSOR_TILES = ((256, 128, 1.00), (128, 256, 1.00), (128, 128, 0.95), (128, 64, 0.88), (64, 128, 0.88),
                (64, 64, 0.72), (64, 32, 0.55), (32, 32, 0.40))
#: CUDA-core (SIMT) tiles, the same way
CUDA_TILES = ((128, 128, 1.00), (128, 64, 0.92), (64, 64, 0.80), (32, 32, 0.55))
#: split-K factors a tactic may use (the partial sums are then reduced through memory)
SPLIT_K = (1, 2, 3, 4, 6, 8, 12, 16)
#: channels are padded to the vector width of the precision's tensor-core format: TensorRT's kCHW32 for
#: int8 and kHWC8 for fp16 (developer guide, "Data Format Descriptions"); 4 channels (kCHW4) below that
ALIGN = {"int8": 32, "fp16": 8, "tf32": 4, "fp32": 1}
#: query rows one CTA of a fused attention kernel handles (TensorRT's fused MHA kernels: 64)
ATTENTION_ROWS = 64

#: op kinds priced as GEMMs
GEMM_KINDS = ("Conv", "ConvTranspose", "MatMul", "Attention", "Einsum", "LSTM", "GRU", "RNN")


def _prod(xs) -> int:
    p = 1
    for v in xs:
        p *= int(v)
    return p


def _up(v: float, to: int) -> int:
    return int(-(-int(v) // to) * to) if to > 1 else int(v)


@dataclass(frozen=True)
class _Gemm:
    """One GEMM-like kernel as the model sees it: ``batch`` GEMMs of M x N x K and the bytes of its
    operands (A: the activation, B: the weights or second operand, C: the output)."""

    batch: int
    m: int
    n: int
    k: int              # reduction length per tap: input channels per group (convolutions), K (GEMMs)
    a_bytes: float
    b_bytes: float
    c_bytes: float
    extra_bytes: float = 0.0
    taps: int = 1       # kernel taps (kh x kw) a convolution multiplies its channels by
    rows: int = 0       # fixed CTA rows (fused attention: one CTA per 64 query rows over every key), 0: free
    conv: bool = False  # an implicit-GEMM convolution (priced at CONV_EFFICIENCY of the GEMM rate)
    cuda_flops: float = 0.0   # work done on the CUDA cores beside the GEMM (softmax of fused attention)


class GpuCostModel:
    """Prices kernels (:class:`latency.ops.Config`) on one GPU from its spec sheet ``spec``.

    ``spec`` (a GPU target's declaration): ``sm_count``, ``peak_tflops`` per unit (``fp32``,
    ``fp16_cuda``, ``tf32``, ``fp16``, ``int8``: dense, the tensor-core ones on the tensor cores),
    ``mem_gbs``, ``l2_mb``, ``name``; optional ``model`` overrides of :data:`ACHIEVABLE` (as
    ``{"tensor": 0.7, ...}``) and :data:`LATENCY` terms. Pure and cheap: :meth:`price` is a few
    dozen arithmetic operations per tile shape.
    """

    def __init__(self, spec: dict):
        self.spec = spec
        over = dict(spec.get("model") or {})
        self.eff = {u: float(over.get(u, v[0])) for u, v in ACHIEVABLE.items()}
        self.lat = {t: float(over.get(t, v[0])) for t, v in LATENCY.items()}
        self.conv = {t: float(over.get(t, v[0])) for t, v in CONV_EFFICIENCY.items()}
        self.sms = int(spec["sm_count"])
        self.peak = {u: float(v) for u, v in spec["peak_tflops"].items() if v}
        self.bw = float(spec["mem_gbs"]) * 1e3 * self.eff["dram"]          # bytes per us
        self.l2 = float(spec["l2_mb"]) * 1e6 * L2_SHARE[0]
        l2_gbs = over.get("l2_gbs", spec.get("l2_gbs"))
        self.l2_bw = float(l2_gbs) * 1e3 if l2_gbs else self.bw * L2_SPEEDUP[0]   # bytes per us
        self.name = spec.get("name", "GPU")

    # -- units -----------------------------------------------------------------------------------

    def tensor_unit(self, precision: str) -> tuple[str, float, int, tuple]:
        """(unit name, achievable TFLOPS, channel alignment, tiles) a GEMM at ``precision`` runs on."""
        if precision in ("int8", "int8_dynamic") and "int8" in self.peak:
            return "int8 tensor cores", self.peak["int8"] * self.eff["tensor"], ALIGN["int8"], TENSOR_TILES
        if precision == "fp16" and "fp16" in self.peak:
            return "fp16 tensor cores", self.peak["fp16"] * self.eff["tensor"], ALIGN["fp16"], TENSOR_TILES
        if precision == "fp32" and "tf32" in self.peak:  # TensorRT enables TF32 by default (BuilderFlag::kTF32)
            return "tf32 tensor cores", self.peak["tf32"] * self.eff["tensor"], ALIGN["tf32"], TENSOR_TILES
        return "fp32 CUDA cores", self.peak["fp32"] * self.eff["cuda"], ALIGN["fp32"], CUDA_TILES

    def cuda_tflops(self, precision: str) -> float:
        """Achievable CUDA-core throughput at ``precision`` (fp16: the card's non-tensor fp16 rate;
        int8: dp4a, 4 int8 multiply-adds per FP32 lane)."""
        if precision == "fp16":
            return self.peak.get("fp16_cuda", self.peak["fp32"]) * self.eff["cuda"]
        if precision in ("int8", "int8_dynamic"):
            return 4.0 * self.peak["fp32"] * self.eff["cuda"]
        return self.peak["fp32"] * self.eff["cuda"]

    # -- memory ----------------------------------------------------------------------------------

    def _memory_us(self, dram_bytes: float, l2_bytes: float) -> float:
        return dram_bytes / self.bw + l2_bytes / self.l2_bw

    def _split_input(self, input_bytes: float) -> tuple[float, float]:
        """(DRAM, L2) bytes of reading an activation its producer just wrote."""
        return (0.0, input_bytes) if input_bytes <= self.l2 else (input_bytes, 0.0)

    # -- kernels ---------------------------------------------------------------------------------

    def price(self, cfg: Config) -> tuple[float, str, str]:
        """(latency_us, ``derived:gpu-model``, the terms) of one kernel."""
        g = self._as_gemm(cfg)
        if g is not None:
            us, terms = self._gemm_us(g, cfg.precision)
        else:
            us, terms = self._stream_us(cfg)
        floor, launch = self.lat["min_kernel_us"], self.lat["launch_us"]
        bound = terms.pop("bound")
        if us < floor:
            us, bound = floor, f"latency-bound (a kernel takes at least {floor:g} us)"
        return (us + launch, SOURCE, f"{self.name}: " + "; ".join(terms.values()) +
                f"; {bound}; + {launch:g} us per kernel (launch gap, ramp-up and tail)")

    def _as_gemm(self, cfg: Config) -> _Gemm | None:
        """The GEMM view of a GEMM-like kernel; None for the streaming ones (and depthwise convs)."""
        kind, p, prec = cfg.kind, cfg.params, cfg.precision
        if kind not in GEMM_KINDS:
            return None
        eb, wb = elem_bytes(prec), elem_bytes(prec, weights=True)
        work = get_kind(kind).work(p)
        if kind == "Conv":
            g, cin, cout = p["group"], p["x"][1], p["cout"]
            cpg = cin // g
            if g > 1 and cpg < 8:  # depthwise and narrow grouped convs run on the CUDA cores
                return None
            out = conv_out_shape(p)
            return _Gemm(g, p["x"][0] * _prod(out[2:]), cout // g, cpg, work["in_elems"] * eb,
                         work["w_elems"] * wb, work["out_elems"] * eb,
                         extra_bytes=work["out_elems"] * eb if p.get("sum") else 0.0, taps=_prod(p["kernel"]),
                         conv=True)
        if kind == "ConvTranspose":
            g = p["group"]
            out = convt_out_shape(p)
            m, n = p["x"][0] * _prod(out[2:]), p["cout"] // g
            k = max(1, round(work["flops"] / (2.0 * g * m * n)))
            return _Gemm(g, m, n, k, work["in_elems"] * eb, work["w_elems"] * wb, work["out_elems"] * eb, conv=True)
        if kind == "MatMul":
            bt, m, k, n = matmul_dims(p)
            b_bytes = work["w_elems"] * (wb if p.get("const_b") else eb)
            return _Gemm(bt, m, n, k, work["in_elems"] * eb, b_bytes, work["out_elems"] * eb)
        if kind == "Einsum":
            f = get_kind(kind).extra(p)
            if f.get("n_inputs") != 2:
                return None
            return _Gemm(f["batch"], f["m"], f["n"], f["k"], work["in_elems"] * eb, 0.0, work["out_elems"] * eb)
        if kind == "Attention":
            b, s, kv, h, d = p["batch"], p["seq_len"], p["past_len"] + p["kv_len"], p["num_heads"], p["head_size"]
            nkv = p.get("kv_heads", h)
            q = b * s * h * d
            kvb = 2 * b * kv * nkv * d
            mask = b * s * kv if p.get("mask") else 0
            # QK^T (K = d) then PV (K = kv) over the same CTAs: one GEMM of 2 x s x kv x d per (batch, head)
            return _Gemm(b * h, s, kv, 2 * d, q * eb, kvb * eb, q * eb, extra_bytes=mask * eb, rows=ATTENTION_ROWS,
                         cuda_flops=5.0 * b * h * s * kv)
        if kind in ("LSTM", "GRU", "RNN"):
            return None  # priced step by step in _stream_us
        return None

    def conv_share(self, precision: str, unit: str) -> float:
        """The share of the GEMM rate an implicit-GEMM convolution on ``unit`` sustains (1 on CUDA cores)."""
        if "tensor" not in unit:
            return 1.0
        return self.conv["conv_int8" if precision in ("int8", "int8_dynamic") else "conv"]

    def _gemm_us(self, g: _Gemm, precision: str) -> tuple[float, dict]:
        unit, tflops, align, tiles = self.tensor_unit(precision)
        conv_share = self.conv_share(precision, unit) if g.conv else 1.0
        tflops *= conv_share
        per_sm = tflops * 1e6 / self.sms                       # flop per us per SM
        # channels pad to the format's vector width; a layer of a few channels (an image input) to 4 (kCHW4)
        k_align = align if g.k > 4 else min(align, 4)
        k = _up(g.k, k_align) * g.taps
        n = _up(g.n, align)
        a_dram, a_l2 = self._split_input(g.a_bytes)
        unique = a_dram + g.b_bytes + g.c_bytes + g.extra_bytes
        cuda_us = g.cuda_flops / (self.cuda_tflops("fp32") * 1e6) if g.cuda_flops else 0.0
        shapes = [(g.rows, n, 0.72)] if g.rows else tiles
        best = None
        for tm, tn, eff in shapes:
            gm, gn = -(-g.m // tm), -(-n // tn)
            # each operand is read again by every other tile column (A) or row (B): from L2 when the
            # operand fits there, else from DRAM
            again = {"a": g.a_bytes * (gn - 1), "b": g.b_bytes * (gm - 1) * (1 if g.b_bytes else 0)}
            re_dram = sum(v for o, v in again.items() if (g.a_bytes if o == "a" else g.b_bytes) > self.l2)
            re_l2 = sum(again.values()) - re_dram
            for s in SPLIT_K:
                if s > 1 and (g.rows or k // s < 64):
                    break
                ks = -(-k // s)
                ntiles = g.batch * gm * gn * s
                waves = -(-ntiles // self.sms)
                t_tile = 2.0 * tm * tn * ks / (per_sm * eff)
                compute = waves * (t_tile + cuda_us * self.sms / ntiles + self.lat["wave_us"])
                reduce = (2.0 * s * g.batch * g.m * g.n * 4.0) if s > 1 else 0.0  # fp32 partial sums out and in
                dram = unique + re_dram + reduce
                memory = self._memory_us(dram, a_l2 + re_l2)
                t = max(compute, memory)
                if best is None or t < best[0]:
                    best = (t, tm, tn, eff, s, ntiles, waves, compute, memory, dram, a_l2 + re_l2)
        t, tm, tn, eff, s, ntiles, waves, compute, memory, dram, l2 = best
        kk = g.k * g.taps
        pad = f" (K {kk}->{k}, N {g.n}->{n} padded to the format's {k_align}/{align})" if (k != kk or n != g.n) else ""
        share = self.eff["tensor" if "tensor" in unit else "cuda"] * conv_share
        what = "implicit-GEMM convolution" if g.conv else "GEMM"
        terms = {
            "compute": f"compute {compute:.2f} us: {g.batch}x {what} M{g.m} N{g.n} K{kk}{pad} on {unit} at "
                       f"{tflops:.1f} TFLOPS achievable ({share:.2f} of peak"
                       + (f", {conv_share:.2f} of the GEMM rate" if conv_share != 1.0 else "")
                       + f"), tile {tm}x{tn} (efficiency {eff:.2f})"
                       + (f", split-K {s}" if s > 1 else "") + f", {ntiles} tiles on {self.sms} SMs = {waves} wave(s) "
                       f"of {self.lat['wave_us']:g} us fixed each",
            "memory": f"memory {memory:.2f} us: {dram / 1e6:.3f} MB DRAM at {self.bw / 1e3:.0f} GB/s achievable"
                      + (f" + {l2 / 1e6:.3f} MB from L2 at {self.l2_bw / 1e3:.0f} GB/s" if l2 else ""),
            "bound": "compute-bound" if compute >= memory else "memory-bound",
        }
        return t, terms

    def _stream_us(self, cfg: Config) -> tuple[float, dict]:
        """Kernels that stream their operands: elementwise, reductions, normalisations, data movement,
        depthwise convolutions; recurrent layers step by step."""
        kind, p, prec = cfg.kind, cfg.params, cfg.precision
        if kind in ("LSTM", "GRU", "RNN"):
            return self._recurrent_us(cfg)
        work = get_kind(kind).work(p)
        eb = elem_bytes(prec)
        if kind == "Gather":  # an embedding lookup reads the gathered rows, not the whole table
            total = 2.0 * work["out_elems"] * eb + work["in_elems"] * 8
            inputs = work["in_elems"] * 8
        elif kind == "Quant":  # float on one side, int8 on the other
            total = work["in_elems"] * (4.0 + 1.0)
            inputs = work["in_elems"] * (4.0 if p.get("op") == "QuantizeLinear" else 1.0)
        else:
            total = bytes_moved(get_kind(kind), p, prec)
            inputs = work["in_elems"] * eb
        a_dram, a_l2 = self._split_input(inputs)
        dram = total - inputs + a_dram
        memory = self._memory_us(dram, a_l2)
        rate = self.cuda_tflops(prec)
        compute = work["flops"] / (rate * 1e6)
        what = "direct convolution on the CUDA cores" if kind == "Conv" else f"{kind} on the CUDA cores"
        terms = {
            "compute": f"compute {compute:.2f} us: {work['flops'] / 1e6:.3f} MFLOP, {what} at {rate:.1f} TFLOPS "
                       f"achievable",
            "memory": f"memory {memory:.2f} us: {dram / 1e6:.3f} MB DRAM" + (f" + {a_l2 / 1e6:.3f} MB from L2" if a_l2
                                                                             else "") +
                      f" at {self.bw / 1e3:.0f} GB/s achievable",
            "bound": "compute-bound" if compute >= memory else "memory-bound",
        }
        return max(compute, memory), terms

    def _recurrent_us(self, cfg: Config) -> tuple[float, dict]:
        """A recurrent layer: the input projection of every step as one GEMM, then each step's recurrent
        GEMM in turn (serial), each at least a minimal kernel."""
        from ..ops import RECURRENT_GATES

        p, prec = cfg.params, cfg.precision
        gates, t, b, i, h = RECURRENT_GATES[cfg.kind], p["seq_len"], p["batch"], p["input_size"], p["hidden_size"]
        dirs = 2 if p["direction"] == "bidirectional" else 1
        eb = elem_bytes(prec)
        proj, _ = self._gemm_us(_Gemm(dirs, t * b, gates * h, i, t * b * i * eb, gates * h * i * eb,
                                      t * b * gates * h * eb), prec)
        step, _ = self._gemm_us(_Gemm(dirs, b, gates * h, h, b * h * eb, gates * h * h * eb, b * gates * h * eb), prec)
        step = max(step, self.lat["min_kernel_us"])
        terms = {"compute": f"input projection {proj:.2f} us + {t} serial steps x {step:.2f} us (recurrent GEMM "
                            f"{b}x{gates * h}x{h}, at least a minimal kernel each)", "bound": "serial steps"}
        return proj + t * step, terms

    # -- whole runs ------------------------------------------------------------------------------

    def overhead(self):
        """The per-inference overhead as an :class:`~latency.overhead.OverheadModel`."""
        from ..overhead import OverheadModel

        return OverheadModel({"per_run_us": self.lat["per_run_us"], "per_short_kernel_us": 0.0,
                              "per_long_kernel_us": 0.0, "short_us": 0.0,
                              "source": f"{SOURCE}: per inference {self.lat['per_run_us']:g} us "
                                        f"({LATENCY['per_run_us'][1]})"})

    def copy_us(self, h2d_bytes: float, d2h_bytes: float) -> tuple[float, str]:
        """Copying a network's inputs to the GPU and its outputs back over the host link (PCIe), for
        published figures that include them: each direction at :data:`PCIE_ACHIEVABLE` of the spec
        sheet's per-direction rate, plus one copy's fixed cost per direction used."""
        if not self.spec.get("pcie_gbs"):
            raise ValueError(f"{self.name}: no host-link bandwidth (pcie_gbs) in the spec sheet")
        rate = float(self.spec["pcie_gbs"]) * 1e3 * PCIE_ACHIEVABLE[0]   # bytes per us
        fixed = COPY_US[0] * ((h2d_bytes > 0) + (d2h_bytes > 0))
        us = (h2d_bytes + d2h_bytes) / rate + fixed
        return us, (f"copies {us:.1f} us: {h2d_bytes / 1e3:.1f} kB in, {d2h_bytes / 1e3:.1f} kB out at "
                    f"{rate / 1e3:.1f} GB/s achievable + {COPY_US[0]:g} us per direction")

    def terms(self) -> dict:
        """Every parameter the model prices with, its value and its basis (for reports and checks)."""
        out = {f"achievable_{u}": {"value": self.eff[u], "basis": ACHIEVABLE[u][1]} for u in ACHIEVABLE}
        out.update({t: {"value": self.lat[t], "basis": LATENCY[t][1]} for t in LATENCY})
        out.update({t: {"value": self.conv[t], "basis": CONV_EFFICIENCY[t][1]} for t in CONV_EFFICIENCY})
        if self.spec.get("l2_gbs"):  # a measured override (spec["model"]) replaces it below, as every term
            out["l2_gbs"] = {"value": float(self.spec["l2_gbs"]),
                             "basis": (self.spec.get("sources") or {}).get("l2_gbs", "the spec sheet")}
        else:
            out["l2_gbs"] = {"value": round(self.l2_bw / 1e3, 1),
                             "basis": f"{L2_SPEEDUP[0]:g}x the achievable DRAM rate: {L2_SPEEDUP[1]}"}
        out["l2_share"] = {"value": L2_SHARE[0], "basis": L2_SHARE[1]}
        if self.spec.get("model"):
            for t, v in self.spec["model"].items():
                key = f"achievable_{t}" if t in ACHIEVABLE else t
                if key in out:
                    out[key] = {"value": v, "basis": self.spec.get("model_basis", "overridden by the target's spec")}
        return out


def terms_path(target_name: str):
    """Where a GPU target's measured cost-model terms live (written by ``latency profile --target NAME``
    in the micro-benchmark mode, :mod:`profilers.gpu`)."""
    from ..profiles import user_profiles_dir

    return user_profiles_dir() / f"{target_name}.gpu-terms.json"


def load_terms(target_name: str) -> dict | None:
    """The measured terms of a GPU target (``{"terms", "measured_with", ...}``), or None where none were measured."""
    import json

    p = terms_path(target_name)
    if not p.is_file():
        return None
    doc = json.loads(p.read_text())
    return doc if doc.get("provenance") == "measured" and isinstance(doc.get("terms"), dict) else None


def calibrated_spec(spec: dict, doc: dict | None) -> dict:
    """``spec`` with measured terms (``load_terms``) over its derived ones; ``spec`` itself when none."""
    if not doc:
        return spec
    terms = {k: float(v) for k, v in doc["terms"].items()
             if k in ACHIEVABLE or k in LATENCY or k in CONV_EFFICIENCY or k == "l2_gbs"}
    return {**spec, "model": {**(spec.get("model") or {}), **terms},
            "model_basis": f"measured ({doc.get('measured_with', '?')}, {doc.get('measured_at', '?')}) on "
                           f"{(doc.get('device') or {}).get('gpu_name', 'this GPU')}"}


#: cost models by the id of their spec (the specs are module-level constants of the declarations)
_MODELS: dict = {}


def model_for(spec: dict) -> GpuCostModel:
    """The cost model of a GPU spec sheet (built once per spec)."""
    hit = _MODELS.get(id(spec))
    if hit is None or hit[0] is not spec:
        hit = _MODELS[id(spec)] = (spec, GpuCostModel(spec))
    return hit[1]


__all__ = ["GpuCostModel", "model_for", "PCIE_ACHIEVABLE", "COPY_US", "terms_path", "load_terms", "calibrated_spec", "SOURCE", "ACHIEVABLE", "LATENCY", "CONV_EFFICIENCY", "L2_SPEEDUP", "L2_SHARE",
           "TENSOR_TILES", "CUDA_TILES", "ALIGN"]
