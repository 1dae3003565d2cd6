"""Whole models through onnxruntime-gpu (profilers/gpu.py, `latency validate --target <gpu>`): the pipeline's
logic on this host (precisions per runtime, the model each precision runs, providers, the refusal where
onnxruntime would run the model on the CPU, the protocol run end to end on the CPU execution provider), and
the real measurement where onnxruntime-gpu and a GPU are present (skipped with the reason where they are not)."""

import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from click.testing import CliRunner
from onnx import numpy_helper

from latency.cli import main
from latency.errors import LatencyError, UnknownPrecision
from latency.targets import get_target, host_target
from models import small_cnn
from profilers import gpu


@pytest.fixture
def model_path(tmp_path):
    p = tmp_path / "cnn.onnx"
    onnx.save(small_cnn(c=16, h=32), str(p))
    return str(p)


def _feed():
    return {"x": np.random.default_rng(0).standard_normal((1, 3, 32, 32)).astype(np.float32)}


def test_each_runtime_measures_its_own_precisions_and_refuses_the_others_naming_them():
    assert gpu.e2e_precisions(get_target("t4")) == ("fp32", "fp16", "int8")
    assert gpu.e2e_precisions(get_target("t4-ort-cuda")) == ("fp32", "fp16")
    with pytest.raises(UnknownPrecision, match="valid precisions: fp32, fp16$"):
        gpu.prepare_model(small_cnn(), get_target("t4-ort-cuda"), "int8", _feed())
    with pytest.raises(UnknownPrecision, match="'best'"):
        gpu.prepare_model(small_cnn(), get_target("t4"), "best", _feed())


def test_the_model_each_precision_runs():
    m = small_cnn(c=16, h=32)
    fp16, how = gpu.prepare_model(m, get_target("t4-ort-cuda"), "fp16")
    p16 = onnx.load_model_from_string(fp16)
    assert "float16" in how
    weights = {numpy_helper.to_array(i).dtype for i in p16.graph.initializer if i.name.startswith("w")}
    assert weights == {np.dtype(np.float16)}
    assert p16.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT  # keep_io_types: fed as stored
    same, how = gpu.prepare_model(m, get_target("t4"), "fp16")
    assert onnx.load_model_from_string(same) == m and "fp16 flag" in how  # TensorRT: a builder flag, model as stored
    # int8 on TensorRT: a float model is quantized by quantize_static into explicit Q/DQ, symmetric as TensorRT needs
    q, how = gpu.prepare_model(m, get_target("t4"), "int8", _feed())
    pq = onnx.load_model_from_string(q)
    assert "quantize_static" in how and gpu.has_qdq(pq)
    inits = {i.name: numpy_helper.to_array(i) for i in pq.graph.initializer}
    zps = [inits[n.input[2]] for n in pq.graph.node if n.op_type == "QuantizeLinear" and len(n.input) > 2]
    assert zps and all(z.dtype == np.int8 and not z.any() for z in zps)
    assert gpu.default_precision(get_target("t4"), pq) == "int8"
    assert gpu.default_precision(get_target("t4-ort-cuda"), pq) == "fp32"
    assert gpu.default_precision(get_target("t4"), m) == "fp32"
    with pytest.raises(LatencyError, match="measured in int8"):  # explicit quantization has no fp16 build
        gpu.prepare_model(pq, get_target("t4"), "fp16")
    with pytest.raises(LatencyError, match="give its inputs"):
        gpu.prepare_model(m, get_target("t4"), "int8")


def test_providers_follow_the_target_and_refuse_an_absent_execution_provider(monkeypatch):
    monkeypatch.setattr(ort, "get_available_providers", lambda: ["CPUExecutionProvider"])
    with pytest.raises(LatencyError, match="no TensorrtExecutionProvider"):
        gpu.providers_for(get_target("t4"), "fp16")
    with pytest.raises(LatencyError, match="no CUDAExecutionProvider.*onnxruntime-gpu"):
        gpu.providers_for(get_target("t4-ort-cuda"))
    monkeypatch.setattr(ort, "get_available_providers",
                        lambda: ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"])
    provs = gpu.providers_for(get_target("t4"), "int8", cache_dir="/tmp/engines")
    (name, opts), rest = provs[0], provs[1:]
    assert name == "TensorrtExecutionProvider" and rest == ["CUDAExecutionProvider"]  # no CPU provider asked for
    assert opts["trt_int8_enable"] and opts["trt_fp16_enable"] and opts["trt_engine_cache_path"] == "/tmp/engines"
    assert not gpu.providers_for(get_target("t4"), "fp32")[0][1]["trt_fp16_enable"]
    assert gpu.providers_for(get_target("t4-ort-cuda")) == [("CUDAExecutionProvider", {"use_tf32": 1})]


def test_a_session_onnxruntime_moved_to_the_cpu_is_refused_not_measured(model_path):
    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("this onnxruntime has the CUDA execution provider")
    # asked for the CUDA EP, an onnxruntime without it only warns and runs the model on the CPU
    make = gpu.session_factory(get_target("t4-ort-cuda"), "fp32", providers=["CUDAExecutionProvider"])
    with pytest.raises(LatencyError, match="did not start CUDAExecutionProvider.*refusing"):
        make(model_path, 1, "all")
    # and the whole-model measurement says so instead of giving CPU numbers
    res = gpu.measure_models_gpu({"m": open(model_path, "rb").read()}, get_target("t4-ort-cuda"), rounds=2, phases=1,
                                 providers=["CUDAExecutionProvider"])
    assert res["m"]["latency_ms"] is None and "refusing" in res["m"]["error"]


@pytest.mark.parametrize("target,precision", [("t4-ort-cuda", "fp32"), ("t4-ort-cuda", "fp16"), ("t4", "int8")])
def test_the_whole_model_pipeline_end_to_end_on_the_cpu_execution_provider(model_path, target, precision):
    """The GPU pipeline (prepared model, bound session, the robust protocol, the estimate beside it) run with
    the CPU execution provider standing in for the GPU's: everything but the device is the real path."""
    res = gpu.validate_gpu(model_path, get_target(target), precision, phases=1, providers=["CPUExecutionProvider"],
                           device="cpu", check_host=False)
    assert res["precision"] == precision and res["providers"] == ["CPUExecutionProvider"]
    assert res["measured_ms"] > 0 and len(res["rounds_ms"]) >= 2 and res["measured_ms"] == min(res["rounds_ms"])
    assert res["estimate_ms"] > 0 and res["estimate_source"].startswith("derived")
    assert res["error_pct"] == pytest.approx(100 * (res["estimate_ms"] - res["measured_ms"]) / res["measured_ms"])
    assert ("quantize_static" in res["prepared"]) == (precision == "int8")
    lines = gpu.render_validation({**res, "device": {"gpu_name": "test"}})
    assert any(line.startswith("measured") for line in lines) and any(line.startswith("estimate") for line in lines)


def test_validate_on_a_gpu_target_without_a_gpu_is_one_line(model_path):
    if gpu.available()[0] is not None:
        pytest.skip("a GPU backend is present on this host")
    for args in (["--target", "t4"], ["--target", "t4-ort-cuda", "--precision", "fp16"]):
        r = CliRunner().invoke(main, ["validate", model_path, *args])
        assert r.exit_code != 0 and "Traceback" not in r.output, r.output
        assert len(r.output.strip().splitlines()) == 1 and "GPU" in r.output


def test_precision_on_a_cpu_target_is_refused_in_one_line(model_path):
    r = CliRunner().invoke(main, ["validate", model_path, "--target", host_target().name, "--precision", "fp16"])
    assert r.exit_code != 0 and "Traceback" not in r.output
    assert len(r.output.strip().splitlines()) == 1 and "--precision goes with GPU targets" in r.output


def _need_ort_gpu():
    backend, why = gpu.available()
    if backend != "ort-gpu":
        pytest.skip(why or f"onnxruntime-gpu is not installed here ({backend} only)")


@pytest.mark.parametrize("target,precision", [("h100-ort-cuda", "fp32"), ("h100-ort-cuda", "fp16"), ("h100", "fp32"),
                                              ("h100", "fp16"), ("h100", "int8")])
def test_whole_model_on_this_gpu(model_path, target, precision):
    _need_ort_gpu()
    t = get_target(target)
    if t.runtime == "tensorrt" and "TensorrtExecutionProvider" not in ort.get_available_providers():
        pytest.skip("onnxruntime-gpu here has no TensorRT execution provider")
    res = gpu.validate_gpu(model_path, t, precision, phases=1)
    assert res["measured_ms"] > 0 and res["device"].get("gpu_name") and res["device"].get("driver_version")
    assert res["providers"][0] == ("TensorrtExecutionProvider" if t.runtime == "tensorrt" else "CUDAExecutionProvider")


def test_validate_cli_on_this_gpu(model_path):
    _need_ort_gpu()
    r = CliRunner().invoke(main, ["validate", model_path, "--target", "h100-ort-cuda", "--phases", "1", "--json"])
    assert r.exit_code == 0, r.output
    res = json.loads(r.output[r.output.index("{"):])
    assert res["target"] == "h100-ort-cuda" and res["measured_ms"] > 0 and res["device"]["gpu_name"]
