"""The profiler for a device that has only onnxruntime, onnx and numpy (an ARM board, a phone).

One command on the device, run from a directory holding a copy of this repository's ``latency/`` and
``profilers/`` folders (``pip install onnxruntime onnx numpy`` is all it needs)::

    python3 -m profilers.standalone --db arm.db --plan quick

It measures the plan with real onnxruntime sessions and writes the same profiling database as
``latency profile`` (same schema, the device record with vendor, CPU part, features and caches).
Without ``sqlite-utils`` the store runs on the standard library's sqlite3
(:mod:`profilers.standalone_sqlite`); nothing here needs click, pandas, xgboost or matplotlib.
Under qemu-user (``QEMU_CPU`` set, or ``--emulated``) the rows and the device record say
``emulated``: such timings are ~500x slower than the core and are never presented as the core's.
"""

from __future__ import annotations

import argparse
import os
import sys


def _sqlite_utils_or_stdlib() -> str:
    try:
        import sqlite_utils  # noqa: F401
    except ImportError:
        from . import standalone_sqlite

        sys.modules["sqlite_utils"] = standalone_sqlite
        return "sqlite3 (stdlib)"
    return "sqlite-utils"


def emulated() -> bool:
    """Whether this process runs under qemu-user (it passes ``QEMU_CPU`` through to the guest)."""
    return bool(os.environ.get("QEMU_CPU") or os.environ.get("LATENCY_EMULATED"))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m profilers.standalone", description=__doc__.split("\n")[0])
    ap.add_argument("--db", required=True, help="profiling database to write (created; resumable)")
    ap.add_argument("--target", default=None, help="target name (default: the one this host is a device of)")
    ap.add_argument("--plan", default="quick", help="plan name (quick, standard, ...)")
    ap.add_argument("--ops", default=None, help="comma-separated op kinds to restrict the plan to")
    ap.add_argument("--precisions", default=None, help="comma-separated precisions (fp32, fp16, int8, ...)")
    ap.add_argument("--limit", type=int, default=None, help="measure only the first N configs of the plan")
    ap.add_argument("--budget-s", type=float, default=None, help="stop after about this many seconds")
    ap.add_argument("--fast", action="store_true", help="a short protocol (functional checks, not for profiles)")
    ap.add_argument("--emulated", action="store_true", help="label the rows emulated (implied by QEMU_CPU)")
    a = ap.parse_args(argv)
    backend = _sqlite_utils_or_stdlib()

    from latency.errors import LatencyError
    from latency.profiles import host_device, write_device_record
    from latency.store import Store
    from latency.targets import get_target, targets

    from .measure import Protocol
    from .plans import plan as make_plan
    from .sweep import run_sweep

    try:
        host = host_device()
        if a.target:
            target = get_target(a.target)
        else:
            mine = [get_target(n) for n in targets() if get_target(n).backend == "ort-cpu"
                    and get_target(n).describes_host(host)]
            if not mine:
                raise LatencyError(f"no CPU target describes this host ({host.get('arch')}); pass --target")
            target = mine[0]
        ok, why = target.host_supported()
        if not ok:
            raise LatencyError(why)
        ops = a.ops.split(",") if a.ops else None
        precs = a.precisions.split(",") if a.precisions else None
        configs = make_plan(a.plan, ops, precs, target=target)
        if a.limit is not None:
            configs = configs[:a.limit]
        protocol = (Protocol(phases=1, rounds_per_phase=2, warmup=1, min_runs=3, max_runs=5, remeasure_phases=0)
                    if a.fast else Protocol())
        emu = a.emulated or emulated()
        with Store(a.db) as st:
            res = run_sweep(st, target, configs, budget_s=a.budget_s, protocol=protocol,
                            argv=" ".join(sys.argv), progress=sys.stderr.isatty())
            if emu:
                cpu = os.environ.get("QEMU_CPU", "?")
                write_device_record(st, target.name, host, provenance="emulated",
                                    note=f"qemu-user (QEMU_CPU={cpu}): timings ~500x the core's, functional only")
                with st._tx() as conn:
                    conn.execute("UPDATE measurements SET source='emulated' WHERE run_id=?", (res.run_id,))
    except LatencyError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"{target.name} on {host.get('vendor')} {host.get('cpu_model')} ({host.get('arch')}, "
          f"{' '.join(host.get('cpu_flags') or [])}): {res.measured} measured, {res.failed} failed, "
          f"{res.skipped} already stored, {res.status}, {res.seconds:.0f} s -> {a.db} [{backend}]"
          + (" [emulated]" if emu else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
