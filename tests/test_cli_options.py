"""CLI options that took bad values silently or failed with a traceback-like message: each is now refused in one
`error: ...` line with exit 2 (or, for --trip-count and report --top 0, does what it says).

Nothing here measures: calibrate, transfer and sweeps are refused before they start, and stubs make a
regression fail fast instead of running a real calibration or sweep."""

import json
import os

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from cli_helpers import cli, one_line_error

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ARM_DB = os.path.join(ROOT, "latency", "tables", "arm64-ort.cortex-a76.db")
TWO = ("--target", "x86-avx512-ort", "--target", "x86-avx2-ort")  # report: no comparison across every target


@pytest.fixture(autouse=True)
def _keep_affinity():
    """A regression could pin this process; give the test session its cores back."""
    cores = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else None
    yield
    if cores is not None:
        os.sched_setaffinity(0, cores)


@pytest.fixture(autouse=True)
def _nothing_measures(monkeypatch):
    def refuse(*a, **k):
        raise AssertionError("a measurement started: the option was not refused")

    import profilers.calibrate
    import profilers.sweep

    monkeypatch.setattr(profilers.calibrate, "calibrate", refuse)
    monkeypatch.setattr(profilers.calibrate, "int8_context", refuse)
    monkeypatch.setattr(profilers.sweep, "run_sweep", refuse)


@pytest.fixture(scope="module")
def lenet(tmp_path_factory):
    p = tmp_path_factory.mktemp("m") / "lenet5.onnx"
    r = cli("zoo", "lenet5", "-o", p)
    assert r.exit_code == 0, r.output
    return p


@pytest.fixture(scope="module")
def loop_model(tmp_path_factory):
    """A Loop whose trip count M is a graph input: only --trip-count says how many iterations it runs."""
    vi = helper.make_tensor_value_info
    body = helper.make_graph(
        [helper.make_node("Identity", ["cond_in"], ["cond_out"]),
         helper.make_node("MatMul", ["x_in", "W"], ["y0"]),
         helper.make_node("Relu", ["y0"], ["x_out"])],
        "body",
        [vi("i", TensorProto.INT64, []), vi("cond_in", TensorProto.BOOL, []), vi("x_in", TensorProto.FLOAT, [1, 16])],
        [vi("cond_out", TensorProto.BOOL, []), vi("x_out", TensorProto.FLOAT, [1, 16])])
    w = helper.make_tensor("W", TensorProto.FLOAT, [16, 16], np.random.default_rng(0).random(256).astype("float32"))
    cond = helper.make_tensor("cond", TensorProto.BOOL, [], [True])
    g = helper.make_graph([helper.make_node("Loop", ["M", "cond", "x"], ["y"], name="loop", body=body)], "g",
                          [vi("M", TensorProto.INT64, []), vi("x", TensorProto.FLOAT, [1, 16])],
                          [vi("y", TensorProto.FLOAT, [1, 16])], initializer=[w, cond])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    onnx.checker.check_model(m)
    p = tmp_path_factory.mktemp("m") / "loop.onnx"
    onnx.save(m, p)
    return p


# ---------------------------------------------------------------------------------------------
# 1. calibrate: --budget / --max-probes without --from; a bad --from before the budget


@pytest.mark.parametrize("args, named", [(("--budget", "1s"), "--budget goes with --from"),
                                         (("--budget", "0"), "--budget goes with --from"),
                                         (("--max-probes", "20"), "--max-probes goes with --from"),
                                         (("--budget", "5m", "--max-probes", "20"), "--budget and --max-probes go")])
def test_calibrate_refuses_transfer_options_without_from(args, named, tmp_path):
    one_line_error(cli("calibrate", "--target", "x86-avx512-ort", "--db", tmp_path / "cal.db", *args), named)
    assert not (tmp_path / "cal.db").exists()


@pytest.mark.parametrize("base, needle", [("nope.db", "does not exist"), ("bogus", "neither a profile database"),
                                          (ARM_DB, "another family")])
def test_calibrate_from_is_checked_before_the_budget(base, needle, tmp_path):
    base = tmp_path / base if base == "nope.db" else base
    line = one_line_error(cli("calibrate", "--target", "x86-avx512-ort", "--db", tmp_path / "cal.db", "--from", base,
                               "--budget", "1s"), needle)
    assert "budget" not in line


# ---------------------------------------------------------------------------------------------
# 2. --core: a core this process can run on


def _bad_cores():
    return [max(os.sched_getaffinity(0)) + 1 if hasattr(os, "sched_getaffinity") else 99999, -1]


@pytest.mark.parametrize("core", _bad_cores())
def test_validate_refuses_a_core_it_cannot_run_on(core, lenet):
    line = one_line_error(cli("validate", lenet, "--core", core), f"core {core}", "--core")
    if hasattr(os, "sched_getaffinity"):
        assert "valid cores: " + ", ".join(map(str, sorted(os.sched_getaffinity(0)))) in line


@pytest.mark.parametrize("core", _bad_cores())
def test_calibrate_and_report_refuse_a_core_they_cannot_run_on(core, lenet, tmp_path):
    one_line_error(cli("calibrate", "--target", "x86-avx512-ort", "--db", tmp_path / "cal.db", "--core", core),
                    f"core {core}")
    one_line_error(cli("report", lenet, "--out", tmp_path / "rep", "--core", core), f"core {core}")


# ---------------------------------------------------------------------------------------------
# 3. --trip-count on report (and validate's estimate)


def test_report_takes_trip_count(loop_model, tmp_path):
    one_line_error(cli("report", loop_model, *TWO, "--out", tmp_path / "r0"), "--trip-count loop=N")
    r = cli("report", loop_model, *TWO, "--out", tmp_path / "r1", "--trip-count", "loop=3")
    assert r.exit_code == 0, r.output
    assert (tmp_path / "r1" / "report.html").is_file()
    html = (tmp_path / "r1" / "report.html").read_text()
    assert "loop/body[2]/MatMul" in html  # the third iteration is priced
    one_line_error(cli("report", loop_model, *TWO, "--out", tmp_path / "r2", "--trip-count", "loop=x"),
                    "bad --trip-count")
    one_line_error(cli("report", loop_model, *TWO, "--out", tmp_path / "r3", "--trip-count", "nosuch=3"), "nosuch")


def test_estimate_trip_count_as_before(loop_model):
    r = cli("estimate", loop_model, "--target", "x86-avx512-ort", "--trip-count", "loop=3", "--top", "0")
    assert r.exit_code == 0, r.output
    assert "loop/body[2]/MatMul" in r.output


# ---------------------------------------------------------------------------------------------
# 4. --top: 0 is all in report; negative refused everywhere


def test_report_top_0_lists_every_kernel(lenet, tmp_path):
    r = cli("report", lenet, *TWO, "--out", tmp_path / "r", "--top", "0")
    assert r.exit_code == 0, r.output
    html = (tmp_path / "r" / "report.html").read_text()
    for k in ("/features/Conv_1", "/classifier/Gemm_2"):
        assert f">{k}</td>" in html, k


@pytest.mark.parametrize("cmd", ["estimate", "report", "validate", "whatif"])
def test_negative_top_is_refused(cmd, lenet, tmp_path):
    extra = ("--out", tmp_path / "r") if cmd == "report" else ()
    one_line_error(cli(cmd, lenet, *extra, "--top", "-1"), "--top", "-1")


# ---------------------------------------------------------------------------------------------
# 5. profile: --workers, --chunk, and no database left behind by a refused run


@pytest.mark.parametrize("args, needle", [(("--workers", "0"), "--workers"), (("--chunk", "0"), "--chunk"),
                                          (("--chunk", "-3"), "--chunk"), (("--ops", "Bogus"), "unknown op kind"),
                                          (("--plan", "bogus"), "unknown plan"), (("--budget", "5x"), "bad duration"),
                                          (("--ops", "Activation", "--precision", "int4"), "unknown precision 'int4'")])
def test_profile_refuses_bad_arguments_before_creating_the_database(args, needle, tmp_path):
    db = tmp_path / "x.db"
    one_line_error(cli("profile", "--target", "fake", "--db", db, "--no-progress", *args), needle)
    assert not db.exists()


# ---------------------------------------------------------------------------------------------
# 6. zoo: --size / --batch, a size too small for the architecture, a missing output folder


@pytest.mark.parametrize("args, needle", [(("--size", "0"), "--size"), (("--size", "-5"), "--size"),
                                          (("--batch", "0"), "--batch")])
def test_zoo_refuses_non_positive_size_and_batch(args, needle, tmp_path):
    out = tmp_path / "m.onnx"
    one_line_error(cli("zoo", "lenet5", "-o", out, *args), needle)
    assert not out.exists()


def test_zoo_says_a_size_is_too_small(tmp_path):
    out = tmp_path / "m.onnx"
    one_line_error(cli("zoo", "lenet5", "--size", "7", "-o", out), "--size 7 is too small", "lenet5")
    assert not out.exists()


def test_zoo_says_the_output_folder_is_missing(tmp_path):
    one_line_error(cli("zoo", "lenet5", "-o", tmp_path / "nodir" / "x.onnx"), "does not exist", "nodir")


# ---------------------------------------------------------------------------------------------
# 7. an empty --target is no target


@pytest.mark.parametrize("cmd", ["estimate", "validate", "whatif"])
def test_empty_target_is_refused(cmd, lenet):
    one_line_error(cli(cmd, lenet, "--target", ""), "unknown target ''", "valid targets:", "x86-avx512-ort")


def test_validate_takes_trip_count_and_feeds_the_loop(loop_model):
    r = cli("validate", loop_model, "--trip-count", "loop=3", "--phases", "1", "--json")
    assert r.exit_code == 0, r.output
    res = json.loads(r.stdout)
    assert any(k["name"].startswith("loop/body[2]/") for k in res["kernels"])
    assert res["total"]["measured_ms"] > 0


def test_report_core_without_validate_is_refused(lenet, tmp_path):
    one_line_error(cli("report", lenet, *TWO, "--out", tmp_path / "r", "--core", "0"),
                    "--core pins --validate's measurements")


def test_check_fusion_goes_into_the_json(lenet):
    from latency.targets import host_target

    r = cli("estimate", lenet, "--target", host_target().name, "--check-fusion", "--json")
    assert r.exit_code == 0, r.output
    d = json.loads(r.stdout)
    assert d["fusion_check"]["agrees"] is True and d["fusion_check"]["differences"] == {}


# ---------------------------------------------------------------------------------------------
# device farm, empty filters, train with nothing to train, an interrupted sweep, a new name with --db


def test_an_unreachable_ray_cluster_is_one_line_at_once(tmp_path):
    db = tmp_path / "r.db"
    r = cli("profile", "--target", "fake", "--db", db, "--ops", "Activation", "--no-progress", "--ray", "127.0.0.1:1")
    assert r.exit_code == 2 and r.output.count("error:") == 1 and "Traceback" not in r.output, r.output
    assert "cannot reach the Ray cluster at '127.0.0.1:1'" in r.output or "pip install" in r.output
    assert not db.exists()


def test_shards_below_one_and_empty_filters_are_refused(tmp_path):
    one_line_error(cli("profile", "--target", "fake", "--db", tmp_path / "a.db", "--ray", "local", "--shards", "0",
                        "--no-progress"), "--shards 0: give at least 1 shard")
    one_line_error(cli("profile", "--target", "fake", "--db", tmp_path / "b.db", "--ops", ",", "--no-progress"),
                    "--ops ',' names nothing")


def test_train_with_nothing_to_train_fails(tmp_path, monkeypatch):
    monkeypatch.undo()  # this test measures a few rows itself (the fake target's formula): the stubs off
    from latency.store import Store
    from latency.targets import get_target
    from profilers.plans import plan
    from profilers.sweep import run_sweep

    db = tmp_path / "tiny.db"
    with Store(db) as st:
        run_sweep(st, get_target("fake"), plan("quick", ops=["Activation"])[:5])
    r = cli("train", "--target", "fake", "--db", db, "--out", tmp_path / "r")
    # the per-kind table says why each was skipped, then one error line and a non-zero exit
    assert r.exit_code == 2 and r.output.strip().splitlines()[-1].startswith("error: no regressor trained"), r.output
    assert "saved to" not in r.output and "Traceback" not in r.output


def test_an_interrupted_sweep_exits_non_zero(tmp_path, monkeypatch):
    import profilers.sweep
    from profilers.sweep import SweepResult

    monkeypatch.setattr(profilers.sweep, "run_sweep",
                        lambda *a, **k: SweepResult("r1", 1, 10, 0, 3, 0, "interrupted", 1.0))
    r = cli("profile", "--target", "fake", "--db", tmp_path / "i.db", "--ops", "Activation", "--no-progress")
    assert r.exit_code == 130 and "run the same command again to resume" in r.output, r.output


def test_a_new_device_name_with_db_is_refused(tmp_path):
    one_line_error(cli("calibrate", "--target", "brandnew", "--from", "x86-avx512-ort", "--budget", "0", "--db",
                        tmp_path / "m.db"), "names a new profile", "leave out --db")


def test_model_profiling_refuses_plan_and_an_empty_kind_filter(lenet, tmp_path):
    one_line_error(cli("profile", "--target", "fake", "--db", tmp_path / "a.db", "--model", lenet, "--plan", "full",
                        "--no-progress"), "--plan and --model do not go together")
    one_line_error(cli("profile", "--target", "fake", "--db", tmp_path / "b.db", "--model", lenet, "--ops",
                        "Attention", "--no-progress"), "no kernel of", "Attention")


def test_merging_a_database_into_itself_is_refused(tmp_path):
    from latency.store import Store

    db = tmp_path / "a.db"
    with Store(db):
        pass
    one_line_error(cli("db", "merge", "--db", db, db), "is the database merged into")


def test_db_export_takes_its_format_from_the_suffix(tmp_path):
    from latency.store import Store

    db = tmp_path / "a.db"
    with Store(db):
        pass
    r = cli("db", "export", "--db", db, "--out", tmp_path / "x.jsonl")
    assert r.exit_code == 0, r.output
    r = cli("db", "export", "--db", db, "--out", tmp_path / "x.csv")
    assert r.exit_code == 0 and (tmp_path / "x.csv").read_text().startswith("target_name,device_provenance")
    assert (tmp_path / "x.jsonl").read_text() == ""  # no rows: JSON lines write nothing, CSV its header


def test_an_option_of_one_value_given_twice_is_refused_not_last_wins(tmp_path):
    """click keeps the last of a repeated single-value option and drops the others silently: refused, naming
    it (both spellings counted); repeatable options and flags are not affected."""
    from click.testing import CliRunner

    from latency.cli import main

    m = tmp_path / "m.onnx"
    import onnx

    from models import small_cnn

    onnx.save(small_cnn(), m)
    for args in (["--target", "t4", "--target", "a100"], ["--target=t4", "--target", "a100"]):
        r = CliRunner().invoke(main, ["estimate", str(m), *args])
        assert r.exit_code == 2 and len(r.output.strip().splitlines()) == 1, r.output
        assert "--target given 2 times" in r.output
    r = CliRunner().invoke(main, ["estimate", str(m), "--target", "t4", "--json", "--json"])
    assert r.exit_code == 0, r.output


# ---------------------------------------------------------------------------------------------
# data types no profile measures, empty values, shipped profiles, failed merges


def _one_matmul(tmp_path, elem, np_type):
    w = helper.make_tensor("w", elem, [64, 64], np.ones((64, 64), np_type).ravel().tolist()) \
        if elem != TensorProto.BFLOAT16 else helper.make_tensor("w", elem, [64, 64], [16256] * 4096)
    g = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"], name="mm")], "g",
                          [helper.make_tensor_value_info("x", elem, [64, 64])],
                          [helper.make_tensor_value_info("y", elem, [64, 64])], [w])
    p = tmp_path / f"mm_{elem}.onnx"
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), str(p))
    return p


@pytest.mark.parametrize("elem, np_type, needle", [(TensorProto.DOUBLE, np.float64, "float64 data"),
                                                   (TensorProto.BFLOAT16, None, "bfloat16 data"),
                                                   (TensorProto.INT32, np.int32, "int32 data")])
def test_a_product_in_an_unmeasured_type_is_uncovered_not_priced_as_fp32(elem, np_type, needle, tmp_path):
    p = _one_matmul(tmp_path, elem, np_type)
    one_line_error(cli("estimate", p, "--target", "x86-avx512-ort"), "nothing in the model could be priced", needle)
    from latency import Estimator

    e = Estimator("x86-avx512-ort").estimate(str(p))
    assert not [k for k in e.kernels if k.source != "free"] and needle in e.uncovered[0].reason


@pytest.mark.parametrize("args, needle", [(("--precision", ""), "--precision is empty"),
                                          (("--precision", "fp16", "--fp32-nodes", ""), "--fp32-nodes names no node"),
                                          (("--precision", "fp16", "--fp32-nodes", ",,"), "--fp32-nodes names no node"),
                                          (("--prune", "0.5", "--prune-nodes", ""), "--prune-nodes names no node"),
                                          (("--sparsity", " "), "--sparsity is empty")])
def test_whatif_refuses_an_empty_value(args, needle, lenet):
    one_line_error(cli("whatif", lenet, "--target", "x86-avx512-ort", *args), needle)


def test_zoo_refuses_options_without_a_name_and_an_absurd_size(tmp_path):
    one_line_error(cli("zoo", "-o", tmp_path / "x.onnx"), "without NAME")
    one_line_error(cli("zoo", "lenet5", "-o", tmp_path / "x.onnx", "--size", 100000), "beyond what the zoo writes")
    assert not (tmp_path / "x.onnx").exists()


def test_profile_and_merge_never_write_a_shipped_profile(tmp_path, monkeypatch):
    from latency.profiles import shipped_dir

    shipped = next(shipped_dir().glob("*.db"))
    before = shipped.stat().st_mtime_ns
    monkeypatch.delenv("LATENCY_CURATE_SHIPPED", raising=False)
    one_line_error(cli("profile", "--target", "x86-avx512-ort", "--db", shipped, "--ops", "Softmax"), "shipped profile")
    other = tmp_path / "other.db"
    from latency.store import Store

    with Store(other) as st:
        st.ensure_target("x86-avx512-ort", {"cpu_model": "test"})
    one_line_error(cli("db", "merge", "--db", shipped, other), "shipped profile")
    assert shipped.stat().st_mtime_ns == before


def test_a_failed_merge_leaves_no_new_database_and_a_hard_link_is_the_same_file(tmp_path):
    bad = tmp_path / "bad.db"
    bad.write_text("not a database\n")
    one_line_error(cli("db", "merge", "--db", tmp_path / "new.db", bad), "not a database")
    assert not (tmp_path / "new.db").exists()
    from latency.store import Store

    with Store(tmp_path / "a.db") as st:
        st.ensure_target("x86-avx512-ort", {"cpu_model": "test"})
    os.link(tmp_path / "a.db", tmp_path / "b.db")
    one_line_error(cli("db", "merge", "--db", tmp_path / "a.db", tmp_path / "b.db"), "nothing to merge")


def test_calibrate_refuses_an_empty_base_and_a_missing_folder(tmp_path):
    from latency.store import Store

    empty = tmp_path / "empty.db"
    with Store(empty) as st:
        st.ensure_target("x86-avx512-ort", {"cpu_model": "test"})
    one_line_error(cli("calibrate", "--target", "x86-avx512-ort", "--db", tmp_path / "nope" / "x.db", "--from",
                       "x86-avx2-ort", "--budget", "0"), "does not exist")
    assert not (tmp_path / "nope").exists()
    from latency.targets import get_target

    if not get_target("x86-avx512-ort").host_supported()[0]:
        pytest.skip(get_target("x86-avx512-ort").host_supported()[1])
    one_line_error(cli("calibrate", "--target", "x86-avx512-ort", "--db", tmp_path / "c.db", "--from", empty,
                       "--budget", "0"), "holds no measured row")
    assert not (tmp_path / "c.db").exists()


def test_an_unknown_option_of_latency_itself_is_one_line():
    one_line_error(cli("--bogus"), "No such option '--bogus'")
    one_line_error(cli("nosuchcommand"), "No such command")


def test_a_shape_that_changes_a_fixed_dim_is_said(lenet):
    from latency import Estimator

    e = Estimator("x86-avx512-ort").estimate(str(lenet), shapes={"input": [2, 1, 28, 28]})
    assert any("changes dims the model fixes" in w for w in e.warnings)
    assert not any("changes dims" in w for w in Estimator("x86-avx512-ort").estimate(str(lenet)).warnings)
