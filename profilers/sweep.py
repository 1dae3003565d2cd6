"""The sweep driver: plan -> chunks -> measuring backend -> profiling database, losing nothing.

A chunk of configs is the unit of work. Each finished chunk is written in one transaction, so a
kill loses at most the chunk in flight and a re-run skips what is stored (``retry_failed`` also
re-measures rows that hold an error). With ``workers > 1`` each worker is its own process, pinned
to its own core, with one intra-op thread; only the parent writes to the database.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import sys
import time
from dataclasses import dataclass

from latency.ops import Config
from latency.store import Store

from .backends import measure
from .measure import Protocol, pin_to_core
from .plans import plan as make_plan

CHUNK = 100


@dataclass
class SweepResult:
    run_id: str
    target_id: str
    planned: int
    skipped: int
    measured: int
    failed: int
    status: str
    seconds: float


def _worker_init(cores, lock):
    with lock:
        core = cores.pop(0) if len(cores) else None
    pin_to_core(core)


def _work(args):
    target_name, keys, protocol = args
    from latency.targets import get_target

    cfgs = [Config.from_key(k) for k in keys]
    from profilers.backends import measure

    return keys, measure(get_target(target_name), cfgs, protocol)


def _fmt_s(s: float) -> str:
    s = int(s)
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


class _Progress:
    def __init__(self, total: int, enabled: bool):
        self.total, self.done, self.t0, self.enabled = total, 0, time.monotonic(), enabled

    def step(self, n: int, failed: int):
        self.done += n
        if not self.enabled:
            return
        el = time.monotonic() - self.t0
        rate = self.done / el if el > 0 else 0.0
        eta = (self.total - self.done) / rate if rate > 0 else 0.0
        w = 30
        fill = int(w * self.done / max(1, self.total))
        sys.stderr.write(f"\r[{'#' * fill}{'.' * (w - fill)}] {self.done}/{self.total} "
                         f"{rate * 3600:,.0f} cfg/h failed {failed} ETA {_fmt_s(eta)}   ")
        sys.stderr.flush()

    def close(self):
        if self.enabled:
            sys.stderr.write("\n")


def _same_device_or_error(store: Store, target) -> None:
    """StoreError when ``store`` already holds ``target`` measured on another device or runtime.

    A profile describes one device per target name: the estimator reads the rows of the most recently
    registered fingerprint of a name (``Store.find_target``), and the device record is kept per name.
    Rows of this host would therefore not join the old ones: they would silently replace them all in
    every estimate and relabel the old device. Measure into a database of this host's own instead."""
    tid = store.find_target(target.name)
    if tid is None:
        return
    mine = target.fingerprint()
    theirs = (store.target(tid) or {}).get("fingerprint") or {}
    if theirs == mine:
        return
    from latency.errors import StoreError

    diff = sorted(k for k in set(mine) | set(theirs) if mine.get(k) != theirs.get(k))
    raise StoreError(f"{store.path} holds {target.name} measured on another device or runtime ("
                     + "; ".join(f"{k} {theirs.get(k)!r} there vs {mine.get(k)!r} here" for k in diff)
                     + "); this host's rows would replace those in every estimate, not join "
                     "them: profile into a database of this host's own (--db FILE)")


def run_sweep(store: Store, target, plan: str | list[Config] = "quick", ops=None, precisions=None,
              budget_s: float | None = None, workers: int = 1, retry_failed: bool = False,
              chunk_size: int = CHUNK, progress: bool = False, argv: str = "", protocol: Protocol | None = None,
              cores: list[int] | None = None) -> SweepResult:
    """Measure every config of ``plan`` not yet in ``store`` for ``target``; resumable."""
    protocol = protocol or Protocol()
    t0 = time.monotonic()
    if isinstance(plan, str):
        configs = make_plan(plan, ops, precisions, target=target)
    else:
        seen: set = set()
        configs = [c for c in plan if (not ops or c.kind in ops) and (not precisions or c.precision in precisions)
                   and not (c.hash in seen or seen.add(c.hash))]
    _same_device_or_error(store, target)
    target_id = store.ensure_target(target.name, target.fingerprint())
    if target.backend == "ort-cpu":  # the device record (vendor, caches) that host matching compares
        from latency.profiles import host_device, write_device_record

        write_device_record(store, target.name, host_device(cores_used=target.threads))
    elif target.device == "gpu":  # the card's record: its fingerprint's fields, current clock, power limit, versions
        from latency.profiles import write_device_record
        from latency.targets.gpu import gpu_device_record

        write_device_record(store, target.name, gpu_device_record(target))
    protocol_id = store.ensure_protocol(protocol.name, protocol.spec())
    store.close_dead_runs()  # a sweep killed outright left its run 'running': record it as interrupted
    done = store.done_hashes(target_id, include_failed=not retry_failed)
    todo = [c for c in configs if c.hash not in done]
    run_id = store.start_run(target_id, protocol_id, plan if isinstance(plan, str) else "custom", ops, argv)
    chunks = [todo[i:i + chunk_size] for i in range(0, len(todo), chunk_size)]
    bar = _Progress(len(todo), progress)
    measured = failed = 0
    status = "done"
    chunk_s: list[float] = []

    def write(chunk_cfgs, rows):
        nonlocal measured, failed
        out = []
        for c, r in zip(chunk_cfgs, rows):
            row = dict(r)
            row.update({"target_id": target_id, "key": c.key, "run_id": run_id, "source": "measured"})
            out.append(row)
            failed += int(row.get("error") is not None)
        store.upsert_measurements(out)
        measured += len(out)
        bar.step(len(out), failed)

    def over_budget(in_flight: int = 1) -> bool:
        if budget_s is None:
            return False
        est = (sum(chunk_s) / len(chunk_s)) if chunk_s else 0.0
        return time.monotonic() - t0 + est * in_flight > budget_s

    try:
        if workers <= 1 or len(chunks) <= 1:
            if cores:
                pin_to_core(cores[0])
            for ch in chunks:
                if over_budget():
                    status = "budget"
                    break
                t1 = time.monotonic()
                rows = measure(target, ch, protocol)
                chunk_s.append(time.monotonic() - t1)
                write(ch, rows)
        else:
            avail = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else list(range(workers))
            cores = cores or [avail[i % len(avail)] for i in range(workers)]
            ctx = mp.get_context("spawn")
            mgr = ctx.Manager()
            shared = mgr.list(cores)
            lock = mgr.Lock()
            with ctx.Pool(workers, initializer=_worker_init, initargs=(shared, lock)) as pool:
                pending = []
                it = iter(chunks)
                by_keys = {}
                while True:
                    while len(pending) < workers and not over_budget(1):
                        ch = next(it, None)
                        if ch is None:
                            break
                        keys = [c.key for c in ch]
                        by_keys[keys[0]] = ch
                        pending.append((time.monotonic(), pool.apply_async(_work, ((target.name, keys, protocol),))))
                    if not pending:
                        break
                    t1, res = pending.pop(0)
                    keys, rows = res.get()
                    chunk_s.append((time.monotonic() - t1) / workers)
                    write(by_keys.pop(keys[0]), rows)
    except KeyboardInterrupt:
        status = "interrupted"
    except BaseException:  # a write that failed (disk full, read-only): the run did not finish, say so
        status = "interrupted"
        raise
    finally:
        bar.close()
        if status == "done" and measured < len(todo):
            status = "budget"
        store.finish_run(run_id, status, measured - failed, failed)
    return SweepResult(run_id, target_id, len(configs), len(configs) - len(todo), measured, failed, status,
                       time.monotonic() - t0)
