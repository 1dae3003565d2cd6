"""The device farm (profilers.farm): a sweep split into shards that a local Ray cluster of two workers
runs, each shard into its own database, merged exactly into one profile."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from latency.cli import main
from latency.ops import Config
from latency.store import Store
from latency.targets import get_target
from profilers.farm import FarmError, run_farm, run_shard, shard_plan
from profilers.measure import Protocol
from profilers.plans import plan

FAST = Protocol(phases=1, rounds_per_phase=2, warmup=1, min_runs=3, max_runs=5, remeasure_phases=0)


def test_shards_are_a_stable_partition_of_the_plan():
    cfgs = plan("quick")[:200]
    shards = shard_plan(cfgs + cfgs[:20], 3)  # duplicates are one config
    flat = [c.hash for s in shards for c in s]
    assert sorted(flat) == sorted({c.hash for c in cfgs}) and len(flat) == len(set(flat))
    assert all(shards)  # 200 configs over 3 hash ranges: none empty
    # a config stays in its shard whatever else the plan holds
    where = {c.hash: i for i, s in enumerate(shards) for c in s}
    for i, s in enumerate(shard_plan(cfgs[50:120], 3)):
        assert all(where[c.hash] == i for c in s)
    with pytest.raises(FarmError, match="at least 1"):
        shard_plan(cfgs, 0)


def test_shard_database_merges_exactly_without_ray(tmp_path):
    """run_shard is plain Python: its shipped bytes are a whole profile database."""
    keys = [c.key for c in plan("quick")[:30]]
    out = run_shard("fake", keys, FAST, "001-of-001", 10, "test")
    p = tmp_path / "s.db"
    p.write_bytes(out["db"])
    with Store(tmp_path / "main.db") as st:
        assert st.merge_from(p, counts=True)["added"] == 30
        assert st.merge_from(p, counts=True) == {"targets": 0, "added": 0, "replaced": 0, "kept": 30, "renamed": {}}
        assert len(st.measurements()) == 30
        assert st.target(out["target_id"])["fingerprint"] == get_target("fake").fingerprint()


@pytest.fixture(scope="module")
def ray_cluster():
    ray = pytest.importorskip("ray", reason="ray is not installed (pip install 'latency[ray]')")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield ray
    ray.shutdown()


def test_farm_two_workers_nothing_lost_or_doubled_and_resumes(ray_cluster, tmp_path):
    t = get_target("fake")
    good = plan("quick")[:120]
    # a config the backend cannot measure (no such precision): its shard's task raises
    bad = Config("Elementwise", {"op": "Add", "inputs": [[2], [2]], "const_b": 0}, precision="int4")
    with Store(tmp_path / "farm.db") as st:
        r = run_farm(st, t, good + [bad], n_shards=4, protocol=FAST, chunk_size=10)
        failed = r.failed_shards
        assert len(failed) == 1 and failed[0].error and "FAILED" in failed[0].line()
        bad_shard = [i for i, s in enumerate(shard_plan(good + [bad], 4)) if bad.hash in {c.hash for c in s}][0]
        assert failed[0].shard.startswith(f"{bad_shard + 1:03d}")
        lost = {c.hash for c in shard_plan(good + [bad], 4)[bad_shard]} - {bad.hash}
        ok = [s for s in r.shards if not s.error]
        assert sum(s.measured for s in ok) == sum(s.merged["added"] for s in ok) == 120 - len(lost)
        assert len({s.host for s in ok}) >= 1 and all(s.path for s in ok)
        tid = st.find_target("fake")
        assert len(st.measurements(tid)) == 120 - len(lost)
        # the re-run measures only the failed shard's configs
        r2 = run_farm(st, t, good, n_shards=4, protocol=FAST, chunk_size=10)
        assert not r2.failed_shards and r2.already == 120 - len(lost)
        assert sum(s.measured for s in r2.shards) == len(lost)
        df = st.measurements(tid)
        assert len(df) == 120 and df["key_hash"].is_unique and set(df["key_hash"]) == {c.hash for c in good}
        assert df["error"].isna().all()
        # and a third measures nothing
        r3 = run_farm(st, t, good, n_shards=4, protocol=FAST)
        assert sum(s.measured for s in r3.shards) == 0 and len(st.measurements(tid)) == 120
        runs = st.db.conn.execute("SELECT count(*) FROM runs WHERE status='done'").fetchone()[0]
        assert runs == 3 + 1  # the three good shards, then the re-run of the failed one


def test_farm_refuses_shards_of_another_device_and_keeps_them(ray_cluster, tmp_path):
    t = get_target("fake")
    cfgs = plan("quick")[:20]
    db = tmp_path / "other.db"
    with Store(db) as st:
        tid = st.ensure_target("fake", dict(t.fingerprint(), cpu_model="another CPU"))
        st.upsert_measurements([{"target_id": tid, "key": cfgs[0].key, "latency_us": 1.0}])
        r = run_farm(st, t, cfgs, n_shards=2, protocol=FAST)
        assert len(r.failed_shards) == 2 and all("another device" in s.error for s in r.failed_shards)
        assert len(st.measurements()) == 1  # nothing of the other device joined the name
    kept = [s.path for s in r.shards]
    assert all(kept)
    res = CliRunner().invoke(main, ["db", "merge", "--db", str(db), "--keep-both", *kept])
    assert res.exit_code == 0, res.output
    with Store(db, readonly=True) as st:
        # the first config was skipped as stored (under the name): the shards measured the other 19
        assert len(st.measurements()) == 1 + 19 and len(st.targets()) == 2


def test_farm_real_x86_shards(ray_cluster, tmp_path):
    """Real onnxruntime sessions on the workers: a handful of x86 configs in two shards."""
    sup = [get_target(n) for n in ("x86-avx512-ort", "x86-avx2-ort")]
    sup = [t for t in sup if t.host_supported()[0]]
    if not sup:
        pytest.skip(f"no x86 target runs on this host: {get_target('x86-avx2-ort').host_supported()[1]}")
    t = sup[0]
    cfgs = plan("quick", ops=["Elementwise", "Activation"], target=t)[:6]
    with Store(tmp_path / "x86.db") as st:
        r = run_farm(st, t, cfgs, n_shards=2, protocol=FAST, chunk_size=3)
        assert not r.failed_shards
        df = st.measurements(st.find_target(t.name), ok_only=True)
        assert len(df) == len(cfgs) and (df["latency_us"] > 0).all() and df["n_runs"].min() >= FAST.min_runs
        assert json.loads(st.meta()[f"device:{t.name}"])["provenance"] == "measured"


def test_cli_profile_ray_local(ray_cluster, tmp_path):
    db = tmp_path / "c.db"
    r = CliRunner().invoke(main, ["profile", "--target", "fake", "--db", str(db), "--ops", "Pool", "--ray", "local",
                                  "--shards", "3", "--no-progress"])
    assert r.exit_code == 0, r.output
    assert r.output.count("shard ") == 3 and "0 failed shard" in r.output
    with Store(db, readonly=True) as st:
        n = len(st.measurements())
    assert n == len(plan("quick", ops=["Pool"]))


def test_cli_without_ray_says_how_to_get_it(tmp_path, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError, as where it is not installed
    r = CliRunner().invoke(main, ["profile", "--target", "fake", "--db", str(tmp_path / "n.db"), "--ray", "local"])
    assert r.exit_code == 2 and r.output.strip().splitlines() == [
        "error: the device farm needs Ray: pip install 'latency[ray]'"] and not (tmp_path / "n.db").exists()


def test_cli_farm_options_that_do_not_apply_are_refused(tmp_path):
    for extra in (["--ray", "10.0.0.1:6379", "--workers", "3"], ["--ray", "local", "--budget", "1m"],
                  ["--shards", "3"]):
        r = CliRunner().invoke(main, ["profile", "--target", "fake", "--db", str(tmp_path / "o.db"), *extra])
        assert r.exit_code == 2 and len(r.output.strip().splitlines()) == 1, r.output
        assert ("--ray" in r.output) and not (tmp_path / "o.db").exists()
