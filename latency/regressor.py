"""Per-op-kind latency regressors: gradient-boosted trees for configs the profile never measured.

One :class:`KindRegressor` per op kind maps ``Config.features()`` to a latency in microseconds.
It is trained on ``log(latency_us)``, so squared error in the target is squared *log-ratio*:
a 10% miss on a 5 us kernel costs as much as a 10% miss on a 5 ms one, which is what a relative
error metric (MAPE) asks for. Before the trees, a small least-squares line in log-log space
(``log latency ~ a + b*log_flops + c*log_bytes``) takes out the bulk scaling with work; the trees
learn what is left. The line lets a prediction keep growing with work beyond the largest shape
in the training data, where trees alone would flatten out.

Files (never pickle): ``<dir>/<kind>.ubj`` is XGBoost's own ``save_model`` output;
``<dir>/<kind>.meta.json`` holds the feature schema, parameters, provenance, held-out metrics
and the log-log line; ``<dir>/<kind>.train.csv.gz`` holds the training rows (key, latency_us) so
the regressor can be retrained when the feature schema changes.

The trees are trained with ``xgboost.train`` on one thread (``nthread=1``; the booster is the same
one ``xgboost.XGBRegressor`` wraps, without needing scikit-learn). :class:`KindRegressor` itself
follows the scikit-learn estimator contract: ``__init__`` only stores parameters,
``get_params``/``set_params`` work on them, learned state ends in ``_``.
"""

from __future__ import annotations

import inspect
import json
import math
import os
import random
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from .errors import LatencyError, MissingTable, RegressorError, StoreError
from .ops import FEATURE_SCHEMA_VERSION, OPTIONAL_FEATURES, Config, get_kind, kinds as _all_kinds

#: fewer measured rows than this and a kind gets no regressor (train_all reports why)
MIN_ROWS = 20
MODEL_EXT = ".ubj"
META_EXT = ".meta.json"
TRAIN_EXT = ".train.csv.gz"
#: the features the log-log baseline line uses (every kind has them)
BASELINE_FEATURES = ("log_flops", "log_bytes")
#: kinds whose space is large and irregular enough for deeper, slower-learning trees (Conv: ~9k shapes
#: on a shipped profile; held-out MAPE 8.8% -> 7.9% with these on the AVX-512 profile, other kinds
#: no better or worse)
KIND_PARAMS = {"Conv": {"n_estimators": 1000, "max_depth": 8, "learning_rate": 0.05}}
#: kinds whose baseline line also sees a better measure of work (Conv: the FLOPs of the channel-padded
#: blocked kernel; the least-squares line weighs it against raw FLOPs, so a target that does not pad loses nothing)
KIND_BASELINE_FEATURES = {"Conv": ("log_flops", "log_pflops", "log_bytes")}
REPORT_COLUMNS = ["kind", "status", "reason", "n_rows", "n_shapes", "n_train", "n_test", "mape_pct",
                  "median_ape_pct", "within10_pct", "within20_pct", "fit_s"]


def _xgb():
    import xgboost

    return xgboost


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _sha256(path) -> str:
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _tag(kind: str, where=None) -> str:
    return f"regressor for {kind}" + (f" in {where}" if where is not None else "")


def shape_key(key: str) -> str:
    """The config key with precision and sparsity removed: the *shape* a held-out split groups by."""
    d = json.loads(key)
    return json.dumps({"kind": d["kind"], "params": d["params"]}, sort_keys=True, separators=(",", ":"))


def accuracy(pred_us, true_us) -> dict:
    """Relative-error summary of predictions against measurements (percentages)."""
    pred, true = np.asarray(pred_us, dtype=float), np.asarray(true_us, dtype=float)
    if len(true) == 0:
        return {"mape_pct": float("nan"), "median_ape_pct": float("nan"), "within10_pct": float("nan"),
                "within20_pct": float("nan")}
    ape = np.abs(pred - true) / true
    return {"mape_pct": float(100 * ape.mean()), "median_ape_pct": float(100 * np.median(ape)),
            "within10_pct": float(100 * (ape <= 0.10).mean()), "within20_pct": float(100 * (ape <= 0.20).mean())}


class KindRegressor:
    """Latency regressor for one op kind (scikit-learn estimator contract, XGBoost trees).

    ``fit(configs, latency_us)`` -> self; ``predict(configs)`` -> microseconds;
    ``predict_features(matrix)`` -> microseconds for a matrix whose columns are
    ``feature_names_`` (see :meth:`feature_matrix`).
    """

    def __init__(self, kind: str, n_estimators: int = 500, max_depth: int = 6, learning_rate: float = 0.08,
                 min_child_weight: float = 2.0, subsample: float = 0.8, colsample_bytree: float = 0.8,
                 reg_lambda: float = 1.0, max_bin: int = 256, baseline: bool = True,
                 objective: str = "reg:squarederror", random_state: int = 0, n_jobs: int = 1):
        self.kind = kind
        self.n_estimators = n_estimators
        self.max_depth = max_depth
        self.learning_rate = learning_rate
        self.min_child_weight = min_child_weight
        self.subsample = subsample
        self.colsample_bytree = colsample_bytree
        self.reg_lambda = reg_lambda
        self.max_bin = max_bin
        self.baseline = baseline
        self.objective = objective
        self.random_state = random_state
        self.n_jobs = n_jobs

    # ---- scikit-learn estimator contract ------------------------------------------------------

    @classmethod
    def _param_names(cls) -> list[str]:
        sig = inspect.signature(cls.__init__)
        return [p for p in sig.parameters if p != "self"]

    def get_params(self, deep: bool = True) -> dict:
        return {p: getattr(self, p) for p in self._param_names()}

    def set_params(self, **params) -> "KindRegressor":
        valid = self._param_names()
        for k, v in params.items():
            if k not in valid:
                raise ValueError(f"invalid parameter {k!r} for KindRegressor; valid: {', '.join(valid)}")
            setattr(self, k, v)
        return self

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"KindRegressor({args})"

    def _xgb_params(self) -> dict:
        return {"objective": self.objective, "tree_method": "hist", "nthread": int(self.n_jobs),
                "max_depth": int(self.max_depth), "eta": float(self.learning_rate),
                "min_child_weight": float(self.min_child_weight), "subsample": float(self.subsample),
                "colsample_bytree": float(self.colsample_bytree), "lambda": float(self.reg_lambda),
                "max_bin": int(self.max_bin), "seed": int(self.random_state)}

    # ---- features -----------------------------------------------------------------------------

    def _check_fitted(self) -> None:
        if getattr(self, "model_", None) is None:
            raise RegressorError(f"{_tag(self.kind)} is not fitted; call fit() or KindRegressor.load()")

    def _check_kinds(self, configs) -> None:
        for c in configs:
            if c.kind != self.kind:
                raise RegressorError(f"{_tag(self.kind)} got a {c.kind} config; it prices {self.kind} only")

    def feature_matrix(self, configs) -> np.ndarray:
        """float64 matrix of ``configs``' features, columns in ``feature_names_`` order."""
        self._check_fitted()
        self._check_kinds(configs)
        names = self.feature_names_
        out = np.empty((len(configs), len(names)), dtype=np.float64)
        for i, c in enumerate(configs):
            f = c.features()
            if any(n not in f for n in names) or any(n not in names and n not in OPTIONAL_FEATURES for n in f):
                raise RegressorError(self._mismatch_msg(names, sorted(f)))
            out[i] = [f[n] for n in names]
        return out

    def _mismatch_msg(self, expected, found, where=None) -> str:
        missing = sorted(set(expected) - set(found))
        extra = sorted(set(found) - set(expected))
        return (f"{_tag(self.kind, where)}: feature names do not match; expected {list(expected)}, found "
                f"{list(found)} (missing: {missing or 'none'}; unexpected: {extra or 'none'}); retrain it")

    def _baseline(self, x: np.ndarray) -> np.ndarray:
        if self.baseline_coef_ is None:
            return np.zeros(len(x))
        a = np.asarray(self.baseline_coef_, dtype=float)
        return a[0] + x[:, self._base_idx] @ a[1:]

    # ---- fit / predict ------------------------------------------------------------------------

    def fit(self, configs, latency_us, sample_weight=None) -> "KindRegressor":
        """Train on configs of this kind and their measured latencies (microseconds, > 0)."""
        get_kind(self.kind)  # UnknownOpKind for a name the registry lacks
        configs = list(configs)
        y_us = np.asarray(latency_us, dtype=float).ravel()
        if not configs:
            raise RegressorError(f"{_tag(self.kind)}: fit() needs at least one config")
        if len(y_us) != len(configs):
            raise RegressorError(f"{_tag(self.kind)}: {len(configs)} configs but {len(y_us)} latencies")
        if not np.all(np.isfinite(y_us)) or np.any(y_us <= 0):
            raise RegressorError(f"{_tag(self.kind)}: latencies must be finite and > 0 microseconds")
        self._check_kinds(configs)
        feats = [c.features() for c in configs]
        names = sorted(feats[0])
        for f in feats[1:]:
            if len(f) != len(names) or any(n not in f for n in names):
                raise RegressorError(self._mismatch_msg(names, sorted(f)))
        x = np.array([[f[n] for n in names] for f in feats], dtype=np.float64)
        y = np.log(y_us)
        w = None if sample_weight is None else np.asarray(sample_weight, dtype=float).ravel()

        self.feature_names_ = names
        self.baseline_features_ = list(KIND_BASELINE_FEATURES.get(self.kind, BASELINE_FEATURES))
        self._base_idx = [names.index(n) for n in self.baseline_features_]
        self.baseline_coef_ = None
        if self.baseline:
            a = np.column_stack([np.ones(len(x)), x[:, self._base_idx]])
            sw = np.ones(len(x)) if w is None else np.sqrt(w)
            # a little ridge keeps the line sane when a column is constant (flops = 0 kinds)
            lam = 1e-3 * len(x)
            lhs = (a * sw[:, None] ** 2).T @ a + lam * np.diag([0.0] + [1.0] * len(self._base_idx))
            rhs = (a * sw[:, None] ** 2).T @ y
            self.baseline_coef_ = [float(v) for v in np.linalg.solve(lhs, rhs)]
        resid = y - self._baseline(x)

        xgb = _xgb()
        dtrain = xgb.DMatrix(x, label=resid, weight=w, feature_names=names, nthread=int(self.n_jobs))
        self.model_ = xgb.train(self._xgb_params(), dtrain, num_boost_round=int(self.n_estimators))
        self.n_train_ = len(configs)
        self.n_features_in_ = len(names)
        self.train_keys_ = [c.key for c in configs]
        self.train_latency_us_ = y_us.copy()
        self.trained_at_ = _now()
        self.xgboost_version_ = xgb.__version__
        self.source_ = {}
        self.holdout_ = None
        return self

    def predict_features(self, matrix) -> np.ndarray:
        """Latencies (microseconds) for a feature matrix with columns in ``feature_names_`` order."""
        self._check_fitted()
        x = np.asarray(matrix, dtype=np.float64)
        if x.ndim != 2 or x.shape[1] != len(self.feature_names_):
            raise RegressorError(f"{_tag(self.kind)}: feature matrix must have {len(self.feature_names_)} "
                                 f"columns ({', '.join(self.feature_names_)}), got shape {x.shape}")
        if len(x) == 0:
            return np.zeros(0)
        z = self.model_.inplace_predict(x) + self._baseline(x)
        return np.exp(np.asarray(z, dtype=np.float64))

    def predict(self, configs) -> np.ndarray:
        """Latencies (microseconds) of configs of this kind."""
        return self.predict_features(self.feature_matrix(list(configs)))

    # ---- files --------------------------------------------------------------------------------

    def save(self, out_dir) -> Path:
        """Write ``<kind>.ubj``, ``<kind>.meta.json`` and ``<kind>.train.csv.gz`` under out_dir
        (RegressorError naming the folder when it cannot be written: read-only, disk full)."""
        self._check_fitted()
        d = Path(out_dir)
        try:
            d.mkdir(parents=True, exist_ok=True)
            return self._save(d)
        except OSError as e:
            raise RegressorError(f"cannot write {_tag(self.kind)} to {d}: {e.strerror or e}") from None
        except _xgb().core.XGBoostError as e:  # its own writer: a full disk or a vanished folder
            raise RegressorError(f"cannot write {_tag(self.kind)} to {d}: {str(e).splitlines()[0][-200:]}") from None

    def _save(self, d: Path) -> Path:
        import pandas as pd

        model_path = d / f"{self.kind}{MODEL_EXT}"
        tmp = d / f".{self.kind}.tmp{MODEL_EXT}"
        self.model_.save_model(str(tmp))
        os.replace(tmp, model_path)
        train = pd.DataFrame({"key": self.train_keys_, "latency_us": self.train_latency_us_})
        tmp = d / f".{self.kind}.tmp.csv.gz"
        train.to_csv(tmp, index=False, compression={"method": "gzip", "mtime": 0})
        os.replace(tmp, d / f"{self.kind}{TRAIN_EXT}")
        meta = {
            "kind": self.kind,
            "feature_schema_version": FEATURE_SCHEMA_VERSION,
            "feature_names": list(self.feature_names_),
            "probe_key": self.train_keys_[0],
            "target": "log(latency_us)",
            "baseline_features": list(self.baseline_features_),
            "baseline_coef": self.baseline_coef_,
            "xgboost_version": self.xgboost_version_,
            "params": self.get_params(),
            "n_train": int(self.n_train_),
            "trained_at": self.trained_at_,
            "source": dict(self.source_),
            "holdout": self.holdout_,
            "model_file": model_path.name,
            "model_sha256": _sha256(model_path),
            "train_file": f"{self.kind}{TRAIN_EXT}",
        }
        tmp = d / f".{self.kind}.tmp{META_EXT}"
        tmp.write_text(json.dumps(meta, indent=1, sort_keys=True) + "\n")
        os.replace(tmp, d / f"{self.kind}{META_EXT}")
        return model_path

    @classmethod
    def load(cls, in_dir, kind: str) -> "KindRegressor":
        """Restore a saved regressor; MissingTable when its files are absent, RegressorError when stale."""
        d = Path(in_dir)
        meta_path = d / f"{kind}{META_EXT}"
        if not d.is_dir():
            raise MissingTable(f"regressor directory {d} does not exist; train it with train_all()")
        if not meta_path.is_file():
            raise MissingTable(f"{_tag(kind, d)} is missing ({meta_path.name} not found); train it with train_all()")
        try:
            meta = json.loads(meta_path.read_text())
        except (OSError, ValueError) as e:
            raise RegressorError(f"{_tag(kind, d)}: cannot read {meta_path.name} (truncated or corrupt?): "
                                 f"{str(e).splitlines()[0]}") from None
        if not isinstance(meta, dict):
            raise RegressorError(f"{_tag(kind, d)}: {meta_path.name} holds a JSON {type(meta).__name__}, not an "
                                 "object; the file is corrupt or was edited by hand; retrain it")
        try:
            return cls._from_meta(d, kind, meta, meta_path)
        except (RegressorError, MissingTable):
            raise
        except LatencyError as e:  # a probe key that no longer parses
            raise RegressorError(f"{_tag(kind, d)}: {meta_path.name}: {e}; retrain it") from None
        except (TypeError, ValueError, KeyError, AttributeError, IndexError, ArithmeticError) as e:
            raise RegressorError(f"{_tag(kind, d)}: {meta_path.name} is malformed ({type(e).__name__}: "
                                 f"{str(e).splitlines()[0] if str(e) else ''}); the file is corrupt or was edited by "
                                 "hand; retrain it") from None

    @classmethod
    def _from_meta(cls, d: Path, kind: str, meta: dict, meta_path: Path) -> "KindRegressor":
        if meta.get("kind") != kind:
            raise RegressorError(f"{_tag(kind, d)}: {meta_path.name} is for kind {meta.get('kind')!r}, "
                                 f"expected {kind!r}")
        found_v = meta.get("feature_schema_version")
        if found_v != FEATURE_SCHEMA_VERSION:
            raise RegressorError(f"{_tag(kind, d)}: feature schema version mismatch; expected "
                                 f"v{FEATURE_SCHEMA_VERSION}, found v{found_v}; retrain it")
        name = meta.get("model_file", f"{kind}{MODEL_EXT}")
        if not isinstance(name, str) or not name or Path(name).name != name:
            raise RegressorError(f"{_tag(kind, d)}: {meta_path.name} names model file {name!r}; valid: a file name in "
                                 f"{d} (the file is corrupt or was edited by hand); retrain it")
        model_path = d / name
        if not model_path.is_file():
            raise MissingTable(f"{_tag(kind, d)} is missing its model file {model_path.name}")
        params = {k: v for k, v in (meta.get("params") or {}).items() if k in cls._param_names() and k != "kind"}
        self = cls(kind, **params)
        names = list(meta.get("feature_names") or [])
        # the registry's features today must be the ones the model was trained on
        probe = meta.get("probe_key")
        if probe:
            current = sorted(Config.from_key(probe).features())
            if sorted(set(current) - (OPTIONAL_FEATURES - set(names))) != sorted(names):
                raise RegressorError(self._mismatch_msg(names, current, d))
        want = meta.get("model_sha256")  # regressors saved before it was recorded have none
        if want is not None and want != _sha256(model_path):
            raise RegressorError(f"{_tag(kind, d)}: {model_path.name} does not match the checksum in {meta_path.name} "
                                 "(the file was changed or truncated after training); retrain it")
        xgb = _xgb()
        booster = xgb.Booster()
        try:
            booster.load_model(str(model_path))
        except (xgb.core.XGBoostError, ValueError):  # random bytes surface as UnicodeDecodeError
            raise RegressorError(f"{_tag(kind, d)}: cannot load {model_path.name}: not an XGBoost model, or "
                                 "truncated or corrupt; retrain it") from None
        booster.set_param({"nthread": int(self.n_jobs)})
        if booster.feature_names is not None and list(booster.feature_names) != names:
            raise RegressorError(self._mismatch_msg(names, list(booster.feature_names), d))
        self.model_ = booster
        self.feature_names_ = names
        self.baseline_features_ = list(meta.get("baseline_features", BASELINE_FEATURES))
        self._base_idx = [names.index(n) for n in self.baseline_features_]
        self.baseline_coef_ = meta.get("baseline_coef")
        self.n_train_ = int(meta.get("n_train", 0))
        self.n_features_in_ = len(names)
        self.trained_at_ = meta.get("trained_at")
        self.xgboost_version_ = meta.get("xgboost_version")
        self.source_ = meta.get("source") or {}
        self.holdout_ = meta.get("holdout")
        self.train_keys_, self.train_latency_us_ = None, None  # read_training_data() when needed
        self.meta_ = meta
        names_ok = names and all(isinstance(n, str) for n in names)
        coef = self.baseline_coef_
        if not names_ok or (coef is not None and (len(coef) != len(self.baseline_features_) + 1 or not all(
                isinstance(c, (int, float)) and not isinstance(c, bool) and math.isfinite(c) for c in coef))):
            raise RegressorError(f"{_tag(kind, d)}: {meta_path.name} has malformed feature_names or baseline_coef "
                                 "(the file is corrupt or was edited by hand); retrain it")
        if probe:  # the files load: one prediction shows they also work together
            got = self.predict([Config.from_key(probe)])
            if not (len(got) == 1 and math.isfinite(float(got[0])) and got[0] > 0):
                raise RegressorError(f"{_tag(kind, d)}: {model_path.name} predicts {got[0]!r} us for its own probe "
                                     "config; the file is corrupt; retrain it")
        return self


def read_training_data(in_dir, kind: str):
    """The rows a saved regressor was trained on: DataFrame(key, latency_us)."""
    import pandas as pd

    p = Path(in_dir) / f"{kind}{TRAIN_EXT}"
    if not p.is_file():
        raise MissingTable(f"training data of {_tag(kind, Path(in_dir))} is missing ({p.name} not found)")
    return pd.read_csv(p)


def load_all(in_dir) -> dict[str, KindRegressor]:
    """Every regressor saved in ``in_dir``, by kind ({} when it holds none); MissingTable when the
    directory does not exist, RegressorError when one is stale (feature schema changed)."""
    d = Path(in_dir)
    if not d.is_dir():
        raise MissingTable(f"regressor directory {d} does not exist; train it with train_all()")
    found = sorted(p.name[: -len(META_EXT)] for p in d.glob(f"*{META_EXT}") if not p.name.startswith("."))
    return {k: KindRegressor.load(d, k) for k in found}


def split_by_shape(keys, holdout: float = 0.2, seed: int = 0) -> np.ndarray:
    """Boolean test mask: whole shapes (precision/sparsity ignored) go to the test side until it
    holds about ``holdout`` of the rows; a shape never sits on both sides."""
    keys = list(keys)
    shapes = [shape_key(k) for k in keys]
    uniq = sorted(set(shapes))
    random.Random(seed).shuffle(uniq)
    counts: dict[str, int] = {}
    for s in shapes:
        counts[s] = counts.get(s, 0) + 1
    want = holdout * len(keys)
    test, n = set(), 0
    for s in uniq[:-1]:  # the last shape always trains
        if n >= want:
            break
        test.add(s)
        n += counts[s]
    return np.array([s in test for s in shapes], dtype=bool)


def _rows_for(store, target_id: str, kind: str):
    """A kind's successful rows, sorted by key; StoreError naming the file when a row holds a latency no
    measurement gives (text, <= 0, infinite) or a key that does not parse (a tampered file)."""
    import pandas as pd

    df = store.measurements(target_id, kind=kind, ok_only=True)
    df = df[df["latency_us"].notna()]
    ok = pd.to_numeric(df["latency_us"], errors="coerce").between(0, 1e300, inclusive="neither")
    if not ok.all():
        raise StoreError(f"profile database {store.path}: {int((~ok).sum())} {kind} row(s) hold a latency_us that no "
                         f"measurement gives (e.g. {df['latency_us'][~ok].iloc[0]!r}; valid: a finite number > 0); "
                         "the file is corrupt or was edited by hand")
    for k in df["key"]:
        try:
            Config.from_key(k)
        except LatencyError as e:
            raise StoreError(f"profile database {store.path}: a {kind} row has a bad key: {e}") from None
    return df.sort_values("key").reset_index(drop=True)


def train_all(store, target_id: str, out_dir, holdout: float = 0.2, seed: int = 0, kinds=None,
              params: dict | None = None, progress=None):
    """Train, evaluate on held-out shapes, refit on all rows and save one regressor per kind.

    Returns a DataFrame with one row per kind (``REPORT_COLUMNS``): ``status`` is ``trained`` or
    ``skipped`` (``reason`` says why). Metrics are on the held-out shapes: the split groups rows by
    config key without precision/sparsity, so one shape never sits on both sides.
    """
    import pandas as pd

    reg = _all_kinds()
    names = list(kinds) if kinds else sorted(reg)
    for k in names:
        get_kind(k)
    try:  # before any training: an unwritable folder fails now, not after minutes of fitting
        Path(out_dir).mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise RegressorError(f"cannot write regressors to {out_dir}: {e.strerror or e}") from None
    target = store.target(target_id)
    if target is None:
        raise RegressorError(f"target {target_id!r} is not in {store.path}")
    source = {"target_name": target["name"], "target_id": target_id,
              "profile": os.path.abspath(store.path) if store.path != ":memory:" else store.path}
    rows = []
    for kind in names:
        rec = {c: None for c in REPORT_COLUMNS}
        rec.update(kind=kind, status="skipped", n_rows=0)
        if reg[kind].free:
            rec["reason"] = "free kind: costs no data-proportional time, never trained"
            rows.append(rec)
            continue
        df = _rows_for(store, target_id, kind)
        n = len(df)
        rec["n_rows"] = n
        rec["n_shapes"] = len({shape_key(k) for k in df["key"]})
        if n < MIN_ROWS:
            rec["reason"] = f"only {n} measured rows (< {MIN_ROWS})" if n else "no measured rows"
            rows.append(rec)
            continue
        t0 = time.perf_counter()
        configs = [Config.from_key(k) for k in df["key"]]
        lat = df["latency_us"].to_numpy(dtype=float)
        test = split_by_shape(df["key"], holdout, seed)
        tr = np.flatnonzero(~test)
        te = np.flatnonzero(test)
        metrics = accuracy([], [])
        kw = {**KIND_PARAMS.get(kind, {}), **(params or {})}
        if len(te):
            m = KindRegressor(kind, **kw).fit([configs[i] for i in tr], lat[tr])
            metrics = accuracy(m.predict([configs[i] for i in te]), lat[te])
        final = KindRegressor(kind, **kw).fit(configs, lat)
        final.source_ = source
        final.holdout_ = {"fraction": holdout, "seed": seed, "split": "by shape (key without precision/sparsity)",
                          "n_train": int(len(tr)), "n_test": int(len(te)), **metrics}
        final.save(out_dir)
        reason = "" if len(te) else "one shape only: trained on all rows, nothing held out"
        rec.update(status="trained", reason=reason, n_train=int(len(tr)), n_test=int(len(te)),
                   fit_s=round(time.perf_counter() - t0, 2), **{k: round(v, 2) for k, v in metrics.items()})
        rows.append(rec)
        if progress:
            progress(rec)
    out = pd.DataFrame(rows, columns=REPORT_COLUMNS)
    for c in ("n_rows", "n_shapes", "n_train", "n_test"):
        out[c] = out[c].astype("Int64")
    return out
