"""One Estimator shared by threads gives the answers each model gets from an estimator used alone."""

import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from latency.estimator import Estimator
from latency.regressor import train_all
from latency.store import Store
from latency.targets import get_target
from profilers.plans import plan
from profilers.sweep import run_sweep

from models import small_cnn, with_unknown_op

FAKE = get_target("fake")


def mlp(d=64, h=128, rows=4, seed=0):
    """MatMul + bias + Relu -> MatMul -> Softmax (MatMul, Elementwise and Softmax kernels)."""
    rng = np.random.default_rng(seed)
    inits = [numpy_helper.from_array(rng.standard_normal(s).astype(np.float32), n)
             for n, s in (("w1", (d, h)), ("b1", (h,)), ("w2", (h, d)))]
    nodes = [helper.make_node("MatMul", ["x", "w1"], ["m1"], name="mm1"),
             helper.make_node("Add", ["m1", "b1"], ["a1"], name="bias1"),
             helper.make_node("Relu", ["a1"], ["r1"], name="relu1"),
             helper.make_node("MatMul", ["r1", "w2"], ["m2"], name="mm2"),
             helper.make_node("Softmax", ["m2"], ["y"], name="softmax", axis=-1)]
    g = helper.make_graph(nodes, "mlp", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [rows, d])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    return m


MODELS = {"cnn8x16": small_cnn(), "cnn16x32": small_cnn(c=16, h=32), "cnn24x20": small_cnn(c=24, h=20),
          "cnn8x8": small_cnn(h=8), "unknown_op": with_unknown_op(), "mlp64": mlp(),
          "mlp32": mlp(d=32, h=96, rows=16, seed=1), "cnn12x12": small_cnn(c=12, h=12)}


@pytest.fixture(scope="module")
def profile(tmp_path_factory):
    """A fake profile with every source in play: table rows, Conv/MatMul regressors, the prior for the
    rest, and an overhead model with a negative per-short-kernel term."""
    d = tmp_path_factory.mktemp("threads")
    db = d / "fake.db"
    with Store(db) as st:
        run_sweep(st, FAKE, plan("quick") + [k.config for k in _kernels(small_cnn()) if k.kind != "Free"])
        train_all(st, st.find_target("fake"), d / "fake.regressors", kinds=["Conv", "MatMul"],
                  params={"n_estimators": 30})
    (d / "fake.overhead.json").write_text(json.dumps({
        "per_run_us": 5.0, "per_short_kernel_us": -1.5, "per_long_kernel_us": 3.0, "short_us": 30.0,
        "per_weight_mb_us": 0.0, "source": "test"}))
    return db


def _kernels(m):
    from latency.fusion import fuse
    from latency.graph import load_graph

    return fuse(load_graph(m), FAKE.fusion_rules())[0]


def _answer(est):
    d = est.to_dict()
    return json.dumps(d, sort_keys=True, default=str)


def test_shared_estimator_matches_one_used_alone(profile):
    alone = {name: _answer(Estimator(FAKE, profile=profile, check_host=False).estimate(m))
             for name, m in MODELS.items()}
    # sources in play: a table hit, a regressor, the prior; and some node uncovered
    srcs = {k["source"] for a in alone.values() for k in json.loads(a)["kernels"]}
    assert {"table", "regressor", "prior"} <= srcs, srcs
    assert json.loads(alone["unknown_op"])["uncovered"]
    for rnd in range(3):
        shared = Estimator(FAKE, profile=profile, check_host=False)
        names = list(MODELS) * 3
        start = threading.Barrier(len(MODELS))

        def run(i):
            if i < len(MODELS):
                start.wait()  # the first calls race into prepare() together
            return names[i], _answer(shared.estimate(MODELS[names[i]]))

        with ThreadPoolExecutor(max_workers=len(MODELS)) as pool:
            got = list(pool.map(run, range(len(names))))
        for name, ans in got:
            assert ans == alone[name], f"round {rnd}, {name}: a shared estimator answered differently"


def test_no_thread_prices_with_a_half_prepared_estimator(profile, monkeypatch):
    """Two first calls at once: the second must not reset what the first is pricing with.

    Store calls are hooked so that, where both threads run prepare() (the bug), the first stops just
    after loading its table until the second has started its own preparation, and then prices while
    the second sits in it; where prepare() runs once under a lock, the first waits 0.5 s for a second
    that never comes and goes on."""
    alone = {n: _answer(Estimator(FAKE, profile=profile, check_host=False).estimate(MODELS[n]))
             for n in ("cnn8x16", "mlp64")}
    real_table, real_target = Store.latency_table, Store.target
    first_loaded, second_in, first_done, calls = threading.Event(), threading.Event(), threading.Event(), []
    lock = threading.Lock()

    def table(self, tid):
        with lock:
            calls.append(tid)
            i = len(calls) - 1
        if i > 0:  # a second preparation: let the first one go on, and stay here until it has priced
            second_in.set()
            first_done.wait(10)
        return real_table(self, tid)

    def target(self, tid):
        first_loaded.set()
        second_in.wait(0.5)
        return real_target(self, tid)

    monkeypatch.setattr(Store, "target", target)
    monkeypatch.setattr(Store, "latency_table", table)
    shared = Estimator(FAKE, profile=profile, check_host=False)

    def run(name):
        if name == "mlp64":  # the second caller arrives once the first has loaded its table
            first_loaded.wait(10)
        try:
            return name, _answer(shared.estimate(MODELS[name]))
        finally:
            first_done.set()

    with ThreadPoolExecutor(max_workers=2) as pool:
        got = list(pool.map(run, ["cnn8x16", "mlp64"]))
    for name, ans in got:
        assert ans == alone[name], f"{name}: priced with a half-prepared estimator"
    assert len(calls) == 1  # the table is loaded once


def test_shared_estimator_prepared_once_under_threads(profile, monkeypatch):
    """Concurrent first calls load the table once, not once per thread."""
    calls = []
    real = Store.latency_table

    def counting(self, tid):
        calls.append(tid)
        time.sleep(0.02)
        return real(self, tid)

    monkeypatch.setattr(Store, "latency_table", counting)
    shared = Estimator(FAKE, profile=profile, check_host=False)
    with ThreadPoolExecutor(max_workers=6) as pool:
        list(pool.map(lambda m: shared.estimate(m), [MODELS["cnn8x16"]] * 6))
    assert len(calls) == 1
