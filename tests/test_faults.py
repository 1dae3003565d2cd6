"""Faults: a sweep killed at random points, two sweeps on one database, read-only places and a full
disk, and tampered or truncated profile files (database, regressors, context/overhead JSON). Every
refusal is one line naming the file; nothing is ever unpickled."""

import json
import os
import random
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import onnx
import pytest
from click.testing import CliRunner

from latency.cli import main
from latency.context import fit_context
from latency.errors import ProfileError, RegressorError, StoreError
from latency.estimator import Estimator
from latency.regressor import KindRegressor, train_all
from latency.store import Store
from latency.targets import get_target
from profilers.plans import plan
from profilers.sweep import run_sweep

from models import small_cnn

ROOT = Path(__file__).resolve().parents[1]
FAKE = get_target("fake")


def cli(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def one_line_error(r, *needles):
    assert r.exit_code == 2, (r.exit_code, r.output, r.exception)
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in r.output, r.output
    for n in needles:
        assert n in lines[0], (n, lines[0])
    return lines[0]


def _env(**kw):
    env = dict(os.environ, PYTHONPATH=str(ROOT), **kw)
    env.pop("LATENCY_DEBUG", None)
    return env


def _stored(db):
    """key_hashes stored in ``db`` ([] when the file or its schema is not there yet: a kill may land
    before the schema transaction commits)."""
    if not Path(db).exists():
        return []
    with sqlite3.connect(db) as c:
        if not c.execute("select 1 from sqlite_master where name='measurements'").fetchone():
            return []
        return [r[0] for r in c.execute("select key_hash from measurements")]


def _integrity(db) -> str:
    with sqlite3.connect(db) as c:
        return "; ".join(r[0] for r in c.execute("pragma integrity_check"))


# ---------------------------------------------------------------------------------------------
# kill -9 and concurrent sweeps


def test_kill_9_at_random_points_then_resume(tmp_path):
    """SIGKILL a `latency profile` at seeded random moments (while it imports, creates the schema,
    measures, writes a chunk); after each kill the database passes integrity_check and holds whole
    chunks only; resumed, every planned config is stored exactly once."""
    db = tmp_path / "k.db"
    planned = {c.hash for c in plan("quick")}
    rng = random.Random(20261206)
    base = [sys.executable, "-m", "latency.cli", "profile", "--target", "fake", "--db", str(db), "--plan", "quick",
            "--no-progress"]
    # (chunk size, delay per chunk, kill after rows or after a time): small chunks with a tiny delay kill
    # mostly inside writes; the first kill lands while it starts (imports, schema, first chunks). Every
    # setting has some delay: on a host where the CLI starts in ~0.2 s the whole fake plan with none is
    # written before the first kill, and nothing is left to kill
    settings = [("3", "0.01", "time"), ("1", "0.002", "rows"), ("10", "0.05", "rows"), ("7", "0.02", "rows"),
                ("1", "0.002", "rows")]
    kills = 0
    for chunk, delay, mode in settings:
        before = len(_stored(db)) if db.exists() else 0  # read before the sweep starts writing
        p = subprocess.Popen(base + ["--chunk", chunk], env=_env(LATENCY_FAKE_DELAY_S=delay),
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        t_end = time.monotonic() + 20
        target_rows = before + rng.randint(1, 60)  # kill once it has written a random number of rows
        if mode == "time":
            time.sleep(rng.uniform(0.2, 0.8))
            t_end = 0
        while time.monotonic() < t_end and p.poll() is None:
            time.sleep(rng.uniform(0.0, 0.05))
            try:
                if len(_stored(db)) >= target_rows:
                    break
            except sqlite3.Error:  # the schema is being created right now
                continue
        if p.poll() is None:
            p.send_signal(signal.SIGKILL)
            kills += 1
        p.wait()
        assert p.returncode in (-signal.SIGKILL, 0)
        if db.exists():
            assert _integrity(db) == "ok"
            got = _stored(db)
            assert len(got) == len(set(got)) and set(got) <= planned
            if p.returncode == -signal.SIGKILL and chunk != "1":  # a chunk is one transaction: all or nothing
                assert (len(got) - before) % int(chunk) == 0 or len(got) == len(planned)
    assert kills >= 4  # the kills did happen mid-sweep
    r = subprocess.run(base, env=_env(LATENCY_FAKE_DELAY_S="0"), capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    got = _stored(db)
    assert len(got) == len(set(got)) and set(got) == planned  # nothing lost, nothing twice
    with Store(db, readonly=True) as st:
        assert st.integrity_check() == "ok"
        runs = st._rows("select status from runs order by started_at, rowid")
    # the killed sweeps' runs were closed as interrupted by the next sweep; none is left 'running'
    assert {r["status"] for r in runs} <= {"interrupted", "done"} and runs[-1]["status"] == "done"
    assert 1 <= sum(r["status"] == "interrupted" for r in runs) <= kills


def test_two_sweeps_at_once_lose_no_rows(tmp_path):
    """Two processes sweep into one new database at the same time (overlapping plans, small chunks):
    both finish, and the union of what they planned is stored exactly once."""
    db = tmp_path / "two.db"
    cmd = [sys.executable, "-m", "latency.cli", "profile", "--target", "fake", "--db", str(db), "--no-progress",
           "--chunk", "3"]
    a = subprocess.Popen(cmd + ["--plan", "quick"], env=_env(LATENCY_FAKE_DELAY_S="0.01"),
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    b = subprocess.Popen(cmd + ["--plan", "quick", "--ops", "Conv,MatMul,Pool,Elementwise"],
                         env=_env(LATENCY_FAKE_DELAY_S="0.01"), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True)
    for p in (a, b):
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
    got = _stored(db)
    want = {c.hash for c in plan("quick")}
    assert len(got) == len(set(got)) and set(got) == want
    with Store(db, readonly=True) as st:
        assert st.integrity_check() == "ok"
        assert {r["status"] for r in st._rows("select status from runs")} == {"done"}
        assert len(st.targets()) == 1  # one target registered, not one per process


def test_two_stores_writing_in_threads_lose_no_rows(tmp_path):
    """The same in one process: two connections, interleaved transactions."""
    import threading

    db = tmp_path / "t.db"
    cfgs = plan("quick")
    halves = [cfgs[: len(cfgs) * 2 // 3], cfgs[len(cfgs) // 3:]]  # overlapping
    errors = []

    def sweep(part):
        try:
            with Store(db) as st:
                run_sweep(st, FAKE, part, chunk_size=2)
        except Exception as e:  # noqa: BLE001
            errors.append(e)

    ts = [threading.Thread(target=sweep, args=(h,)) for h in halves]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert not errors
    got = _stored(db)
    assert len(got) == len(set(got)) and set(got) == {c.hash for c in cfgs}


# ---------------------------------------------------------------------------------------------
# read-only places and a full disk


def _read_only_dir(tmp_path):
    """A directory in which nothing can be created: chmod 555 for a normal user; as root (which
    chmod does not stop), a place under /proc, where no file can be created by anyone."""
    if os.geteuid() != 0:
        d = tmp_path / "ro"
        d.mkdir()
        d.chmod(0o555)
        return d
    d = Path("/proc/latency-read-only-test")
    if not Path("/proc").is_dir():
        pytest.skip("running as root (chmod does not stop root) and no /proc to stand for a read-only place")
    return d


def test_read_only_directory_gives_a_clear_error(tmp_path):
    ro = _read_only_dir(tmp_path)
    src = tmp_path / "src.db"
    with Store(src) as st:
        run_sweep(st, FAKE, plan("quick", ops=["Conv"]))
    one_line_error(cli("profile", "--target", "fake", "--db", ro / "p.db", "--ops", "Pool", "--no-progress"),
                   str(ro / "p.db"), str(ro))
    one_line_error(cli("db", "merge", "--db", ro / "m.db", src), str(ro / "m.db"))
    one_line_error(cli("db", "export", "--db", src, "--out", ro / "out.csv"), str(ro / "out.csv"))
    one_line_error(cli("train", "--target", "fake", "--db", src, "--out", ro / "regs"), str(ro / "regs"))
    # and a folder that does not exist is named as such
    one_line_error(cli("profile", "--target", "fake", "--db", tmp_path / "no" / "such" / "p.db", "--ops", "Pool",
                       "--no-progress"), "does not exist")


def test_full_disk_gives_a_clear_error(tmp_path, monkeypatch):
    """A real full device for the export (/dev/full answers every write with ENOSPC); for SQLite and
    XGBoost, whose files cannot live on /dev/full, the error they raise on a full disk is injected
    (a tiny tmpfs would need root mounts)."""
    db = tmp_path / "f.db"
    with Store(db) as st:
        run_sweep(st, FAKE, plan("quick", ops=["Conv"]))
    if Path("/dev/full").exists():
        one_line_error(cli("db", "export", "--db", db, "--out", "/dev/full"), "/dev/full", "No space left")

    real = Store._upsert

    def full(self, conn, rows, when):
        raise sqlite3.OperationalError("database or disk is full")

    monkeypatch.setattr(Store, "_upsert", full)
    line = one_line_error(cli("profile", "--target", "fake", "--db", db, "--ops", "Pool", "--no-progress"),
                          str(db), "disk is full")
    assert "Traceback" not in line
    monkeypatch.setattr(Store, "_upsert", real)
    with Store(db, readonly=True) as st:  # what was there is intact, and the run says it did not finish
        assert st.integrity_check() == "ok"
        assert set(st.measurements()["kind"]) == {"Conv"}
        assert st._rows("select status from runs order by started_at")[-1]["status"] == "interrupted"

    import xgboost

    def full_save(self, fname):
        raise xgboost.core.XGBoostError(f"[12:00:00] io.cc:1: Check failed: fwrite({fname}): No space left on device")

    monkeypatch.setattr(xgboost.Booster, "save_model", full_save)
    one_line_error(cli("train", "--target", "fake", "--db", db, "--out", tmp_path / "regs"), str(tmp_path / "regs"),
                   "No space left")


# ---------------------------------------------------------------------------------------------
# tampered or truncated profile files


@pytest.fixture(scope="module")
def profile_dir(tmp_path_factory):
    """fake.db + fake.regressors/ (Conv, MatMul) + fake.overhead.json + fake.context.json, side by side."""
    d = tmp_path_factory.mktemp("prof")
    db = d / "fake.db"
    with Store(db) as st:
        run_sweep(st, FAKE, plan("quick"))
        train_all(st, st.find_target("fake"), d / "fake.regressors", kinds=["Conv", "MatMul"],
                  params={"n_estimators": 20})
    rng = np.random.default_rng(0)
    pairs = [{"kind": "Conv", "isolated_us": float(u), "in_model_us": float(u * 1.2)}
             for u in np.exp(rng.uniform(np.log(40), np.log(4000), 64))]
    (d / "fake.context.json").write_text(json.dumps(fit_context(pairs, min_pairs=16)))
    (d / "fake.overhead.json").write_text(json.dumps({"per_run_us": 5.0, "per_kernel_us": 0.5,
                                                      "per_weight_mb_us": 1.0, "source": "test"}))
    m = d / "m.onnx"
    onnx.save(small_cnn(c=24, h=20), m)  # convs off the table: the regressor prices them
    return d


def _copy(profile_dir, tmp_path):
    d = tmp_path / "p"
    shutil.copytree(profile_dir, d)
    return d


def test_the_untampered_profile_works(profile_dir):
    r = cli("estimate", profile_dir / "m.onnx", "--target", "fake", "--profile", profile_dir / "fake.db", "--json")
    assert r.exit_code == 0, r.output
    d = json.loads(r.stdout)
    assert "regressor" in d["sources"] and d["overhead_source"] == "test" and "in-model" in json.dumps(d["kernels"])


def _truncate(p, frac=0.5):
    b = p.read_bytes()
    p.write_bytes(b[: int(len(b) * frac)])


def _edit_json(p, fn):
    p.write_text(json.dumps(fn(json.loads(p.read_text()))))


def _flip_bytes(p, every=61):
    b = bytearray(p.read_bytes())
    for i in range(len(b) // 3, len(b), every):
        b[i] ^= 0x01
    p.write_bytes(bytes(b))


REGRESSOR_TAMPERS = {
    "ubj truncated": ("Conv.ubj", lambda p: _truncate(p)),
    "ubj emptied": ("Conv.ubj", lambda p: p.write_bytes(b"")),
    "ubj random bytes": ("Conv.ubj", lambda p: p.write_bytes(np.random.default_rng(2).bytes(5000))),
    "ubj bits flipped": ("Conv.ubj", _flip_bytes),  # may still parse: the checksum in the meta refuses it
    "ubj of another kind": ("Conv.ubj", lambda p: shutil.copy(p.with_name("MatMul.ubj"), p)),
    "meta truncated": ("Conv.meta.json", lambda p: _truncate(p)),
    "meta not an object": ("Conv.meta.json", lambda p: p.write_text("[1, 2, 3]")),
    "meta binary": ("Conv.meta.json", lambda p: p.write_bytes(b"\xff\xfe\x00garbage")),
    "meta coef text": ("Conv.meta.json", lambda p: _edit_json(p, lambda m: {**m, "baseline_coef": ["a", 1, 2, 3]})),
    "meta coef NaN": ("Conv.meta.json", lambda p: _edit_json(
        p, lambda m: {**m, "baseline_coef": [float("nan")] * len(m["baseline_coef"])})),
    "meta feature names": ("Conv.meta.json", lambda p: _edit_json(p, lambda m: {**m, "feature_names": 7})),
    "meta params": ("Conv.meta.json", lambda p: _edit_json(p, lambda m: {**m, "params": {"n_jobs": "many"}})),
    "meta model file outside": ("Conv.meta.json", lambda p: _edit_json(p, lambda m: {**m, "model_file": "../x.ubj"})),
    "meta probe key": ("Conv.meta.json", lambda p: _edit_json(p, lambda m: {**m, "probe_key": "{not json"})),
}


@pytest.mark.parametrize("case", list(REGRESSOR_TAMPERS))
def test_tampered_regressor_is_refused(case, profile_dir, tmp_path):
    d = _copy(profile_dir, tmp_path)
    name, tamper = REGRESSOR_TAMPERS[case]
    tamper(d / "fake.regressors" / name)
    with pytest.raises(RegressorError) as e:
        KindRegressor.load(d / "fake.regressors", "Conv")
    assert "Conv" in str(e.value) and "\n" not in str(e.value)
    one_line_error(cli("estimate", d / "m.onnx", "--target", "fake", "--profile", d / "fake.db"), "fake.regressors")


JSON_TAMPERS = {
    "truncated": lambda p: _truncate(p),
    "empty": lambda p: p.write_text(""),
    "binary": lambda p: p.write_bytes(np.random.default_rng(3).bytes(300)),
    "a list": lambda p: p.write_text("[]"),
    "a number": lambda p: p.write_text("42"),
}
OVERHEAD_TAMPERS = {
    "term is text": lambda d: {**d, "per_run_us": "fast"},
    "term is NaN": lambda d: {**d, "per_kernel_us": float("nan")},
    "term is infinite": lambda d: {**d, "per_weight_mb_us": float("inf")},
    "term is a bool": lambda d: {**d, "per_run_us": True},
    "rule is a list": lambda d: {**d, "weights": [1, 2]},
    "rule lacks keys": lambda d: {**d, "per_lowint_conv_mb_us": 1.0, "lowint_conv": {"cap_mb": 3},
                                  "per_long_kernel_us": 1.0, "per_short_kernel_us": 1.0},
}
CONTEXT_TAMPERS = {
    "curves not an object": lambda d: {**d, "kinds": [1, 2]},
    "curve lengths differ": lambda d: {**d, "kinds": {"*": {"log_us": [1.0, 2.0], "log_ratio": [0.1]}}},
    "curve of text": lambda d: {**d, "kinds": {"*": {"log_us": ["a", "b"], "log_ratio": [0.1, 0.2]}}},
    "curve NaN": lambda d: {**d, "kinds": {"*": {"log_us": [1.0, 8.0], "log_ratio": [float("nan"), 0.1]}}},
    "rate is text": lambda d: {**d, "stream_us_per_mb": "high"},
    "gate is text": lambda d: {**d, "gate": "all"},
    "min_us is text": lambda d: {**d, "min_us": "30"},
}


@pytest.mark.parametrize("which", ["overhead", "context"])
@pytest.mark.parametrize("case", list(JSON_TAMPERS))
def test_truncated_or_garbled_json_profile_file_is_refused(which, case, profile_dir, tmp_path):
    d = _copy(profile_dir, tmp_path)
    p = d / f"fake.{which}.json"
    JSON_TAMPERS[case](p)
    with pytest.raises(ProfileError) as e:
        Estimator(FAKE, profile=d / "fake.db").prepare()
    assert str(p) in str(e.value) and "\n" not in str(e.value)
    one_line_error(cli("estimate", d / "m.onnx", "--target", "fake", "--profile", d / "fake.db"), p.name)


@pytest.mark.parametrize("which, case", [("overhead", c) for c in OVERHEAD_TAMPERS] +
                         [("context", c) for c in CONTEXT_TAMPERS])
def test_tampered_json_profile_values_are_refused(which, case, profile_dir, tmp_path):
    d = _copy(profile_dir, tmp_path)
    p = d / f"fake.{which}.json"
    fn = (OVERHEAD_TAMPERS if which == "overhead" else CONTEXT_TAMPERS)[case]
    p.write_text(json.dumps(fn(json.loads(p.read_text()))))  # NaN/Infinity: JSON as Python writes it
    one_line_error(cli("estimate", d / "m.onnx", "--target", "fake", "--profile", d / "fake.db"), p.name)


DB_TAMPERS = {
    "latency is text": "update measurements set latency_us='fast' where rowid % 7 = 0",
    "latency negative": "update measurements set latency_us=-3 where rowid % 7 = 0",
    "latency zero": "update measurements set latency_us=0 where rowid % 7 = 0",
    "latency infinite": "update measurements set latency_us=9e999 where rowid % 7 = 0",
    "latency gone, no error": "update measurements set latency_us=NULL where rowid % 7 = 0",
    "fingerprint not JSON": "update targets set fingerprint='{oops'",
}


@pytest.mark.parametrize("case", list(DB_TAMPERS))
def test_tampered_database_values_are_refused(case, profile_dir, tmp_path):
    d = _copy(profile_dir, tmp_path)
    db = d / "fake.db"
    with sqlite3.connect(db) as c:
        c.execute(DB_TAMPERS[case])
    one_line_error(cli("estimate", d / "m.onnx", "--target", "fake", "--profile", db), str(db))
    with pytest.raises(StoreError):
        Estimator(FAKE, profile=db).prepare()
    into = tmp_path / "into.db"
    with Store(into) as st:
        run_sweep(st, FAKE, plan("quick", ops=["Pool"]))
    if case != "fingerprint not JSON":  # rows refused on merge, naming the file; the target is untouched
        n = len(Store(into, readonly=True).measurements())
        one_line_error(cli("db", "merge", "--db", into, db), str(db))
        assert len(Store(into, readonly=True).measurements()) == n


def test_tampered_device_record_is_refused(tmp_path):
    from latency.profiles import DEVICE_META_KEY, read_profile, write_device_record

    db = tmp_path / "d.db"
    with Store(db) as st:
        run_sweep(st, FAKE, plan("quick", ops=["Pool"]))
        write_device_record(st, "fake", {"vendor": "test"})
    assert read_profile(db, "user")[0].device["vendor"] == "test"
    with sqlite3.connect(db) as c:
        c.execute("update meta set value='{oops' where key=?", (DEVICE_META_KEY.format(target="fake"),))
    with pytest.raises(StoreError) as e:
        read_profile(db, "user")
    assert str(db) in str(e.value) and "\n" not in str(e.value)


def test_tampered_keys_and_json_columns_are_refused(profile_dir, tmp_path):
    d = _copy(profile_dir, tmp_path)
    db = d / "fake.db"
    with sqlite3.connect(db) as c:
        c.execute("update measurements set key='{\"kind\": \"Conv\", oops' where kind='Conv' and rowid % 5 = 0")
    # training reads every key: refused naming the file
    one_line_error(cli("train", "--target", "fake", "--db", db, "--out", tmp_path / "regs"), str(db), "bad key")
    # a merge checks each key against its hash
    into = tmp_path / "into.db"
    Store(into).close()
    one_line_error(cli("db", "merge", "--db", into, db), str(db))
    d2 = _copy(profile_dir, tmp_path / "b")
    with sqlite3.connect(d2 / "fake.db") as c:
        c.execute("update measurements set rounds_us='[1, 2,' where rowid % 5 = 0")
    one_line_error(cli("db", "export", "--db", d2 / "fake.db", "--out", tmp_path / "o.jsonl", "--format", "jsonl"),
                   str(d2 / "fake.db"), "rounds_us")


@pytest.mark.parametrize("cut", [0.1, 0.5, 0.9, 0.99])
def test_truncated_database_is_refused(cut, profile_dir, tmp_path):
    d = _copy(profile_dir, tmp_path)
    db = d / "fake.db"
    with sqlite3.connect(db) as c:  # everything in the main file, then cut it
        c.execute("pragma wal_checkpoint(TRUNCATE)")
        c.execute("pragma journal_mode=DELETE")
    _truncate(db, cut)
    r = cli("estimate", d / "m.onnx", "--target", "fake", "--profile", db)
    if r.exit_code == 0:  # sqlite reads only the pages it needs: a cut in unused free pages can go unseen
        with Store(db, readonly=True) as st:
            assert st.integrity_check() != "ok" or cut > 0.9
        return
    one_line_error(r, str(db))
    r = cli("db", "stats", "--db", db)
    assert r.exit_code == 2 or "integrity: " in r.stdout


# ---------------------------------------------------------------------------------------------
# nothing is ever unpickled


def test_no_module_unpickles_anything():
    """Profiles travel between machines: a pickle in one would run code on load. No module of the
    package or the profilers loads pickles (pickle/joblib/dill/cloudpickle/shelve, numpy or pandas
    pickle paths, torch.load)."""
    pattern = re.compile(r"\b(import\s+(c?pickle|joblib|dill|cloudpickle|shelve)\b|from\s+(c?pickle|joblib|dill|"
                         r"cloudpickle|shelve)\s+import|pickle\.loads?\(|joblib\.load\(|read_pickle\(|"
                         r"allow_pickle\s*=\s*True|torch\.load\(|marshal\.loads?\()")
    hits = []
    files = [p for d in ("latency", "profilers") for p in (ROOT / d).rglob("*.py")]
    assert len(files) > 10
    for p in files:
        for i, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1):
            if pattern.search(line):
                hits.append(f"{p.relative_to(ROOT)}:{i}: {line.strip()}")
    assert not hits, hits
    # and np.load, where used, never with pickles
    for p in files:
        for m in re.finditer(r"np\.load\(([^)]*)\)", p.read_text(encoding="utf-8")):
            assert "allow_pickle" not in m.group(1) or "False" in m.group(1), (p, m.group(0))
