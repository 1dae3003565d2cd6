"""A device farm: one sweep split into shards that Ray runs on the workers of a cluster.

``latency profile --ray ADDRESS`` (or ``--ray local`` for a cluster started on this machine) runs
:func:`run_farm`:

1. the plan's config keys are cut into ``n_shards`` slices of the key-hash space, so a config is
   always in the same shard (:func:`shard_plan`); configs already stored in ``--db`` for this target
   are left out of every shard, so a re-run measures only what is missing;
2. each shard is one Ray task: it runs the ordinary sweep (:func:`profilers.sweep.run_sweep`, same
   protocol, chunks and runs table) into a database of its own on the worker, and ships that
   database back whole (its bytes);
3. the driver keeps every shard database it received under ``<db>.shards/`` and merges it into
   ``--db`` with :meth:`latency.store.Store.merge_from`: rows are keyed by (device fingerprint,
   config key), so nothing is doubled; a shard measured on another device than the rows already
   under the target name is refused (fingerprints side by side), its file kept for
   ``latency db merge --keep-both``.

A shard whose task failed (worker lost, measuring error, merge refused) is reported with its reason;
its configs are still missing from ``--db`` and the next run measures them.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from latency.errors import LatencyError
from latency.ops import Config
from latency.store import Store

RAY_HINT = "the device farm needs Ray: pip install 'latency[ray]'"


class FarmError(LatencyError):
    """The farm cannot run (Ray missing, cluster unreachable, bad shard count)."""


def import_ray():
    """The ray module, or FarmError saying how to install it."""
    try:
        import ray
    except ImportError:
        raise FarmError(RAY_HINT) from None
    return ray


def shard_plan(configs: list[Config], n_shards: int) -> list[list[Config]]:
    """``configs`` (deduplicated) cut into ``n_shards`` slices of the key-hash space: shard ``i`` holds
    the configs whose hash falls in the i-th of ``n_shards`` equal ranges, ordered by hash.

    Deterministic and stable: the same config is in the same shard on every run and every host,
    whatever else the plan holds, so a re-run of a failed shard meets the same configs."""
    if n_shards < 1:
        raise FarmError(f"the number of shards must be at least 1, got {n_shards}")
    uniq = {c.hash: c for c in configs}
    out: list[list[Config]] = [[] for _ in range(n_shards)]
    for h in sorted(uniq):
        out[int(h[:12], 16) * n_shards >> 48].append(uniq[h])
    return out


def run_shard(target_name: str, keys: list[str], protocol, shard: str, chunk_size: int, argv: str) -> dict:
    """Measure ``keys`` of ``target_name`` into a fresh database on this worker; the database's bytes
    and a summary. Runs inside a Ray task (and is plain Python, so it is tested without Ray too)."""
    import socket

    from latency.targets import get_target

    from .sweep import run_sweep

    t = get_target(target_name)
    with tempfile.TemporaryDirectory(prefix="latency-shard-") as d:
        path = os.path.join(d, f"{shard}.db")
        with Store(path) as st:
            r = run_sweep(st, t, [Config.from_key(k) for k in keys], chunk_size=chunk_size, protocol=protocol,
                          argv=f"{argv} [shard {shard}]")
            st.db.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        with Store(path) as st:  # one self-contained file: the WAL folded in and switched off
            st.db.conn.execute("PRAGMA journal_mode=DELETE")
        data = Path(path).read_bytes()
    return {"shard": shard, "host": socket.gethostname(), "target_id": r.target_id, "measured": r.measured,
            "failed": r.failed, "status": r.status, "seconds": r.seconds, "db": data,
            "sha1": hashlib.sha1(data).hexdigest()}


@dataclass
class ShardReport:
    shard: str
    n_configs: int
    to_measure: int
    host: str = ""
    measured: int = 0
    failed: int = 0
    merged: dict = field(default_factory=dict)   # Store.merge_from's counts
    error: str = ""
    path: str = ""                               # the shard database kept on the driver

    def line(self) -> str:
        if self.error:
            return f"shard {self.shard}: FAILED ({self.error}); its {self.to_measure} config(s) are measured on re-run"
        if not self.to_measure:
            return f"shard {self.shard}: {self.n_configs} config(s) already stored, nothing to measure"
        m = self.merged
        return (f"shard {self.shard} on {self.host}: {self.measured} measured ({self.failed} failed), merged "
                f"{m.get('added', 0)} new, {m.get('replaced', 0)} replaced, {m.get('kept', 0)} kept")


@dataclass
class FarmResult:
    target: str
    planned: int
    already: int
    shards: list[ShardReport]
    seconds: float

    @property
    def failed_shards(self) -> list[ShardReport]:
        return [s for s in self.shards if s.error]


def connect(address: str, num_cpus: int | None = None):
    """ray.init for ``address`` ('local': a cluster on this machine with ``num_cpus`` workers)."""
    ray = import_ray()
    if ray.is_initialized():
        return ray
    if address not in ("local", "auto"):
        _check_reachable(address)
    try:
        if address == "local":
            ray.init(num_cpus=num_cpus, include_dashboard=False, log_to_driver=False, configure_logging=False)
        else:
            ray.init(address=address, log_to_driver=False, configure_logging=False)
    except Exception as e:  # ConnectionError, RuntimeError, ...: one line
        raise FarmError(f"cannot connect to the Ray cluster at {address!r}: {str(e).splitlines()[0] if str(e) else e}") from None
    return ray


def _check_reachable(address: str, timeout_s: float = 5.0) -> None:
    """FarmError (one line) unless the cluster's head answers at HOST:PORT within ``timeout_s``: ray.init
    itself retries an unreachable head for minutes, logging, and does not stop on SIGTERM."""
    import socket

    host, sep, port = address.rpartition(":")
    if address.startswith("ray://"):
        host, sep, port = address[len("ray://"):].rpartition(":")
    if not sep or not port.isdigit():
        return  # not HOST:PORT: ray.init says what it makes of it
    try:
        with socket.create_connection((host or "127.0.0.1", int(port)), timeout=timeout_s):
            pass
    except OSError as e:
        raise FarmError(f"cannot reach the Ray cluster at {address!r} ({e.strerror or type(e).__name__} within "
                        f"{timeout_s:g} s): start its head with 'ray start --head' and pass its address") from None


def run_farm(store: Store, target, configs: list[Config], n_shards: int, protocol=None, chunk_size: int = 100,
             argv: str = "", shard_dir=None, progress=None, retry_failed: bool = False) -> FarmResult:
    """Measure ``configs`` of ``target`` on the connected Ray cluster in ``n_shards`` shards, merging each
    into ``store`` as it arrives. Ray must be initialised (:func:`connect`). The driver need not be one of
    the devices: each shard's rows carry the fingerprint of the worker that measured them, and a shard
    of another device than the rows ``store`` holds under the target name is refused at its merge.
    Configs stored for this target are skipped (rows that hold an error too, unless ``retry_failed``)."""
    from .measure import Protocol

    ray = import_ray()
    if not ray.is_initialized():
        raise FarmError("Ray is not initialised: call profilers.farm.connect first")
    protocol = protocol or Protocol()
    say = progress or (lambda msg: None)
    t0 = time.monotonic()
    tid = store.find_target(target.name)
    done = store.done_hashes(tid, include_failed=not retry_failed) if tid else set()
    shards = shard_plan(configs, n_shards)
    shard_dir = Path(shard_dir or f"{store.path}.shards")
    shard_dir.mkdir(parents=True, exist_ok=True)
    task = ray.remote(num_cpus=1, max_retries=0)(run_shard)
    reports, pending = {}, {}
    for i, sh in enumerate(shards):
        name = f"{i + 1:03d}-of-{n_shards:03d}"
        todo = [c.key for c in sh if c.hash not in done]
        reports[name] = ShardReport(name, len(sh), len(todo))
        if todo:
            pending[task.remote(target.name, todo, protocol, name, chunk_size, argv)] = name
    while pending:
        ready, _ = ray.wait(list(pending), num_returns=1)
        name = pending.pop(ready[0])
        rep = reports[name]
        try:
            out = ray.get(ready[0])
        except Exception as e:  # the task raised or its worker died: report, keep going
            msg = str(getattr(e, "cause", None) or e).strip().splitlines()
            rep.error = msg[-1] if msg else type(e).__name__
            say(rep.line())
            continue
        rep.host, rep.measured, rep.failed = out["host"], out["measured"], out["failed"]
        p = shard_dir / f"shard-{name}.{out['sha1'][:8]}.db"
        try:
            p.write_bytes(out["db"])
        except OSError as e:
            rep.error = f"cannot keep the shard database at {p}: {e.strerror or e}"
            say(rep.line())
            continue
        rep.path = str(p)
        try:
            rep.merged = store.merge_from(p, counts=True)
        except LatencyError as e:
            rep.error = f"not merged: {e}; the shard database is kept at {p}"
        say(rep.line())
    return FarmResult(target.name, len({c.hash for c in configs}), len({c.hash for c in configs} & done),
                      list(reports.values()), time.monotonic() - t0)
