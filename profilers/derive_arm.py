"""Derived ``arm64-ort`` profiles for named cores (Neoverse-N1, Cortex-A76), until a device measures one.

    python -m profilers.derive_arm            # rewrites tables/arm64-ort.neoverse-n1.db and .cortex-a76.db

No row here is a measurement. Each row is a row of the shipped x86-avx512-ort profile (measured on an
AMD EPYC Zen 5 core, onnxruntime CPU EP, 1 thread) rescaled to the ARM core by a two-term roofline:
the x86 time is split into a compute share and a memory share by the config's FLOPs and bytes
(:meth:`latency.ops.Config.flops` / ``bytes``) against the x86 core's peaks, and each share is
multiplied by the ratio of the x86 peak to the ARM core's peak (compute: FLOP/cycle x clock for the
precision; memory: L2 bandwidth when the working set fits the ARM core's L2, else DRAM bandwidth of
a typical SoC). Rows are labelled ``source='derived'`` and the device record ``provenance='derived'``
with this method in its note; ``latency estimate`` says so. NCHWc ``Reorder`` rows are dropped
(onnxruntime has no blocked layout on ARM). The x86 fp16 rows are not used: x86 runs fp16 through
casts to fp32, the ARM cores have real fp16 arithmetic (FEAT_FP16) at twice the fp32 rate, so an ARM
fp16 row is derived from the x86 fp32 row of the same shape at the fp16 peak and half the bytes.

Spec sources (per core, 1 thread):
* x86 reference, AMD Zen 5 (EPYC 9005): 2 x 512-bit FMA pipes -> 64 fp32 FLOP/cycle, VNNI int8 4x
  that (AMD "Software Optimization Guide for the AMD Zen5 Microarchitecture", pub. 58455); clock
  2.6 GHz as /proc/cpuinfo reports on the measuring host; L2 1 MB/core, 64 B/cycle L2->L1; one core
  streams ~35 GB/s from DRAM (assumed, DDR5 server part).
* Neoverse-N1: 2 x 128-bit ASIMD FMA pipes -> 16 fp32 FLOP/cycle, fp16 32, SDOT int8 64 ops/cycle
  (Arm "Neoverse N1 Software Optimization Guide", PJDOC-466751330-9685); 64 KB L1D, 1 MB private L2
  (32 B/cycle to L1), 32 MB system cache; clock 2.5 GHz and ~20 GB/s per-core DRAM as on AWS Graviton2
  (AWS Graviton2 technical guide; per-core stream figure assumed for DDR4-3200 8-channel).
* Cortex-A76: same vector pipes as N1 (Arm "Cortex-A76 Software Optimization Guide",
  PJDOC-466751330-7215); 64 KB L1D, 512 KB L2 (32 B/cycle), 2 MB L3 on a typical SoC (Raspberry Pi 5,
  BCM2712 at 2.4 GHz, LPDDR4X-4267 32-bit: ~8 GB/s per core, assumed from its 17 GB/s peak).
Both cores report fp asimd asimddp fphp asimdhp (no i8mm, no SVE): int8 uses SDOT kernels.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
from pathlib import Path

from latency.ops import Config
from latency.profiles import write_device_record
from latency.store import Store

ROOT = Path(__file__).resolve().parents[1]
SOURCE_TARGET = "x86-avx512-ort"

#: GFLOP/s per precision, GB/s from L2 and DRAM, L2 size in bytes; figures and sources in the docstring
X86_REF = {"ghz": 2.6, "flop_cycle": {"fp32": 64, "int8": 256}, "l2_b_cycle": 64, "dram_gbs": 35.0}

CORES = {
    "neoverse-n1": {
        "cpu_model": "Neoverse-N1", "part": "0xd0c", "ghz": 2.5, "flop_cycle": {"fp32": 16, "fp16": 32, "int8": 64},
        "l2_b_cycle": 32, "dram_gbs": 20.0, "l1d_kb": 64, "l2_mb": 1.0, "llc_mb": 32.0,
        "soc": "AWS Graviton2-class (64 cores, 2.5 GHz, 32 MB SLC, DDR4-3200)",
    },
    "cortex-a76": {
        "cpu_model": "Cortex-A76", "part": "0xd0b", "ghz": 2.4, "flop_cycle": {"fp32": 16, "fp16": 32, "int8": 64},
        "l2_b_cycle": 32, "dram_gbs": 8.0, "l1d_kb": 64, "l2_mb": 0.5, "llc_mb": 2.0,
        "soc": "Raspberry Pi 5-class (BCM2712, 2.4 GHz, 2 MB L3, LPDDR4X-4267)",
    },
}
FLAGS = ["asimd", "asimddp", "fphp"]  # what ISA_FLAGS keeps of "fp asimd ... fphp asimdhp ... asimddp"
COMPUTE_PREC = {"fp32": "fp32", "fp16": "fp16", "int8": "int8", "int8_dynamic": "int8"}
DROP_KINDS = ("Reorder",)
#: keep the database small (the wheel ships tables/): at most this many rows per (kind, precision)
MAX_ROWS = 500


def _peaks(spec: dict, precision: str) -> tuple[float, float, float]:
    """(FLOP/s, L2 B/s, DRAM B/s)."""
    p = COMPUTE_PREC.get(precision, "fp32")
    fc = spec["flop_cycle"].get(p, spec["flop_cycle"]["fp32"])
    return fc * spec["ghz"] * 1e9, spec["l2_b_cycle"] * spec["ghz"] * 1e9, spec["dram_gbs"] * 1e9


def scale(cfg: Config, x86_us: float, core: dict, precision: str | None = None) -> float:
    """The x86 latency of ``cfg`` rescaled to ``core`` (see the module docstring)."""
    precision = precision or cfg.precision
    try:
        flops, nbytes = float(cfg.flops()), float(cfg.bytes())
    except Exception:  # a kind without a work model: memory-bound
        flops, nbytes = 0.0, 1.0
    if precision == "fp16":
        nbytes /= 2.0
    xf, xl2, xdram = _peaks(X86_REF, cfg.precision if cfg.precision != "fp16" else "fp32")
    af, al2, adram = _peaks(core, precision)
    on_l2 = nbytes <= core["l2_mb"] * 2 ** 20
    x_mem_bw, a_mem_bw = (xl2, al2) if on_l2 else (xdram, adram)
    tc, tm = flops / xf, nbytes / x_mem_bw
    share = tc / (tc + tm) if tc + tm > 0 else 0.0
    return x86_us * (share * xf / af + (1.0 - share) * x_mem_bw / a_mem_bw)


def derive(core_name: str, out: Path, source: Path) -> int:
    core = CORES[core_name]
    src = sqlite3.connect(f"file:{source}?mode=ro", uri=True)
    (tid, fp_text), = src.execute("SELECT target_id, fingerprint FROM targets WHERE name=?", (SOURCE_TARGET,))
    src_fp = json.loads(fp_text)
    rows = src.execute("SELECT key, kind, precision, latency_us FROM measurements WHERE target_id=? AND error IS NULL "
                       "AND latency_us > 0 ORDER BY kind, precision, key_hash", (tid,)).fetchall()
    src.close()
    groups: dict = {}
    for key, kind, prec, us in rows:
        if kind in DROP_KINDS or prec == "fp16":
            continue
        groups.setdefault((kind, prec), []).append((key, us))
    out_rows = []
    for (kind, prec), items in sorted(groups.items()):
        step = max(1, -(-len(items) // MAX_ROWS))
        for key, us in items[::step]:
            cfg = Config.from_key(key)
            note = {"x86_us": round(us, 2)}
            out_rows.append({"key": key, "latency_us": scale(cfg, us, core), "median_us": None, "extra": note})
            if prec == "fp32" and kind in ("Conv", "MatMul", "ConvTranspose", "Activation", "Elementwise", "Pool"):
                k16 = json.loads(key)
                k16["precision"] = "fp16"
                try:
                    c16 = Config.from_key(json.dumps(k16, sort_keys=True, separators=(",", ":")))
                except Exception:
                    continue
                if step == 1 or len(out_rows) % 4 == 0:
                    out_rows.append({"key": c16.key, "latency_us": scale(cfg, us, core, "fp16"), "median_us": None,
                                     "extra": {**note, "fp32_row": True}})
    out.parent.mkdir(parents=True, exist_ok=True)
    out.unlink(missing_ok=True)
    for suffix in ("-wal", "-shm"):
        Path(str(out) + suffix).unlink(missing_ok=True)
    fingerprint = {"arch": "aarch64", "cpu_flags": FLAGS, "cpu_model": core["cpu_model"], "isa": "arm64",
                   "provider": "CPUExecutionProvider", "runtime": "onnxruntime",
                   "runtime_version": src_fp.get("runtime_version"), "threads": 1}
    with Store(out) as st:
        target_id = st.ensure_target("arm64-ort", fingerprint)
        run_id = st.start_run(target_id, None, "derived", None, f"python -m profilers.derive_arm ({core_name})")
        st.upsert_measurements([{**r, "target_id": target_id, "run_id": run_id, "source": "derived"} for r in out_rows])
        st.finish_run(run_id, "done", len(out_rows), 0)
        write_device_record(st, "arm64-ort", {"vendor": "ARM", "cpu_family_model": f"8/{core['part']}",
                                              "l2_mb": core["l2_mb"], "llc_mb": core["llc_mb"]},
                            provenance="derived",
                            note=(f"{SOURCE_TARGET} rows (AMD EPYC Zen 5) rescaled to "
                                  f"{core['cpu_model']} at {core['ghz']} GHz by compute and memory roofline "
                                  f"ratios; SoC assumed {core['soc']} (profilers/derive_arm.py)"))
    with sqlite3.connect(out) as c:  # one self-contained file, compacted
        c.execute("PRAGMA journal_mode=DELETE")
        c.execute("VACUUM")
    return len(out_rows)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m profilers.derive_arm", description=__doc__.split("\n")[0])
    # the Zen 5 profile: the x86 core whose spec the ratios below are written for (the other shipped
    # x86-avx512-ort profile is an earlier EPYC generation)
    ap.add_argument("--source", default=str(ROOT / "tables" / f"{SOURCE_TARGET}.epyc-zen5.db"))
    ap.add_argument("--out-dir", default=str(ROOT / "tables"))
    ap.add_argument("--core", action="append", choices=sorted(CORES), help="default: every core")
    a = ap.parse_args(argv)
    for name in a.core or sorted(CORES):
        out = Path(a.out_dir) / f"arm64-ort.{name}.db"
        n = derive(name, out, Path(a.source))
        print(f"{out}: {n} derived rows, {out.stat().st_size / 2 ** 20:.1f} MB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
