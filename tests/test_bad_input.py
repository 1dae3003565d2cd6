"""Bad input to every command that takes a file: a one-line `error: ...` that names the problem and a
non-zero exit, never a traceback; options that do nothing are errors; unknown ops are listed, never 0.

Most cases run through click's CliRunner (fast); a representative subset runs the real entry point in a
subprocess, where a traceback would really reach the user's terminal.
"""

import json
import os
import sqlite3
import subprocess
import sys

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from cli_helpers import cli, one_line_error
from latency.estimator import Estimator
from latency.store import Store
from latency.targets import get_target
from profilers.plans import plan
from profilers.sweep import run_sweep

from models import small_cnn, with_unknown_op

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FAKE = get_target("fake")


# ---------------------------------------------------------------------------------------------
# models and files


def _vi(name, shape, dt=TensorProto.FLOAT):
    return helper.make_tensor_value_info(name, dt, shape)


def _model(nodes, inputs, outputs, inits=(), opsets=(("", 17),)):
    m = helper.make_model(helper.make_graph(nodes, "g", inputs, outputs, list(inits)),
                          opset_imports=[helper.make_opsetid(d, v) for d, v in opsets])
    m.ir_version = 8
    return m


def _relu(i, o, name):
    return helper.make_node("Relu", [i], [o], name=name)


def broken_models():
    """name -> (ModelProto, what the error must mention)"""
    w = numpy_helper.from_array(np.ones((4, 3, 3, 3), np.float32), "w")
    huge = onnx.TensorProto()  # declares 10^9 elements, holds none: a truncated or hand-edited file
    huge.name, huge.data_type = "big", TensorProto.FLOAT
    huge.dims.extend([100000, 10000])
    weird = "gh\"o'st\nü✓"
    return {
        "cycle": (_model([_relu("b", "a", "r1"), _relu("a", "b", "r2")], [_vi("x", [1, 4])], [_vi("b", None)]),
                  "cycle"),
        "self_loop": (_model([helper.make_node("Add", ["x", "a"], ["a"], name="acc")], [_vi("x", [1, 4])],
                             [_vi("a", None)]), "cycle"),
        "dangling_input": (_model([helper.make_node("Add", ["x", "ghost"], ["y"], name="add")], [_vi("x", [1, 4])],
                                  [_vi("y", None)]), "'ghost'"),
        "dangling_output": (_model([_relu("x", "y", "r")], [_vi("x", [1, 4])], [_vi("nowhere", None)]),
                            "'nowhere'"),
        "tensor_written_twice": (_model([_relu("x", "y", "a"), helper.make_node("Sigmoid", ["x"], ["y"], name="b")],
                                        [_vi("x", [1, 4])], [_vi("y", None)]), "'y'"),
        "no_default_opset": (_model([_relu("x", "y", "r")], [_vi("x", [1, 4])], [_vi("y", None)], opsets=()),
                             "opset"),
        "initializer_without_data": (_model([helper.make_node("MatMul", ["x", "big"], ["y"], name="mm")],
                                            [_vi("x", [1, 100000])], [_vi("y", None)], [huge]), "'big'"),
        "quotes_unicode_newline_name": (_model([helper.make_node("Add", ["x", weird], ["y"], name="n\"ö'\n")],
                                               [_vi("x", [1, 4])], [_vi("y", None)]), repr(weird)),
        "declared_zero_dim": (_model([_relu("x", "y", "r")], [_vi("x", [1, 0, 4])], [_vi("y", None)]),
                              "dim 1 (declared 0)"),
        "conv_weights_rank": (_model([helper.make_node("Conv", ["x", "w"], ["y"], name="c")],
                                     [_vi("x", [1, 3, 8])], [_vi("y", None)], [w]), None),
    }


@pytest.fixture(scope="module")
def prof(tmp_path_factory):
    d = tmp_path_factory.mktemp("badinput")
    db = d / "fake.db"
    from latency.fusion import fuse
    from latency.graph import load_graph

    extra = [k.config for k in fuse(load_graph(small_cnn()), FAKE.fusion_rules())[0] if k.kind != "Free"]
    with Store(db) as st:
        run_sweep(st, FAKE, plan("quick") + extra)
    return db


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """name -> path of a file that is not a usable ONNX model."""
    d = tmp_path_factory.mktemp("files")
    data = small_cnn().SerializeToString()
    out = {"missing": d / "missing.onnx", "directory": d}
    for name, content in {
        "empty": b"",
        "truncated": data[: len(data) // 2],
        "truncated_end": data[:-7],
        "random_bytes": np.random.default_rng(0).bytes(4096),
        "text": b"this is a README, not a model\n" * 20,
        "json": json.dumps({"graph": {"node": []}}).encode(),
        "tensor_proto": numpy_helper.from_array(np.ones((3, 4), np.float32), "t").SerializeToString(),
        "graph_proto": small_cnn().graph.SerializeToString(),
        "sqlite": None,
    }.items():
        p = d / f"{name}.onnx"
        if content is None:
            sqlite3.connect(p).execute("create table t(a)").connection.close()
        else:
            p.write_bytes(content)
        out[name] = p
    # external data: the weights file missing, and truncated
    for name, cut in (("external_missing", None), ("external_truncated", 100)):
        sub = d / name
        sub.mkdir()
        onnx.save_model(small_cnn(), str(sub / "m.onnx"), save_as_external_data=True, all_tensors_to_one_file=True,
                        location="weights.bin", size_threshold=0)
        if cut is None:
            (sub / "weights.bin").unlink()
        else:
            (sub / "weights.bin").write_bytes((sub / "weights.bin").read_bytes()[:cut])
        out[name] = sub / "m.onnx"
    return out


# ---------------------------------------------------------------------------------------------
# files that are not models


@pytest.mark.parametrize("name", ["missing", "directory", "empty", "truncated", "truncated_end", "random_bytes", "text",
                                  "json", "tensor_proto", "graph_proto", "sqlite", "external_missing",
                                  "external_truncated"])
def test_estimate_refuses_a_file_that_is_not_a_model(name, files, prof):
    p = files[name]
    line = one_line_error(cli("estimate", p, "--target", "fake", "--profile", prof))
    assert p.name in line or str(p) in line  # names the file


@pytest.mark.parametrize("name", ["missing", "empty", "truncated", "random_bytes", "text", "tensor_proto",
                                  "external_missing"])
def test_profile_model_refuses_a_file_that_is_not_a_model(name, files, tmp_path):
    p = files[name]
    db = tmp_path / "p.db"
    one_line_error(cli("profile", "--target", "fake", "--db", db, "--model", p, "--no-progress"), p.name)


@pytest.mark.parametrize("name", list(broken_models()))
def test_estimate_refuses_a_broken_graph(name, tmp_path, prof):
    m, needle = broken_models()[name]
    p = tmp_path / "m.onnx"
    p.write_bytes(m.SerializeToString())
    r = cli("estimate", p, "--target", "fake", "--profile", prof)
    if needle is None:  # a model whose shapes do not fit together: refused or its node listed, never a crash
        assert r.exit_code in (0, 2) and isinstance(r.exception, (SystemExit, type(None))), r.output
        return
    one_line_error(r, needle)


def test_profile_model_refuses_a_broken_graph(tmp_path):
    m, _ = broken_models()["dangling_input"]
    p = tmp_path / "m.onnx"
    p.write_bytes(m.SerializeToString())
    one_line_error(cli("profile", "--target", "fake", "--db", tmp_path / "p.db", "--model", p, "--no-progress"),
                    "'ghost'")


# ---------------------------------------------------------------------------------------------
# options that do nothing or make no sense for this model


@pytest.fixture(scope="module")
def cnn(tmp_path_factory):
    p = tmp_path_factory.mktemp("cnn") / "cnn.onnx"
    onnx.save(small_cnn(), p)
    return p


def test_batch_on_a_static_batch_is_an_error_naming_it(cnn, prof):
    one_line_error(cli("estimate", cnn, "--target", "fake", "--profile", prof, "--batch", "8"),
                    "--batch 8", "static", "1x3x16x16", "--shape x=8x3x16x16")
    # the batch the model already has changes nothing and says nothing wrong
    assert cli("estimate", cnn, "--target", "fake", "--profile", prof, "--batch", "1").exit_code == 0
    for bad in ("0", "-2"):
        one_line_error(cli("estimate", cnn, "--target", "fake", "--profile", prof, "--batch", bad), "--batch")


def test_batch_fills_a_dynamic_batch(tmp_path, prof):
    m = small_cnn()
    m.graph.input[0].type.tensor_type.shape.dim[0].dim_param = "N"
    p = tmp_path / "dyn.onnx"
    onnx.save(m, p)
    r = cli("estimate", p, "--target", "fake", "--profile", prof, "--batch", "8", "--json")
    assert r.exit_code == 0, r.output
    convs = [k for k in json.loads(r.stdout)["kernels"] if k["kind"] == "Conv"]
    assert convs and all('"x":[8,' in k["key"] for k in convs)


@pytest.mark.parametrize("shape, needles", [
    ("y=1x3x16x16", ["'y'", "valid inputs: x"]),
    ("x=1x3x0x16", ["x=1x3x0x16", "> 0"]),
    ("x=1x3x-1x16", ["--shape", "INPUT=1x3x224x224"]),
    ("x=1x3x16", ["rank 4", "3 dims"]),
    ("x=1x3xax16", ["--shape"]),
    ("x=1x3x100000x100000", ["'x'", "1x3x100000x100000", "3e+10 elements"]),
])
def test_bad_shape_options(shape, needles, cnn, prof):
    one_line_error(cli("estimate", cnn, "--target", "fake", "--profile", prof, "--shape", shape), *needles)


def test_shape_error_names_inputs_with_odd_names_on_one_line(tmp_path, prof):
    odd = "in\"put'\n✓"
    m = _model([_relu(odd, "y", "r")], [_vi(odd, ["N", "T"])], [_vi("y", None)])
    p = tmp_path / "odd.onnx"
    p.write_bytes(m.SerializeToString())
    line = one_line_error(cli("estimate", p, "--target", "fake", "--profile", prof, "--shape", "x=1x4"), "'x'")
    assert repr(odd) in line
    line = one_line_error(cli("estimate", p, "--target", "fake", "--profile", prof), "no value")
    # the hint can be typed back: --shape with the quoted name
    assert repr(odd) in line


def test_an_estimate_beyond_a_day_warns(tmp_path, prof):
    n = 40
    nodes = [helper.make_node("MatMul", [f"t{i}", "b"], [f"t{i + 1}"], name=f"mm{i}") for i in range(n)]
    m = _model(nodes, [_vi("t0", [30000, 30000]), _vi("b", [30000, 30000])], [_vi(f"t{n}", None)])
    p = tmp_path / "huge.onnx"
    p.write_bytes(m.SerializeToString())
    r = cli("estimate", p, "--target", "fake", "--profile", prof)
    assert r.exit_code == 0 and "warning: the estimate is" in r.stderr and "hours" in r.stderr, r.output
    r = cli("estimate", p, "--target", "fake", "--profile", prof, "--json")
    assert any("hours" in w for w in json.loads(r.stdout)["warnings"])


# ---------------------------------------------------------------------------------------------
# unknown ops and domains: listed, never counted as 0; --strict fails


def test_unknown_ops_and_domains_are_uncovered_never_zero(tmp_path, prof):
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], name="conv", pads=[1, 1, 1, 1]),
             helper.make_node("Frobnicate", ["c"], ["f"], name="unknown_op"),          # default domain
             helper.make_node("Relu", ["f"], ["g"], name="custom_relu", domain="my.ns"),  # Relu of another domain
             helper.make_node("Relu", ["g"], ["y"], name="undeclared", domain="com.nowhere")]
    m = _model(nodes, [_vi("x", [1, 3, 16, 16])], [_vi("y", None)],
               [numpy_helper.from_array(np.ones((8, 3, 3, 3), np.float32), "w")], opsets=(("", 17), ("my.ns", 1)))
    p = tmp_path / "unknown.onnx"
    p.write_bytes(m.SerializeToString())
    r = cli("estimate", p, "--target", "fake", "--profile", prof, "--json")
    assert r.exit_code == 0, r.output
    d = json.loads(r.stdout)
    unc = {u["node"]: u["reason"] for u in d["uncovered"]}
    assert set(unc) >= {"unknown_op", "custom_relu", "undeclared"}
    assert "my.ns:Relu" in unc["custom_relu"] and "com.nowhere:Relu" in unc["undeclared"]
    priced = {n for k in d["kernels"] for n in k["nodes"]}
    assert not priced & set(unc)  # never a kernel, so never a 0 in the total
    assert d["total_ms"] > 0 and any("NOT in the total" in w for w in d["warnings"])
    r = cli("estimate", p, "--target", "fake", "--profile", prof)
    assert r.exit_code == 0 and "uncovered (3" in r.stdout and "custom_relu" in r.stdout
    one_line_error(cli("estimate", p, "--target", "fake", "--profile", prof, "--strict"), "uncovered")


@pytest.mark.parametrize("node, needles", [
    (helper.make_node("Conv", ["x", "w"], ["y"], name="conv0", kernel_shape=[3, 3], strides=[0, 0]), ["strides"]),
    (helper.make_node("Conv", ["x", "w"], ["y"], name="conv0", pads=[-1, 0, 0, 0]), ["pads"]),
    (helper.make_node("Conv", ["x", "w"], ["y"], name="conv0", group=0), ["group"]),
    (helper.make_node("Conv", ["x"], ["y"], name="conv0"), ["1 input(s)"]),
    (helper.make_node("Conv", ["", "w"], ["y"], name="conv0"), ["required input 0"]),
    (helper.make_node("Transpose", ["x"], ["y"], name="conv0", perm=[0, 1, 1, 3]), ["perm"]),
])
def test_attributes_no_runtime_accepts_are_refused_naming_the_node(node, needles, tmp_path, prof):
    m = _model([node], [_vi("x", [1, 3, 8, 8])], [_vi("y", None)],
               [numpy_helper.from_array(np.ones((4, 3, 3, 3), np.float32), "w")])
    p = tmp_path / "bad_attr.onnx"
    p.write_bytes(m.SerializeToString())
    one_line_error(cli("estimate", p, "--target", "fake", "--profile", prof), "'conv0'", *needles)
    one_line_error(cli("profile", "--target", "fake", "--db", tmp_path / "p.db", "--model", p, "--no-progress"),
                    "'conv0'", *needles)


def test_a_kernel_no_runtime_could_run_is_uncovered_not_a_crash(tmp_path, prof):
    """A 5x5 kernel over a 2x2 map, no padding: the output would be empty. Listed, never priced."""
    m = _model([helper.make_node("Conv", ["x", "w"], ["y"], name="conv0"), _relu("x", "z", "ok")],
               [_vi("x", [1, 3, 2, 2])], [_vi("y", None), _vi("z", None)],
               [numpy_helper.from_array(np.ones((4, 3, 5, 5), np.float32), "w")])
    p = tmp_path / "empty_out.onnx"
    p.write_bytes(m.SerializeToString())
    r = cli("estimate", p, "--target", "fake", "--profile", prof, "--json")
    assert r.exit_code == 0, r.output
    d = json.loads(r.stdout)
    unc = {u["node"]: u["reason"] for u in d["uncovered"]}
    assert "invalid Conv config" in unc["conv0"]  # (and the output reorder the runtime would add after it)
    assert {n for k in d["kernels"] for n in k["nodes"]} == {"ok"}
    one_line_error(cli("estimate", p, "--target", "fake", "--profile", prof, "--strict"), "conv0")
    r = cli("profile", "--target", "fake", "--db", tmp_path / "p.db", "--model", p, "--no-progress")
    assert r.exit_code == 0 and "'conv0'" in r.stderr and "not profiled" in r.stderr, r.output


def test_odd_names_survive_a_valid_model(tmp_path, prof):
    names = ["x\"'q", "ü✓\u200b", "a b", "emoji🙂"]
    nodes = [_relu(names[0], names[1], "relu\"1'"), helper.make_node("Sigmoid", [names[1]], [names[2]], name="sïg"),
             helper.make_node("Frobnicate", [names[2]], [names[3]], name="fröb\"'")]
    m = _model(nodes, [_vi(names[0], [1, 64])], [_vi(names[3], None)])
    p = tmp_path / "names.onnx"
    p.write_bytes(m.SerializeToString())
    r = cli("estimate", p, "--target", "fake", "--profile", prof, "--json")
    assert r.exit_code == 0, r.output
    d = json.loads(r.stdout)
    assert [u["node"] for u in d["uncovered"]] == ["fröb\"'"]
    assert {n for k in d["kernels"] for n in k["nodes"]} == {"relu\"1'", "sïg"}
    r = cli("estimate", p, "--target", "fake", "--profile", prof)
    assert r.exit_code == 0 and "fröb\"'" in r.stdout


# ---------------------------------------------------------------------------------------------
# databases


@pytest.fixture(scope="module")
def bad_dbs(tmp_path_factory, prof, files):
    """name -> path of a file that is not a usable profile database."""
    d = tmp_path_factory.mktemp("dbs")
    good = prof.read_bytes()
    out = {"missing": d / "missing.db", "empty": d / "empty.db", "truncated": d / "truncated.db",
           "header_only": d / "header.db", "random_bytes": d / "random.db", "text": d / "text.db",
           "onnx_model": d / "model.db"}
    out["empty"].write_bytes(b"")
    out["truncated"].write_bytes(good[: len(good) // 2])
    out["header_only"].write_bytes(good[:100])
    out["random_bytes"].write_bytes(np.random.default_rng(1).bytes(8192))
    out["text"].write_text("key,latency\nconv,3.0\n")
    out["onnx_model"].write_bytes(small_cnn().SerializeToString())
    out["not_ours"] = d / "other.db"
    sqlite3.connect(out["not_ours"]).execute("create table measurements(a)").connection.close()
    for name, sql in (("schema_text", "update meta set value='v1?' where key='schema_version'"),
                      ("schema_newer", "update meta set value='99' where key='schema_version'"),
                      ("table_dropped", "drop table runs")):
        p = d / f"{name}.db"
        p.write_bytes(good)
        with sqlite3.connect(p) as c:
            c.execute(sql)
        out[name] = p
    return out


DB_CASES = ["missing", "empty", "truncated", "header_only", "random_bytes", "text", "onnx_model", "not_ours",
            "schema_text", "schema_newer", "table_dropped"]


@pytest.mark.parametrize("name", DB_CASES)
def test_db_commands_refuse_a_bad_database(name, bad_dbs, prof, tmp_path):
    p = bad_dbs[name]
    for args in (["db", "stats", "--db", p], ["db", "export", "--db", p, "--out", tmp_path / "o.csv"],
                 ["train", "--target", "fake", "--db", p, "--out", tmp_path / "regs"],
                 ["estimate", str(small_cnn_path(tmp_path)), "--target", "fake", "--profile", p]):
        one_line_error(cli(*args), p.name)
    # merging it into a good database is refused, and leaves that database as it was
    into = tmp_path / "into.db"
    into.write_bytes(prof.read_bytes())
    one_line_error(cli("db", "merge", "--db", into, p), p.name)
    with Store(into, readonly=True) as st:
        assert st.integrity_check() == "ok" and len(st.measurements()) == len(Store(prof, readonly=True).measurements())
    # and a bad database as the target of a merge is refused too (missing: created, that is fine)
    if name != "missing" and name != "empty":
        one_line_error(cli("db", "merge", "--db", p, prof), p.name)


def small_cnn_path(d):
    p = d / "cnn.onnx"
    if not p.exists():
        onnx.save(small_cnn(), p)
    return p


def test_profile_refuses_a_database_that_is_not_one(bad_dbs, tmp_path):
    for name in ("random_bytes", "text", "onnx_model", "not_ours", "schema_newer"):
        p = bad_dbs[name]
        before = p.read_bytes()
        one_line_error(cli("profile", "--target", "fake", "--db", p, "--ops", "Pool", "--no-progress"), p.name)
        assert p.read_bytes() == before  # never written to


# ---------------------------------------------------------------------------------------------
# the real entry point: no traceback reaches the terminal


def test_entry_point_subset_in_subprocesses(files, bad_dbs, prof, cnn, tmp_path):
    env = dict(os.environ, PYTHONPATH=ROOT)
    env.pop("LATENCY_DEBUG", None)
    runs = {
        "random model": ["estimate", files["random_bytes"], "--target", "fake", "--profile", prof],
        "absurd shape": ["estimate", cnn, "--target", "fake", "--profile", prof, "--shape", "x=1x3x100000x100000"],
        "static batch": ["estimate", cnn, "--target", "fake", "--profile", prof, "--batch", "8"],
        "text database": ["db", "stats", "--db", bad_dbs["text"]],
        "model as database": ["train", "--target", "fake", "--db", bad_dbs["onnx_model"], "--out", tmp_path / "r"],
        "truncated model": ["profile", "--target", "fake", "--db", tmp_path / "p.db", "--model", files["truncated"]],
    }
    procs = {k: subprocess.Popen([sys.executable, "-m", "latency.cli", *map(str, v)], env=env, stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, text=True) for k, v in runs.items()}
    for k, p in procs.items():
        out, err = p.communicate(timeout=120)
        lines = [ln for ln in err.splitlines() if ln.strip()]
        assert p.returncode == 2, (k, p.returncode, err)
        assert "Traceback" not in err + out, (k, err)
        assert len(lines) == 1 and lines[0].startswith("error: "), (k, err)


# ---------------------------------------------------------------------------------------------
# tiny models: the overhead is never negative and kernel shares add up to at most 100%


def _chain(n, width=16):
    nodes = [helper.make_node("Relu" if i % 2 == 0 else "Sigmoid", [f"t{i}"], [f"t{i + 1}"], name=f"n{i}")
             for i in range(n)]
    return _model(nodes, [_vi("t0", [1, width])], [_vi(f"t{n}", None)])


def _check_parts(est):
    assert est.overhead_us >= 0
    assert est.total_ms > 0
    assert est.total_ms * 1000 == pytest.approx(est.kernel_sum_us + est.overhead_us)
    shares = [k.share for k in est.kernels]
    assert all(0 <= s <= 1 for s in shares) and sum(shares) <= 1 + 1e-9
    assert sum(k.latency_us for k in est.kernels) == pytest.approx(est.kernel_sum_us)


@pytest.mark.parametrize("ov", [
    {"per_run_us": -15.0, "per_kernel_us": -0.5, "per_weight_mb_us": 14.0},                       # avx2-like fit
    {"per_run_us": 4.8, "per_short_kernel_us": -1.7, "per_long_kernel_us": 3.2, "short_us": 30.0,  # avx512-like
     "per_weight_mb_us": 0.0}])
def test_negative_overhead_fits_move_into_the_kernels(ov, tmp_path, prof):
    p = tmp_path / "ov.json"
    p.write_text(json.dumps(ov))
    e = Estimator(FAKE, profile=prof, overhead=p, check_host=False)
    raw = Estimator(FAKE, profile=prof, overhead=False, check_host=False)
    for n in (1, 2, 3, 10, 30):
        est, bare = e.estimate(_chain(n)), raw.estimate(_chain(n))
        _check_parts(est)
        from latency.estimator import overhead_us

        fitted = overhead_us(bare.kernels, ov)
        if fitted < 0:  # the negative part went into the kernels, and says so; at most half of them
            assert est.total_ms * 1000 == pytest.approx(max(bare.kernel_sum_us + fitted, 0.5 * bare.kernel_sum_us))
            # every kernel whose price moved says so (a per-kernel term goes into the kernels it counts)
            moved = [k for k, b in zip(est.kernels, bare.kernels) if abs(k.latency_us - b.latency_us) > 1e-9]
            assert moved and all("moved into the kernels" in k.detail or "per-kernel term" in k.detail for k in moved)
        else:  # untouched where the fit was positive
            assert est.total_ms * 1000 == pytest.approx(bare.kernel_sum_us + fitted)


@pytest.mark.parametrize("target", ["x86-avx2-ort", "x86-avx512-ort"])
def test_shipped_profiles_on_tiny_models(target):
    try:
        e = Estimator(target, check_host=False).prepare()
    except Exception as ex:  # noqa: BLE001 - a checkout without the shipped profiles
        pytest.skip(f"shipped profile of {target} not available: {ex}")
    for n in (1, 3, 10, 30):
        _check_parts(e.estimate(_chain(n)))
    _check_parts(e.estimate(small_cnn()))
    _check_parts(e.estimate(with_unknown_op()))


def test_usage_errors_are_one_line_and_a_group_alone_shows_its_help(cnn):
    one_line_error(cli("estimate"), "Missing argument 'MODEL'", "--help")
    one_line_error(cli("estimate", cnn, "--bogus"), "--bogus")
    one_line_error(cli("estimate", cnn, "--top", "many"), "--top")
    one_line_error(cli("db", "stats"), "--db")
    r = cli("db")
    assert "Usage" in r.output and "stats" in r.output and "error:" not in r.output


def test_whatif_refusals_found_by_a_bad_input_battery(tmp_path):
    """Options that would do nothing are refused; a profile is never exported onto itself; a model with no
    node a choice can change is priced as itself with the reason; a pareto call with scores of the wrong
    length or a budget that is not a positive number is refused, and one below every point says so."""
    from latency.whatif import InvalidChoice
    from profilers import zoo

    m = tmp_path / "m.onnx"
    onnx.save(zoo.build("resnet18", size=32), m)
    one_line_error(cli("whatif", m, "--fp32-nodes", "/Conv"), "--fp32-nodes", "--precision")
    one_line_error(cli("whatif", m, "--prune-nodes", "/Conv"), "--prune")
    one_line_error(cli("whatif", m, "--csv", tmp_path / "s.csv"), "--sensitivity")
    one_line_error(cli("whatif", m, "--sensitivity", "--precision", "int8"), "--precision")
    one_line_error(cli("whatif", m, "--sensitivity", "--csv", tmp_path / "no" / "s.csv"), "no")
    one_line_error(cli("whatif", m, "--target", "t4-ort-cuda", "--precision", "int8"), "no int8")
    r = cli("whatif", m, "--precision", "int8", "--fp32-nodes", "/Conv", "--fp32-nodes", "/layer1.0/Conv", "--json")
    assert r.exit_code == 0, r.output
    assert {"/Conv", "/layer1.0/Conv"} <= set(json.loads(r.stdout)["nodes_to_exclude"])  # both, not the last
    one_line_error(cli("whatif", m, "--precision", "int8", "--fp32-nodes", "/Conv,/layer1.0/Conv", "--fp32-nodes",
                       "/Conv"), "/Conv more than once")
    r = cli("whatif", m, "--sparsity", "0.3", "--json")
    assert r.exit_code == 0 and any("priced as 50% zeros" in n for n in json.loads(r.stdout)["notes"])
    one_line_error(cli("profile", "--target", "fake", "--db", tmp_path / "p.db", "--workers", 9999), "--workers")
    assert not (tmp_path / "p.db").exists()
    db = tmp_path / "prof.db"
    with Store(db) as st:
        run_sweep(st, get_target("fake"), plan("quick", ops=["Conv"], precisions=["fp32"])[:3])
    size = db.stat().st_size
    one_line_error(cli("db", "export", "--db", db, "--out", db), "onto itself")
    with Store(db, readonly=True) as st:
        assert len(st.measurements()) == 3 and db.stat().st_size == size
    relu = tmp_path / "relu.onnx"
    onnx.save(_model([helper.make_node("Relu", ["x"], ["y"], name="r")], [_vi("x", [1, 8])], [_vi("y", [1, 8])]),
              relu)
    r = cli("whatif", relu, "--precision", "int8", "--json")
    assert r.exit_code == 0, r.output
    d = json.loads(r.stdout)
    assert d["total_ms"] == d["baseline_ms"] and any("no node of this model" in n for n in d["notes"])
    plan_ = Estimator("x86-avx512-ort").plan(str(m))
    n = len(plan_.units)
    for bad, needle in (([1.0, 2.0], "has 2 values"), (None, "not NoneType"), (np.ones((n, 2)), "not ndarray"),
                        (["a"] * n, "not a number")):
        with pytest.raises(InvalidChoice, match=needle):
            plan_.pareto(bad)
    for b in (-1, 0, float("nan"), "x"):
        with pytest.raises(InvalidChoice, match="budget_ms"):
            plan_.pareto(np.ones(n), budget_ms=b)
    front = plan_.pareto(np.ones(n), budget_ms=1e-6)
    assert front.best is None and "no point is within" in front.note
    with pytest.raises(InvalidChoice, match="fp32_nodes keeps nodes fp32"):
        plan_.evaluate({"fp32_nodes": ["/Conv"]})
    with pytest.raises(InvalidChoice, match="named by a string"):
        plan_.evaluate({"precision": "int8", "fp32_nodes": [None]})
    with pytest.raises(InvalidChoice, match="int matrix"):
        plan_.evaluate_batch(None)


def test_a_model_of_an_unknown_opset_and_a_zoo_size_past_the_position_table_are_refused(tmp_path):
    m = helper.make_model(helper.make_graph([helper.make_node("Relu", ["x"], ["y"], name="r")], "g",
                                            [_vi("x", [1, 8])], [_vi("y", [1, 8])]),
                          opset_imports=[helper.make_opsetid("", 99)])
    m.ir_version = 8
    p = tmp_path / "op99.onnx"
    onnx.save(m, p)
    one_line_error(cli("estimate", p, "--target", "x86-avx512-ort"), "opset 99", "knows opsets up to")
    one_line_error(cli("zoo", "bert_tiny", "--size", 600, "-o", tmp_path / "b.onnx"), "at most 512 tokens")
    assert not (tmp_path / "b.onnx").exists()


def test_shape_options_that_would_do_nothing_are_refused(tmp_path):
    """--shape twice for one input, a dim name only a whole --shape input carries, and a --batch that an input's
    whole --shape contradicts: each one line, never the last one silently winning."""
    w = numpy_helper.from_array(np.full((4, 3, 3, 3), 0.1, np.float32), "w")
    m = _model([helper.make_node("Conv", ["x", "w"], ["y"], name="c")], [_vi("x", ["N", 3, "H", "W"])],
               [_vi("y", None)], [w])
    p = tmp_path / "dyn.onnx"
    onnx.save(m, p)
    base = ["estimate", p, "--target", "x86-avx512-ort"]
    one_line_error(cli(*base, "--shape", "x=1x3x64x64", "--shape", "x=2x3x32x32"), "given twice")
    one_line_error(cli(*base, "--shape", "x=1x3x64x64", "--shape", "H=32"), "H=32 does nothing")
    one_line_error(cli(*base, "--shape", "x=1x3x64x64", "--batch", 4), "--batch 4 does nothing")
    assert cli(*base, "--shape", "x=4x3x64x64", "--batch", 4).exit_code == 0
    assert cli(*base, "--shape", "H=32", "--shape", "W=32", "--batch", 2).exit_code == 0
