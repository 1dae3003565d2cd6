import gzip
import json
import random
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from latency import regressor as R  # noqa: E402
from latency.errors import MissingTable, RegressorError  # noqa: E402
from latency.ops import FEATURE_SCHEMA_VERSION, Config  # noqa: E402
from latency.store import Store  # noqa: E402
from profilers.fake import fake_latency_us  # noqa: E402

FAST = {"n_estimators": 300}


def conv_configs(n, seed=0, precisions=("fp32", "int8")):
    rng = random.Random(seed)
    out, seen = [], set()
    while len(out) < n:
        cin = rng.choice((8, 16, 32, 48, 64, 96, 128, 192, 256))
        cout = rng.choice((8, 16, 32, 48, 64, 96, 128, 192, 256))
        h = rng.choice((7, 14, 28, 56))
        k = rng.choice((1, 3, 5))
        s = rng.choice((1, 2))
        g = cin if (rng.random() < 0.2) else 1
        if g > 1:
            cout = cin
        p = {"x": [1, cin, h, h], "cout": cout, "kernel": [k, k], "strides": [s, s], "pads": [k // 2] * 4,
             "dilations": [1, 1], "group": g, "act": rng.choice(("none", "Relu")), "sum": 0}
        c = Config("Conv", p, rng.choice(precisions), "0")
        if c.hash not in seen:
            seen.add(c.hash)
            out.append(c)
    return out


def fake_store(configs):
    st = Store(":memory:")
    tid = st.ensure_target("fake-t", {"cpu_model": "fake"})
    st.upsert_measurements([{"target_id": tid, "key": c.key, "latency_us": fake_latency_us(c)} for c in configs])
    return st, tid


@pytest.fixture(scope="module")
def fitted():
    cfgs = conv_configs(300, seed=1)
    lat = np.array([fake_latency_us(c) for c in cfgs])
    return R.KindRegressor("Conv", **FAST).fit(cfgs, lat), cfgs, lat


def test_fake_formula_heldout_shapes_under_10pct():
    cfgs = conv_configs(500, seed=2)
    # the same shapes again in another precision, so a leaky split would be easy to get right
    cfgs += [Config(c.kind, c.params, "int8" if c.precision == "fp32" else "fp32", "0") for c in cfgs[:150]]
    keys = [c.key for c in cfgs]
    test = R.split_by_shape(keys, 0.25, seed=0)
    shapes_tr = {R.shape_key(k) for k, t in zip(keys, test) if not t}
    shapes_te = {R.shape_key(k) for k, t in zip(keys, test) if t}
    assert shapes_tr.isdisjoint(shapes_te) and shapes_te
    assert 0.15 < test.mean() < 0.35
    lat = np.array([fake_latency_us(c) for c in cfgs])
    tr, te = np.flatnonzero(~test), np.flatnonzero(test)
    m = R.KindRegressor("Conv", **FAST).fit([cfgs[i] for i in tr], lat[tr])
    acc = R.accuracy(m.predict([cfgs[i] for i in te]), lat[te])
    assert acc["mape_pct"] < 10, acc


def test_estimator_contract(fitted):
    m = R.KindRegressor("Conv", max_depth=5)
    assert not hasattr(m, "model_")
    p = m.get_params()
    assert p["kind"] == "Conv" and p["max_depth"] == 5 and p["n_jobs"] == 1
    clone = R.KindRegressor(**p)
    assert clone.get_params() == p
    assert m.set_params(max_depth=6) is m and m.max_depth == 6
    with pytest.raises(ValueError):
        m.set_params(bogus=1)
    reg, cfgs, _ = fitted
    assert reg.n_train_ == len(cfgs) and reg.feature_names_ == sorted(cfgs[0].features())
    assert "Conv" in repr(reg)


def test_predict_before_fit_raises():
    with pytest.raises(RegressorError, match="regressor for Conv is not fitted"):
        R.KindRegressor("Conv").predict(conv_configs(2))
    with pytest.raises(RegressorError, match="not fitted"):
        R.KindRegressor("Conv").predict_features(np.zeros((1, 3)))


def test_fit_and_predict_validation(fitted):
    reg, cfgs, lat = fitted
    with pytest.raises(RegressorError, match="> 0"):
        R.KindRegressor("Conv").fit(cfgs[:3], [1.0, 0.0, 2.0])
    with pytest.raises(RegressorError, match="latencies"):
        R.KindRegressor("Conv").fit(cfgs[:3], [1.0, 2.0])
    relu = Config("Activation", {"op": "Relu", "x": [1, 8, 8]})
    with pytest.raises(RegressorError, match="Activation"):
        reg.predict([relu])
    with pytest.raises(RegressorError, match="columns"):
        reg.predict_features(np.zeros((2, 3)))
    x = reg.feature_matrix(cfgs[:5])
    assert np.allclose(reg.predict_features(x), reg.predict(cfgs[:5]))
    assert reg.predict([]).shape == (0,)
    assert np.all(reg.predict(cfgs) > 0)


def test_save_load_same_predictions_and_no_pickle(fitted, tmp_path):
    import xgboost

    reg, cfgs, lat = fitted
    reg.save(tmp_path)
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["Conv.meta.json", "Conv.train.csv.gz", "Conv.ubj"]
    for p in tmp_path.iterdir():
        raw = p.read_bytes()
        if p.suffix == ".gz":
            raw = gzip.decompress(raw)
        assert not raw.startswith(b"\x80"), f"{p.name} looks like a pickle"
    assert (tmp_path / "Conv.ubj").read_bytes()[:1] == b"{"  # UBJSON object
    booster = xgboost.Booster()
    booster.load_model(str(tmp_path / "Conv.ubj"))
    assert booster.feature_names == reg.feature_names_
    meta = json.loads((tmp_path / "Conv.meta.json").read_text())
    assert meta["kind"] == "Conv" and meta["feature_schema_version"] == FEATURE_SCHEMA_VERSION
    assert meta["feature_names"] == reg.feature_names_ and meta["n_train"] == len(cfgs)
    assert meta["xgboost_version"] == xgboost.__version__ and meta["params"]["n_estimators"] == FAST["n_estimators"]
    train = R.read_training_data(tmp_path, "Conv")
    assert list(train["key"]) == [c.key for c in cfgs]
    assert np.allclose(train["latency_us"], lat)

    back = R.KindRegressor.load(tmp_path, "Conv")
    assert back.get_params() == reg.get_params()
    assert np.array_equal(back.predict(cfgs), reg.predict(cfgs))
    assert set(R.load_all(tmp_path)) == {"Conv"}


def _edit_meta(d, **changes):
    p = d / "Conv.meta.json"
    meta = json.loads(p.read_text())
    meta.update(changes)
    p.write_text(json.dumps(meta))


def test_schema_version_mismatch_raises(fitted, tmp_path):
    fitted[0].save(tmp_path)
    _edit_meta(tmp_path, feature_schema_version=FEATURE_SCHEMA_VERSION + 7)
    with pytest.raises(RegressorError, match=f"expected v{FEATURE_SCHEMA_VERSION}, found v{FEATURE_SCHEMA_VERSION + 7}"):
        R.KindRegressor.load(tmp_path, "Conv")


def test_feature_name_mismatch_raises(fitted, tmp_path):
    reg = fitted[0]
    reg.save(tmp_path)
    _edit_meta(tmp_path, feature_names=reg.feature_names_[:-1] + ["old_feature"])
    with pytest.raises(RegressorError, match="feature names do not match.*old_feature"):
        R.KindRegressor.load(tmp_path, "Conv")


def test_missing_files_raise_missing_table(fitted, tmp_path):
    with pytest.raises(MissingTable):
        R.KindRegressor.load(tmp_path / "nope", "Conv")
    with pytest.raises(MissingTable):
        R.load_all(tmp_path / "nope")
    assert R.load_all(tmp_path) == {}  # exists but holds none
    with pytest.raises(MissingTable):
        R.KindRegressor.load(tmp_path, "Conv")
    fitted[0].save(tmp_path)
    (tmp_path / "Conv.ubj").unlink()
    with pytest.raises(MissingTable, match="model file"):
        R.KindRegressor.load(tmp_path, "Conv")


def test_train_all_reports_and_saves(tmp_path):
    cfgs = conv_configs(200, seed=3)
    cfgs += [Config("Activation", {"op": "Relu", "x": [1, 8, 4 + i]}) for i in range(5)]
    st, tid = fake_store(cfgs)
    rep = R.train_all(st, tid, tmp_path, holdout=0.2, seed=0, kinds=["Conv", "Activation", "Free"], params=FAST)
    assert list(rep.columns) == R.REPORT_COLUMNS
    by = rep.set_index("kind")
    assert by.loc["Conv", "status"] == "trained"
    assert by.loc["Conv", "n_train"] + by.loc["Conv", "n_test"] == 200
    assert by.loc["Conv", "mape_pct"] < 15
    assert by.loc["Activation", "status"] == "skipped" and "5" in by.loc["Activation", "reason"]
    assert by.loc["Free", "status"] == "skipped" and "free" in by.loc["Free", "reason"]
    regs = R.load_all(tmp_path)
    assert set(regs) == {"Conv"}
    meta = regs["Conv"].meta_
    assert meta["source"]["target_id"] == tid and meta["source"]["target_name"] == "fake-t"
    assert meta["holdout"]["n_test"] == by.loc["Conv", "n_test"] and meta["n_train"] == 200
    assert not (tmp_path / "Free.meta.json").exists()
