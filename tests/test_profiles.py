"""Profiles: package data, the user directory, device records and choosing the closest to a host."""

import json
import os
import shutil
import sqlite3
import subprocess
import sys
import sysconfig

from click.testing import CliRunner

import latency.profiles as P
from latency.cli import main
from latency.store import Store
from latency.targets import choose_default, get_target
from tests.models import small_cnn

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

EPYC = {"vendor": "AMD", "cpu_model": "AMD EPYC", "arch": "x86_64", "l2_mb": 1.0, "llc_mb": 32.0,
        "cpu_flags": ["avx", "avx2", "avx512bw", "avx512f", "avx512vl", "avx512_vnni", "f16c", "fma", "sse4_1"],
        "runtime": "onnxruntime", "runtime_version": "1.32.0"}
XEON = dict(EPYC, vendor="Intel", cpu_model="Intel(R) Xeon(R) Platinum 8480C", l2_mb=2.0, llc_mb=105.0,
            cpu_flags=EPYC["cpu_flags"] + ["amx_int8", "amx_tile", "amx_bf16"])
AVX2 = dict(EPYC, cpu_flags=["avx", "avx2", "f16c", "fma", "sse4_1"])


def _profile(path, target, device, provenance="measured"):
    fp = {k: device[k] for k in ("cpu_model", "cpu_flags", "arch", "runtime", "runtime_version")}
    fp.update(provider="CPUExecutionProvider", threads=1, isa=get_target(target).isa)
    with Store(path) as st:
        st.ensure_target(target, fp)
        P.write_device_record(st, target, device, provenance)
    return path


def test_runtime_version_is_the_modules_without_importing_it():
    import subprocess
    import sys

    import onnxruntime

    assert P.runtime_version_installed() == onnxruntime.__version__
    code = ("import sys; from latency.profiles import host_device; v = host_device()['runtime_version']; "
            "print(v, 'onnxruntime' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == [onnxruntime.__version__, "False"]


def test_row_counts_are_read_when_asked(tmp_path):
    """Choosing a profile reads device records only; the row counts (a scan of every row) come on first use,
    from the file as it is then, and stay."""
    db = tmp_path / "p.db"
    with Store(db) as st:
        tid = st.ensure_target("fake", {"cpu_model": "x", "arch": "x86_64"})
        st.upsert_measurements([{"target_id": tid, "key": f'{{"kind":"Relu","n":{i}}}', "latency_us": 1.0 + i}
                                for i in range(3)])
    (info,) = P.read_profile(db, "user")
    assert callable(info.rows)
    with Store(db) as st:
        st.upsert_measurements([{"target_id": tid, "key": '{"kind":"Relu","n":9}', "latency_us": None,
                                 "error": "boom"}])
    assert (info.rows_ok, info.rows_failed) == (3, 1) and info.rows == (3, 1)
    assert info.to_dict()["rows_ok"] == 3


def test_shipped_profiles_are_package_data_and_readable_read_only(tmp_path):
    from importlib.resources import files

    d = P.shipped_dir()
    assert os.environ.get("LATENCY_TABLES") or str(d) == str(files("latency") / "tables")
    dbs = sorted(p.name for p in d.glob("*.db"))
    assert "x86-avx512-ort.db" in dbs and "x86-avx2-ort.db" in dbs
    for name in dbs:
        # WAL would need a writable folder to open; a shipped profile must open in a read-only install
        mode = sqlite3.connect(f"file:{d / name}?mode=ro", uri=True).execute("PRAGMA journal_mode").fetchone()[0]
        assert mode == "delete", name
        infos = P.read_profile(d / name, "shipped")
        assert infos and infos[0].device["vendor"] and infos[0].rows_ok > 1000
    ro = tmp_path / "ro"
    ro.mkdir()
    shutil.copy(d / "x86-avx2-ort.db", ro)
    os.chmod(ro, 0o555)
    try:
        with Store(ro / "x86-avx2-ort.db", readonly=True) as st:
            assert st.find_target("x86-avx2-ort")
    finally:
        os.chmod(ro, 0o755)


def test_distance_ranks_same_device_first_and_names_differences():
    assert P.device_distance(EPYC, EPYC) == (0.0, [])
    d_xeon, diffs = P.device_distance(EPYC, XEON)
    d_avx2, _ = P.device_distance(AVX2, EPYC)
    assert d_xeon > 10 and d_avx2 >= 10
    text = "; ".join(diffs)
    assert "vendor AMD vs host Intel" in text and "+amx_int8" in text and "L2 1 MB vs host 2 MB" in text
    assert P.device_distance(dict(EPYC, arch="aarch64"), EPYC)[0] == float("inf")
    # a flag the runtime does not use still tells another CPU generation (Zen 5 has AVX-VNNI, Zen 4 not)
    d, diffs = P.device_distance(EPYC, dict(EPYC, cpu_flags=EPYC["cpu_flags"] + ["avx_vnni"]))
    assert d > 0 and "+avx_vnni" in diffs[0]
    d, diffs = P.device_distance(dict(EPYC, cpu_family_model="25/17"), dict(EPYC, cpu_family_model="26/2"))
    assert d > 0 and diffs == ["CPU family/model 25/17 vs host 26/2"]


def test_default_picks_the_closest_profile_and_says_what_differs(dirs, monkeypatch):
    shipped, user = dirs
    _profile(shipped / "x86-avx512-ort.db", "x86-avx512-ort", EPYC)
    _profile(shipped / "x86-avx2-ort.db", "x86-avx2-ort", AVX2)
    monkeypatch.setattr(P, "host_device", lambda: dict(XEON))
    t, info, note = choose_default()
    assert t.name == "x86-avx512-ort" and info.origin == "shipped"
    assert "vendor AMD vs host Intel" in note and "measured on AMD EPYC" in note
    # a profile built on this very device (user directory) wins and nothing differs
    user.mkdir(parents=True)
    _profile(user / "xeon.db", "x86-avx512-ort", XEON)
    t, info, note = choose_default()
    assert info.path.endswith("xeon.db") and info.origin == "user" and note == ""
    # an AVX2-only host gets the AVX2 profile
    monkeypatch.setattr(P, "host_device", lambda: dict(AVX2))
    t, info, note = choose_default()
    assert t.name == "x86-avx2-ort" and note == ""
    # an ARM host: no x86 profile fits
    monkeypatch.setattr(P, "host_device", lambda: dict(EPYC, arch="aarch64", cpu_flags=["asimd"]))
    t, info, _ = choose_default()
    assert info is None and t.name == "arm64-ort"


def test_named_target_warns_only_when_this_host_is_such_a_device(dirs, monkeypatch):
    from latency.estimator import Estimator

    shipped, _ = dirs
    for name in ("x86-avx512-ort", "x86-avx2-ort"):
        shutil.copy(os.path.join(ROOT, "tables", f"{name}.db"), shipped / f"{name}.db")
    m = small_cnn()
    monkeypatch.setattr(P, "host_device", lambda: dict(XEON))
    w = Estimator("x86-avx512-ort").estimate(m).warnings
    assert any("not the one its profile was measured on" in x and "vendor AMD vs host Intel" in x for x in w)
    # an AVX-512 host is not an AVX2 device: estimating the AVX2 target says nothing about this host
    w = Estimator("x86-avx2-ort").estimate(m).warnings
    assert not any("this host" in x for x in w)


def test_targets_lists_shipped_and_user_profiles_with_provenance(dirs, monkeypatch):
    shipped, user = dirs
    _profile(shipped / "x86-avx512-ort.db", "x86-avx512-ort", EPYC)
    user.mkdir(parents=True)
    _profile(user / "mine.db", "x86-avx2-ort", AVX2, provenance="emulated")
    monkeypatch.setattr(P, "host_device", lambda: dict(EPYC))
    r = CliRunner().invoke(main, ["targets", "--json"])
    assert r.exit_code == 0, r.output
    d = json.loads(r.output)
    by = {t["name"]: t for t in d["targets"]}
    assert [p["origin"] for p in by["x86-avx512-ort"]["profiles"]] == ["shipped"]
    mine = by["x86-avx2-ort"]["profiles"][0]
    assert mine["origin"] == "user" and mine["provenance"] == "emulated" and mine["path"].endswith("mine.db")
    assert by["t4"]["profiles"][0]["provenance"] == "derived"
    assert by["x86-avx512-ort"]["default"] and d["default_profile"].endswith("x86-avx512-ort.db")
    text = CliRunner().invoke(main, ["targets"]).output
    assert "user    emulated on AMD EPYC" in text and "shipped measured on AMD EPYC" in text


def test_train_and_calibrate_never_write_into_the_shipped_profile(dirs):
    shipped, _ = dirs
    shutil.copy(os.path.join(ROOT, "tables", "x86-avx2-ort.db"), shipped / "x86-avx2-ort.db")
    before = sorted(p.name for p in shipped.iterdir())
    for args in (["train", "--target", "x86-avx2-ort"], ["calibrate", "--target", "x86-avx2-ort", "--refit"]):
        r = CliRunner().invoke(main, args)
        assert r.exit_code != 0 and "shipped profile, which is never written to" in r.output, r.output
    assert sorted(p.name for p in shipped.iterdir()) == before


def test_wheel_installs_outside_the_checkout_and_estimates(tmp_path):
    """Build the wheel, install it into a fresh venv, and estimate a zoo model from another folder."""
    wheel_dir, venv, work = tmp_path / "dist", tmp_path / "venv", tmp_path / "work"
    work.mkdir()
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                    str(wheel_dir), ROOT], check=True, capture_output=True)
    wheel = next(wheel_dir.glob("latency-*.whl"))
    # six measured x86 profiles (AMD EPYC Zen 3, Zen 4 and Zen 5, an Intel Xeon with AMX, the older AVX2 one, AVX2
    # emulated) and two derived arm64 ones: 83 MB; each full profile adds about 15 MB, most of it its regressors'
    # JSON. PyPI takes up to 100 MB a file: one more profile needs smaller regressors (XGBoost's UBJSON) first
    assert wheel.stat().st_size < 95e6
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    vpy = venv / "bin" / "python"
    site = subprocess.run([vpy, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          check=True, capture_output=True, text=True).stdout.strip()
    # the wheel's own files, and this environment's dependencies through a path entry (no network)
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-index", "--target", site,
                    str(wheel)], check=True, capture_output=True)
    with open(os.path.join(site, "_deps.pth"), "w") as f:
        f.write(sysconfig.get_paths()["purelib"] + "\n")
    env = {k: v for k, v in os.environ.items() if k not in ("LATENCY_TABLES", "PYTHONPATH")}
    env["LATENCY_HOME"] = str(tmp_path / "home")
    run = lambda *a: subprocess.run([vpy, "-m", "latency.cli", *a], cwd=work, env=env, capture_output=True,  # noqa
                                    text=True)
    r = run("zoo", "resnet18", "--size", "64", "-o", "m.onnx")
    assert r.returncode == 0, r.stderr
    r = run("estimate", "m.onnx", "--target", "x86-avx512-ort", "--json")
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    assert d["total_ms"] > 0 and d["profile"].startswith(site)
    r = run("targets", "--json")
    paths = [p["path"] for t in json.loads(r.stdout)["targets"] for p in t["profiles"] if p.get("path")]
    assert paths and all(p.startswith(site) for p in paths)
    imported = subprocess.run([vpy, "-c", "import latency, profilers; print(latency.__file__)"], cwd=work, env=env,
                              capture_output=True, text=True).stdout
    assert imported.startswith(site)
    top = {p.split("/")[0] for p in __import__("zipfile").ZipFile(wheel).namelist()}
    assert top <= {"latency", "profilers", wheel.name.split("-")[0] + "-" + wheel.name.split("-")[1] + ".dist-info"}
    assert not (work / "home").exists() or not any((work / "home").iterdir())
