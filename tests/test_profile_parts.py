"""The typed profile: Profile owns its parts; the overhead and context models load, save, fit and
are handed to an Estimator as objects (nobody assigns them to an estimator by hand)."""

import json
import shutil

import pytest

from latency.context import ContextModel
from latency.errors import MissingTable, ProfileError
from latency.estimator import Estimator, overhead_us
from latency.overhead import FORMAT, OverheadModel
from latency.profiles import LAYOUT, Profile, shipped_dir
from tests.models import small_cnn


def test_profile_owns_its_parts_in_one_layout():
    p = Profile.for_target("x86-avx512-ort")
    assert p.path.parent == shipped_dir() and p.shipped
    for part, path in (("regressors", p.regressors_dir), ("context", p.context_path),
                       ("overhead", p.overhead_path), ("calibration", p.calibration_path)):
        assert path.name == LAYOUT[part].replace("NAME", p.name).rstrip("/") and path.exists(), part
    tid, table, fp = p.table("x86-avx512-ort")
    assert len(table) > 20000 and fp["cpu_model"]
    assert p.info("x86-avx512-ort").provenance == "measured"
    assert p.context() and p.overhead().source
    with pytest.raises(MissingTable, match="has no rows for target x86-avx2-ort"):
        p.table("x86-avx2-ort")
    with pytest.raises(MissingTable, match="does not exist"):
        Profile(p.path.with_name("nope.db"))


def test_overhead_model_one_layout_for_every_calibration(tmp_path):
    # the AVX2 calibration wrote one per-kernel term, the AVX-512 one short and long terms
    old = {"per_run_us": 3.0, "per_kernel_us": 1.5, "per_weight_mb_us": 0.0, "source": "fitted: old"}
    (tmp_path / "old.json").write_text(json.dumps(old))
    m = OverheadModel.load(tmp_path / "old.json")
    assert m["per_short_kernel_us"] == m["per_long_kernel_us"] == 1.5 and "per_kernel_us" not in m
    est = Estimator("x86-avx512-ort", check_host=False, overhead=False).estimate(small_cnn())
    assert m.us(est.kernels) == pytest.approx(overhead_us(est.kernels, old)) and m.us(est.kernels) > 3.0
    m.save(tmp_path / "new.json")
    saved = json.loads((tmp_path / "new.json").read_text())
    assert saved["format"] == FORMAT and OverheadModel.load(tmp_path / "new.json").terms == m.terms
    for shipped in ("x86-avx2-ort", "x86-avx512-ort"):
        assert json.loads(Profile.for_target(shipped).overhead_path.read_text())["format"] == FORMAT
    (tmp_path / "bad.json").write_text(json.dumps({"per_run_us": "ten"}))
    with pytest.raises(ProfileError, match="bad.json is malformed"):
        OverheadModel.load(tmp_path / "bad.json")


def test_models_are_handed_to_the_estimator_as_objects():
    base = Estimator("x86-avx512-ort", check_host=False).prepare()
    m = small_cnn()
    plain = base.estimate(m)
    big = OverheadModel({"per_run_us": 1000.0, "per_short_kernel_us": 0.0, "per_long_kernel_us": 0.0,
                         "short_us": 0.0, "source": "test: 1 ms per run"})
    other = base.using(overhead=big, context=False)
    assert other.table_ is base.table_  # the loaded table is shared, not reloaded
    e = other.estimate(m)
    assert e.overhead_us == pytest.approx(1000.0) and e.overhead_source == "test: 1 ms per run"
    assert e.context_source.startswith("none") and plain.context_source.startswith("fitted")
    assert base.estimate(m).total_ms == plain.total_ms  # the original is untouched
    e2 = Estimator("x86-avx512-ort", check_host=False, overhead=big, context=ContextModel(None)).estimate(m)
    assert e2.total_ms == pytest.approx(e.total_ms)
    with pytest.raises(TypeError):
        Estimator("x86-avx512-ort", None, None, big)  # the models are keyword-only


def test_context_model_fit_save_load(tmp_path):
    pairs = [{"kind": "Conv", "isolated_us": 40.0 * (1 + i % 7), "in_model_us": 48.0 * (1 + i % 7),
              "weight_mb": 0.0, "gate": 1.0} for i in range(40)]
    cm = ContextModel.fit(pairs, min_pairs=8)
    assert cm and cm.factor("Conv", 100.0, 1.0) == pytest.approx(1.2, rel=0.05)
    cm.save(tmp_path / "c.json")
    assert ContextModel.load(tmp_path / "c.json").factor("Conv", 100.0, 1.0) == cm.factor("Conv", 100.0, 1.0)


def test_a_copied_profile_is_a_user_profile_with_all_its_parts(tmp_path):
    src = Profile.for_target("x86-avx2-ort")
    shutil.copy(src.path, tmp_path / "mine.db")
    shutil.copy(src.overhead_path, tmp_path / "mine.overhead.json")
    p = Profile(tmp_path / "mine.db")
    assert not p.shipped and p.overhead().terms == src.overhead().terms and not p.context()
    e = Estimator("x86-avx2-ort", profile=p, check_host=False).estimate(small_cnn())
    assert e.profile == str(p.path) and "regressor" not in e.sources  # no regressors were copied
