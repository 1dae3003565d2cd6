"""onnxruntime's arm64 optimized graph of fp16 models against the arm64 fusion rules, under qemu-user.

Builds onnxconverter-common fp16 files (keep_io_types) of zoo models, lets onnxruntime (aarch64 wheel,
emulated Neoverse-N1: profilers/standalone_qemu.py) write its optimized graph and count its kernels, and
prints, per model, the runtime's kernel count, the count of ``ORT_CPU_ARM64_RULES`` and of the same
rules without their fp16 switches (fp16 convs NCHW, every pass on fp16 nodes, Softmax one kernel, every
fp16 op in fp16 with no Casts), and the keys where the rules still differ. Functional only: no timing is taken.

    python benchmarks/arm_fp16_fusion.py [--models resnet20_cifar,resnet18:64,...]
    python benchmarks/arm_fp16_fusion.py --sme   # fp32 files on a core with SME (QEMU_CPU=max): KleidiAI's
                                                 # NHWC fp32 convs, ORT_CPU_ARM64_SME_RULES against the plain rules

Needs what profilers/standalone_qemu.py needs (qemu-aarch64-static, debootstrap, root).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import tempfile
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

DEFAULT = ("resnet20_cifar,resnet18:64,resnet50:64,mobilenet_v2_050:96,mobilenet_v3_small:64,efficientnet_b0_64,"
           "squeezenet1_1:64,googlenet:64,shufflenet_v2_x0_5:64,lenet5,unet_small_48,convnext_tiny_d6:64,"
           "densenet121:64,vit_tiny_64")

_SCRIPT = """
import json, sys
from profilers.runtime_graph import runtime_kernel_summary
def enc(k):
    return [enc(x) for x in k] if isinstance(k, tuple) else k
json.dump([[enc(k), v] for k, v in runtime_kernel_summary(sys.argv[2]).items()], open(sys.argv[1], "w"))
"""


def _tup(k):
    return tuple(_tup(x) for x in k) if isinstance(k, list) else k


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default=DEFAULT, help="comma-separated zoo names, NAME:SIZE for a size")
    ap.add_argument("--sme", action="store_true",
                    help="fp32 files under QEMU_CPU=max (SME): the SME rules against the plain arm64 rules")
    args = ap.parse_args(argv)

    import onnx
    from onnxconverter_common import float16

    from latency.fusion import ORT_CPU_ARM64_RULES, ORT_CPU_ARM64_SME_RULES, compare_summaries, fuse, kernel_summary
    from latency.graph import load_graph
    from profilers import standalone_qemu as q
    from profilers import zoo

    why = q.missing()
    if why:
        print(f"error: qemu-user ARM environment unavailable: {why}", file=sys.stderr)
        return 2
    cache = q.build()
    if args.sme:
        before, after, cpu = ORT_CPU_ARM64_RULES, ORT_CPU_ARM64_SME_RULES, "max"
        print(f"onnxruntime arm64 under qemu-user (QEMU_CPU=max: SME, SVE, i8mm; {' '.join(q.WHEELS)}); fp32 files; "
              "kernel counts of the optimized graph; before: the plain arm64 rules, after: the SME rules")
    else:
        before = dataclasses.replace(ORT_CPU_ARM64_RULES, fp16_nhwc=False, fp16_conv_act=None, fp16_passes=None,
                                     fp16_softmax_inline=False, fp16_no_kernel=())
        after, cpu = ORT_CPU_ARM64_RULES, "neoverse-n1"
        print(f"onnxruntime arm64 under qemu-user (QEMU_CPU=neoverse-n1, {' '.join(q.WHEELS)}); fp16 files from "
              "onnxconverter-common (keep_io_types=True); kernel counts of the optimized graph")
    print(f"{'model':<26}{'runtime':>8}{'before':>8}{'after':>8}  where the rules still differ (ours, runtime)")
    with tempfile.TemporaryDirectory() as td:
        script = Path(td) / "rg.py"
        script.write_text(_SCRIPT)
        for spec in args.models.split(","):
            name, _, size = spec.partition(":")
            m = zoo.build(name, size=int(size)) if size else zoo.build(name)
            p, out = Path(td) / f"{name}.onnx", Path(td) / f"{name}.json"
            onnx.save(m if args.sme else float16.convert_float_to_float16(m, keep_io_types=True), p)
            r = q.run([script, out, p], cache=cache, cpu=cpu, pythonpath=[ROOT], cwd=ROOT, timeout=900)
            label = f"{name}" + (f" {size} px" if size else "")
            if r.returncode != 0:
                print(f"{label:<26}  onnxruntime failed under emulation: {r.stderr.strip()[-120:]}")
                continue
            runtime = Counter({_tup(k): v for k, v in json.loads(out.read_text())})
            g = load_graph(p)
            old = kernel_summary(fuse(g, before)[0])
            new = kernel_summary(fuse(g, after)[0])
            diff = compare_summaries(new, runtime)
            shapes = sum(1 for k in diff if isinstance(k, tuple))  # per-shape conv keys
            diff = {k: v for k, v in diff.items() if k != "kernels" and not isinstance(k, tuple)}
            text = ", ".join(f"{k} {a}/{b}" for k, (a, b) in sorted(diff.items()))
            text = ", ".join(filter(None, [text, f"{shapes} conv shape keys" if shapes else ""])) or "none"
            print(f"{label:<26}{runtime['kernels']:>8}{old['kernels']:>8}{new['kernels']:>8}  {text}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
