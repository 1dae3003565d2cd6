import json
import multiprocessing as mp
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from latency.errors import SchemaError, StoreError  # noqa: E402
from latency.ops import config_key, key_hash  # noqa: E402
from latency.store import SCHEMA_VERSION, Store  # noqa: E402

FP = {"cpu_model": "Xeon", "cpu_flags": ["avx2", "fma"], "runtime": "onnxruntime", "runtime_version": "1.20",
      "provider": "CPUExecutionProvider", "threads": 1}


def row(tid, i, latency=10.0, error=None, spread=0.01, run_id=None):
    key = config_key("Activation", {"op": "Relu", "x": [1, 8, 4, 4 + i]})
    return {"target_id": tid, "key_hash": key_hash(key), "kind": "Activation", "key": key,
            "precision": "fp32", "sparsity": "0", "latency_us": None if error else latency,
            "median_us": None if error else latency * 1.01, "spread": None if error else spread,
            "n_rounds": 3, "n_runs": 30, "rounds_us": [latency, latency * 1.01, latency * 1.02],
            "canary_us": [1.0, 1.0, 1.0], "unstable": False, "kernel_ops": ["Relu"], "error": error,
            "run_id": run_id, "extra": {"note": i}}


@pytest.fixture
def mem():
    with Store(":memory:") as s:
        yield s, s.ensure_target("cpu-a", FP)


def test_round_trip(mem):
    s, tid = mem
    assert tid == s.ensure_target("cpu-a", FP) and len(tid) == 16
    t = s.target(tid)
    assert t["name"] == "cpu-a" and t["threads"] == 1 and t["fingerprint"] == FP and t["cpu_flags"] == ["avx2", "fma"]
    assert s.find_target("cpu-a") == tid and s.find_target("nope") is None and len(s.targets()) == 1
    pid = s.ensure_protocol("default", {"rounds": 3})
    run = s.start_run(tid, pid, "smoke", ["Conv"], ["latency", "profile"])
    r = row(tid, 0, run_id=run)
    s.upsert_measurements([r])
    s.finish_run(run, "done", 1, 0)
    df = s.measurements(tid)
    assert len(df) == 1
    got = df.iloc[0]
    assert got["latency_us"] == 10.0 and got["rounds_us"] == r["rounds_us"] and got["extra"] == {"note": 0}
    assert got["kernel_ops"] == ["Relu"] and got["unstable"] == 0 and got["source"] == "measured"
    assert got["measured_at"].startswith("20")
    assert s.latency_table(tid) == {r["key_hash"]: 10.0}
    assert s.db.conn.execute("SELECT status, n_measured FROM runs").fetchone() == ("done", 1)
    with pytest.raises(StoreError, match="valid statuses"):
        s.finish_run(run, "bogus", 0, 0)


def test_closed_file_is_self_contained_and_opens_read_only(tmp_path):
    """A profile closed by its last writer is one file in rollback-journal mode (the WAL folded in), so a
    read-only install can open it; a writer closing while another connection is open leaves WAL to it."""
    path = tmp_path / "p.db"
    a = Store(path)
    tid = a.ensure_target("cpu-a", FP)
    a.upsert_measurements([row(tid, 0)])
    b = Store(path)
    b.upsert_measurements([row(tid, 1)])

    def mode():
        c = sqlite3.connect(path)
        try:
            return c.execute("PRAGMA journal_mode").fetchone()[0]
        finally:
            c.close()

    b.close()  # a still holds the file: stays WAL
    assert mode() == "wal"
    a.close()
    assert mode() == "delete"
    assert not (tmp_path / "p.db-wal").exists()
    ro = tmp_path / "ro"
    ro.mkdir()
    (ro / "p.db").write_bytes(path.read_bytes())
    ro.chmod(0o555)
    try:
        with Store(ro / "p.db", readonly=True) as r:
            assert len(r.measurements(tid)) == 2
    finally:
        ro.chmod(0o755)


def test_upsert_twice_one_row(mem):
    s, tid = mem
    s.upsert_measurements([row(tid, 0, latency=10.0)])
    s.upsert_measurements([row(tid, 0, latency=7.0)])
    df = s.measurements()
    assert len(df) == 1 and df.iloc[0]["latency_us"] == 7.0


def test_failed_then_success_replaces(mem):
    s, tid = mem
    h = row(tid, 0)["key_hash"]
    s.upsert_measurements([row(tid, 0, error="RuntimeError: boom")])
    assert s.latency_table(tid) == {} and s.done_hashes(tid) == {h}
    s.upsert_measurements([row(tid, 0, latency=5.0)])
    df = s.measurements(tid)
    assert len(df) == 1 and df.iloc[0]["error"] is None and df.iloc[0]["latency_us"] == 5.0
    # a later failure does not clobber the good measurement
    s.upsert_measurements([row(tid, 0, error="again")])
    assert s.latency_table(tid) == {h: 5.0}


def test_done_hashes_and_stats(mem):
    s, tid = mem
    s.upsert_measurements([row(tid, 0), row(tid, 1, latency=20.0), row(tid, 2, error="x")])
    all_h = {row(tid, i)["key_hash"] for i in range(3)}
    assert s.done_hashes(tid) == all_h
    assert s.done_hashes(tid, include_failed=False) == all_h - {row(tid, 2)["key_hash"]}
    assert len(s.measurements(ok_only=True)) == 2 and len(s.measurements(kind="Conv")) == 0
    st = s.stats()
    assert len(st) == 1
    assert st.iloc[0][["target", "n_ok", "n_failed", "median_latency_us"]].tolist() == ["cpu-a", 2, 1, 15.0]


def test_newer_schema(tmp_path):
    p = tmp_path / "p.db"
    Store(p).close()
    c = sqlite3.connect(p)
    c.execute("UPDATE meta SET value='3' WHERE key='schema_version'")
    c.commit()
    c.close()
    msg = f"database schema v3 is newer than this latency \\(v{SCHEMA_VERSION}\\); upgrade latency"
    with pytest.raises(SchemaError, match=msg):
        Store(p)


def test_foreign_db_is_schema_error(tmp_path):
    p = tmp_path / "other.db"
    c = sqlite3.connect(p)
    c.execute("CREATE TABLE stuff (x)")
    c.commit()
    c.close()
    with pytest.raises(SchemaError, match="not a latency profile database"):
        Store(p)


def test_garbage_and_missing_and_unwritable(tmp_path):
    g = tmp_path / "garbage.db"
    g.write_bytes(b"this is not sqlite at all" * 100)
    with pytest.raises(StoreError) as e:
        Store(g)
    assert str(g) in str(e.value) and "\n" not in str(e.value)
    with pytest.raises(StoreError, match="does not exist"):
        Store(tmp_path / "missing.db", readonly=True)
    assert not (tmp_path / "missing.db").exists()
    with pytest.raises(StoreError, match="no_such_dir"):
        Store(tmp_path / "no_such_dir" / "x.db")


def test_readonly_reads_but_refuses_writes(tmp_path):
    p = tmp_path / "p.db"
    with Store(p) as s:
        tid = s.ensure_target("cpu-a", FP)
        s.upsert_measurements([row(tid, 0)])
    with Store(p, readonly=True) as r:
        # the writer left it self-contained (rollback journal); a read-only open changes nothing
        assert r.db.conn.execute("PRAGMA journal_mode").fetchone() == ("delete",)
        assert r.db.conn.execute("PRAGMA busy_timeout").fetchone() == (60000,)
        assert r.db.conn.execute("PRAGMA foreign_keys").fetchone() == (1,)
        assert len(r.latency_table(tid)) == 1
        with pytest.raises(StoreError, match="readonly"):
            r.upsert_measurements([row(tid, 1)])


def test_export(tmp_path, mem):
    s, tid = mem
    s.upsert_measurements([row(tid, i) for i in range(4)] + [row(tid, 9, error="bad")])
    assert s.export(tmp_path / "m.csv", "csv") == 5
    lines = (tmp_path / "m.csv").read_text().splitlines()
    assert len(lines) == 6 and lines[0].startswith("target_name,device_provenance,protocol_id,target_id")
    assert s.export(tmp_path / "m.jsonl", "jsonl") == 5
    recs = [json.loads(x) for x in (tmp_path / "m.jsonl").read_text().splitlines()]
    assert len(recs) == 5 and recs[0]["target_name"] == "cpu-a" and isinstance(recs[0]["rounds_us"], list)
    # a profile's device record says how it came about (emulated, derived, ...): every exported row carries it
    s.set_meta("device:cpu-a", json.dumps({"provenance": "emulated"}))
    s.export(tmp_path / "e.jsonl", "jsonl")
    recs = [json.loads(x) for x in (tmp_path / "e.jsonl").read_text().splitlines()]
    assert {r["device_provenance"] for r in recs} == {"emulated"} and recs[0]["source"] == "measured"
    with pytest.raises(StoreError, match="valid formats: csv, jsonl"):
        s.export(tmp_path / "m.xml", "xml")


def test_merge_keeps_both_targets_and_provenance(tmp_path):
    a, b = tmp_path / "a.db", tmp_path / "b.db"
    with Store(b) as sb:
        tb = sb.ensure_target("gpu-b", {"gpu_name": "H100", "runtime": "ort"})
        pb = sb.ensure_protocol("fast", {"rounds": 2})
        rb = sb.start_run(tb, pb, "smoke", None, ["x"])
        sb.upsert_measurements([row(tb, i, run_id=rb) for i in range(3)])
        sb.finish_run(rb, "done", 3, 0)
    with Store(a) as sa:
        ta = sa.ensure_target("cpu-a", FP)
        sa.upsert_measurements([row(ta, i) for i in range(2)])
        assert sa.merge_from(b) == (1, 3)
        assert {t["name"] for t in sa.targets()} == {"cpu-a", "gpu-b"}
        mb = sa.measurements(tb)
        assert len(mb) == 3 and set(mb["run_id"]) == {rb} and len(sa.measurements(ta)) == 2
        assert sa.db.conn.execute("SELECT protocol_id FROM runs WHERE run_id=?", (rb,)).fetchone() == (pb,)
        assert sa.merge_from(b) == (0, 0)  # idempotent: equal spread keeps existing rows


def test_merge_conflict_policy(tmp_path):
    a, b = tmp_path / "a.db", tmp_path / "b.db"
    with Store(b) as sb:
        t = sb.ensure_target("cpu-a", FP)
        sb.upsert_measurements([row(t, 0, latency=9.0, spread=0.001), row(t, 1, latency=9.0, spread=0.5),
                                row(t, 2, latency=9.0)])
    with Store(a) as sa:
        assert sa.ensure_target("cpu-a", FP) == t
        sa.upsert_measurements([row(t, 0, latency=10.0, spread=0.05), row(t, 1, latency=10.0, spread=0.05),
                                row(t, 2, error="failed")])
        assert sa.merge_from(b) == (0, 2)
        lat = sa.latency_table(t)
        assert [lat[row(t, i)["key_hash"]] for i in range(3)] == [9.0, 10.0, 9.0]


def test_merge_of_two_devices_under_one_name_refuses_or_keeps_both(tmp_path):
    from click.testing import CliRunner

    from latency.cli import main

    a, b = tmp_path / "a.db", tmp_path / "b.db"
    other = dict(FP, cpu_model="EPYC", cpu_flags=["avx2", "avx512f"])
    with Store(b) as sb:
        tb = sb.ensure_target("cpu-a", other)
        sb.upsert_measurements([row(tb, i, latency=5.0) for i in range(3)])
        sb.set_meta("device:cpu-a", json.dumps({"vendor": "AMD"}))
    with Store(a) as sa:
        ta = sa.ensure_target("cpu-a", FP)
        sa.upsert_measurements([row(ta, i) for i in range(2)])
        sa.set_meta("device:cpu-a", json.dumps({"vendor": "Intel"}))
        with pytest.raises(StoreError, match=r"cpu_model 'Xeon' here vs 'EPYC' there.*--keep-both"):
            sa.merge_from(b)
        assert len(sa.targets()) == 1 and len(sa.measurements()) == 2  # nothing written
    r = CliRunner().invoke(main, ["db", "merge", "--db", str(a), str(b)])
    assert r.exit_code == 2 and len(r.output.strip().splitlines()) == 1
    assert "cpu_flags ['avx2', 'fma'] here vs ['avx2', 'avx512f'] there" in r.output
    r = CliRunner().invoke(main, ["db", "merge", "--db", str(a), "--keep-both", str(b)])
    assert r.exit_code == 0, r.output
    assert "3 new" in r.output and f"cpu-a kept as cpu-a@{tb[:8]}" in r.output
    with Store(a) as sa:
        names = {t["name"]: t["target_id"] for t in sa.targets()}
        assert names == {"cpu-a": ta, f"cpu-a@{tb[:8]}": tb}
        assert sa.find_target("cpu-a") == ta  # the name keeps its device; the newcomer did not shadow it
        assert len(sa.measurements(ta)) == 2 and set(sa.measurements(tb)["latency_us"]) == {5.0}
        meta = sa.meta()
        assert json.loads(meta["device:cpu-a"]) == {"vendor": "Intel"}
        assert json.loads(meta[f"device:cpu-a@{tb[:8]}"]) == {"vendor": "AMD"}


def test_merging_shards_of_one_device_is_exact_and_counted(tmp_path):
    """Two shards of one device overlapping on one config: one row, the better settled; counts reported."""
    s1, s2, m = tmp_path / "s1.db", tmp_path / "s2.db", tmp_path / "m.db"
    with Store(s1) as st:
        t = st.ensure_target("cpu-a", FP)
        st.upsert_measurements([row(t, i, latency=10.0, spread=0.02) for i in range(0, 4)])
    with Store(s2) as st:
        st.ensure_target("cpu-a", FP)
        st.upsert_measurements([row(t, 3, latency=9.0, spread=0.01), row(t, 4), row(t, 5, error="crash")])
    with Store(m) as st:
        assert st.merge_from(s1, counts=True) == {"targets": 1, "added": 4, "replaced": 0, "kept": 0, "renamed": {}}
        assert st.merge_from(s2, counts=True) == {"targets": 0, "added": 2, "replaced": 1, "kept": 0, "renamed": {}}
        assert st.merge_from(s1, counts=True)["kept"] == 4  # the worse-settled duplicate does not come back
        df = st.measurements(t)
        assert len(df) == 6 and df["key_hash"].is_unique
        assert st.latency_table(t)[row(t, 3)["key_hash"]] == 9.0
        assert df["error"].notna().sum() == 1


def _writer(path, barrier, offset, n):
    barrier.wait(30)
    with Store(path) as s:  # both processes open (and create) the fresh file at once
        tid = s.ensure_target("cpu-a", FP)
        for i in range(0, n, 5):
            s.upsert_measurements([row(tid, offset + j) for j in range(i, i + 5)])


def test_concurrent_writers(tmp_path):
    p = str(tmp_path / "c.db")
    ctx = mp.get_context("spawn")
    barrier = ctx.Barrier(2)
    procs = [ctx.Process(target=_writer, args=(p, barrier, k * 1000, 200)) for k in range(2)]
    for pr in procs:
        pr.start()
    for pr in procs:
        pr.join(60)
    assert [pr.exitcode for pr in procs] == [0, 0]
    with Store(p) as s:
        assert len(s.targets()) == 1
        assert len(s.done_hashes(s.find_target("cpu-a"))) == 400
        assert s.integrity_check() == "ok"


KILL_SCRIPT = """
import sys
sys.path.insert(0, {root!r}); sys.path.insert(0, {tests!r})
from latency.store import Store
from test_store import row
s = Store({path!r})
tid = s.ensure_target("cpu-a", {fp!r})
i = 0
while True:
    s.upsert_measurements([row(tid, i + j) for j in range(50)])
    i += 50
    if i == 500:
        print("go", flush=True)
"""


def test_sigkill_mid_write_leaves_consistent_db(tmp_path):
    p = str(tmp_path / "k.db")
    code = KILL_SCRIPT.format(root=str(ROOT), tests=str(ROOT / "tests"), path=p, fp=FP)
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "go"
        time.sleep(0.05)
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
    assert proc.returncode == -signal.SIGKILL
    with Store(p) as s:
        assert s.integrity_check() == "ok"
        tid = s.find_target("cpu-a")
        n = len(s.done_hashes(tid))
        assert n >= 500 and n % 50 == 0  # whole batches only
        s.upsert_measurements([row(tid, 10**6)])
        assert len(s.done_hashes(tid)) == n + 1


def test_shipped_profiles_use_a_rollback_journal():
    """A WAL-mode file needs a writable -shm beside it: shipped profiles must open from read-only checkouts."""
    import sqlite3
    from pathlib import Path

    dbs = sorted((Path(__file__).resolve().parents[1] / "tables").glob("*.db"))
    assert dbs
    for db in dbs:
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
        try:
            assert con.execute("PRAGMA journal_mode").fetchone()[0] == "delete", db.name
        finally:
            con.close()


def test_a_run_whose_process_was_killed_is_closed_as_interrupted(tmp_path):
    """A sweep killed outright (SIGKILL: no handler runs) leaves its run 'running'; the next sweep's store
    marks it interrupted with the rows it wrote counted, and leaves a live process's run alone."""
    db = tmp_path / "p.db"
    with Store(db) as s:
        tid = s.ensure_target("cpu-a", FP)
        mine = s.start_run(tid, None, "smoke", None, ["x"])
    code = (f"import os, signal, sys; sys.path.insert(0, {str(ROOT)!r})\n"
            "from latency.store import Store\n"
            f"from tests.test_store import row\n"
            f"s = Store({str(db)!r}); tid = s.find_target('cpu-a')\n"
            "run = s.start_run(tid, None, 'smoke', None, ['y'])\n"
            "s.upsert_measurements([row(tid, 1, run_id=run), row(tid, 2, run_id=run, error='boom')])\n"
            "print(run, flush=True); os.kill(os.getpid(), signal.SIGKILL)\n")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert p.returncode == -signal.SIGKILL, p.stderr
    killed = p.stdout.strip()
    with Store(db) as s:
        assert s.conn.execute("SELECT status FROM runs WHERE run_id=?", (killed,)).fetchone() == ("running",)
        assert s.close_dead_runs() == [killed]
        st, n_ok, n_failed, end = s.conn.execute(
            "SELECT status, n_measured, n_failed, finished_at FROM runs WHERE run_id=?", (killed,)).fetchone()
        assert (st, n_ok, n_failed) == ("interrupted", 1, 1) and end
        assert s.conn.execute("SELECT status FROM runs WHERE run_id=?", (mine,)).fetchone() == ("running",)
        assert s.close_dead_runs() == []
