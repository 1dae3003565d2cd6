"""The model zoo builds valid, runnable models; whole-model measurement returns latencies."""

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from profilers import e2e, zoo


def _run(model):
    sess = ort.InferenceSession(model.SerializeToString(), e2e.session_options(),
                                providers=["CPUExecutionProvider"])
    return sess.run(None, e2e.make_inputs(sess, model))


@pytest.mark.parametrize("name,size,shapes", [
    ("resnet18", 64, [(1, 1000)]),
    ("mobilenet_v2", 96, [(1, 1000)]),
    ("bert_tiny", None, [(1, 128, 128), (1, 128)]),
])
def test_zoo_model_builds_and_runs(name, size, shapes):
    model = zoo.build(name, size=size)
    onnx.checker.check_model(model, full_check=True)
    assert model.ir_version == 8
    assert model.opset_import[0].version == 17
    init_names = {t.name for t in model.graph.initializer}
    assert not init_names & {i.name for i in model.graph.input}
    assert not [t.name for t in model.graph.initializer
                if t.data_type in (onnx.TensorProto.DOUBLE, onnx.TensorProto.FLOAT16)]
    outs = _run(model)
    assert [o.shape for o in outs] == shapes
    assert all(np.isfinite(o).all() for o in outs)
    declared = [tuple(d.dim_value for d in o.type.tensor_type.shape.dim)
                for o in model.graph.output]
    assert declared == shapes


def test_build_batch_and_unknown_name():
    outs = _run(zoo.build("lenet5", batch=3))
    assert outs[0].shape == (3, 10)
    with pytest.raises(KeyError, match="valid names"):
        zoo.build("resnet9000")
    assert len(zoo.NAMES) == len(set(zoo.NAMES)) >= 30


def test_measure_models_latencies_and_error():
    models = {
        "lenet5": zoo.build("lenet5").SerializeToString(),
        "mlp": zoo.build("mlp_mnist"),
        "corrupt": b"\x08\x07not an onnx model",
    }
    res = e2e.measure_models(models, rounds=3, phases=1, confirm=None)
    for name in ("lenet5", "mlp"):
        r = res[name]
        assert r["error"] is None
        assert r["latency_ms"] > 0
        assert len(r["rounds_ms"]) == 3
        assert r["latency_ms"] == min(r["rounds_ms"]) <= r["median_ms"]
        assert r["n_runs"] == 3 * r["runs_per_round"] >= 9
        assert r["spread"] >= 0
    assert res["corrupt"]["error"]
    assert res["corrupt"]["latency_ms"] is None


def test_measure_models_adds_phases_until_the_fastest_round_is_confirmed():
    models = {"lenet5": zoo.build("lenet5").SerializeToString(), "corrupt": b"\x08\x07not an onnx model"}
    # a confirmation nothing can meet: every model runs until the cap, one round per extra phase
    never = e2e.measure_models(models, rounds=2, phases=2, confirm=-1.0, max_phases=4)
    r = never["lenet5"]
    assert r["phases"] == 4 and len(r["rounds_ms"]) == 4 and not r["confirmed"]
    assert r["latency_ms"] == min(r["rounds_ms"])
    assert never["corrupt"]["error"] and never["corrupt"]["phases"] == 0
    # a loose one is met by the base phases: no extra phase
    loose = e2e.measure_models({"lenet5": models["lenet5"]}, rounds=2, phases=2, confirm=10.0, max_phases=4)
    assert loose["lenet5"]["phases"] == 2 and loose["lenet5"]["confirmed"]
    assert e2e._confirmed([1.0, 1.02, 1.5], 0.03) and not e2e._confirmed([1.0, 1.05], 0.03)
    assert not e2e._confirmed([1.0], 0.03)


def test_kernel_profile_sums_kernels():
    prof = e2e.kernel_profile(zoo.build("resnet20_cifar"), runs=3)
    assert prof["runs"] == 3
    assert prof["n_kernels"] == len(prof["kernels"]) > 5
    assert 0 < prof["kernel_sum_us"] <= prof["model_run_us"] * 1.05
    assert {"name", "op_name", "dur_us"} <= set(prof["kernels"][0])


def test_measure_models_one_session_at_a_time_when_they_would_not_fit_together():
    models = {"lenet5": zoo.build("lenet5").SerializeToString(), "mlp": zoo.build("mlp_mnist"),
              "corrupt": b"\x08\x07not an onnx model"}
    assert e2e.sessions_fit(models, available=10**9)
    assert not e2e.sessions_fit(models, available=1000)  # three small models, a host of 1 kB
    res = e2e.measure_models(models, rounds=4, phases=2, confirm=None, one_at_a_time=True)
    for name in ("lenet5", "mlp"):
        r = res[name]
        assert r["error"] is None and r["one_at_a_time"] and r["phases"] == 2
        assert r["rounds_phase"] == [0, 0, 1, 1] and r["latency_ms"] == min(r["rounds_ms"]) > 0
    assert res["corrupt"]["error"] and res["corrupt"]["latency_ms"] is None
    side = e2e.measure_models(models, rounds=2, phases=2, confirm=None)  # they fit: side by side, as always
    assert "one_at_a_time" not in side["lenet5"] and side["lenet5"]["rounds_phase"] == [0, 1]
