import math

import pytest

from latency.errors import UnknownOpKind
from latency.ops import Config, config_key, get_kind, key_hash, kind_of_op, kinds
from profilers.builders import UNMEASURED, buildable_kinds


def test_every_kind_is_measurable_or_declared_free():
    for name, k in kinds().items():
        assert (name in buildable_kinds()) != (name in UNMEASURED), name
        assert k.free == (name in UNMEASURED)


def test_unknown_kind_lists_valid_ones():
    with pytest.raises(UnknownOpKind) as e:
        get_kind("Convolution")
    assert "Conv" in str(e.value) and "MatMul" in str(e.value)


def test_key_is_canonical_and_hash_stable():
    p1 = {"x": [1, 3, 8, 8], "cout": 4, "kernel": [3, 3], "strides": [1, 1], "pads": [1, 1, 1, 1],
          "dilations": [1, 1], "group": 1, "act": "Relu", "sum": 0, "ignored": 7}
    p2 = dict(reversed(list(p1.items())))
    p2["x"] = (1, 3, 8, 8)
    assert config_key("Conv", p1) == config_key("Conv", p2)
    assert "ignored" not in config_key("Conv", p1)
    assert key_hash(config_key("Conv", p1)) != key_hash(config_key("Conv", p1, "int8"))
    c = Config.from_key(config_key("Conv", p1, "int8", "2:4"))
    assert (c.kind, c.precision, c.sparsity) == ("Conv", "int8", "2:4")


def test_every_conv_activation_has_its_own_features():
    """Activations cost from nothing (Relu) to 20x the conv (an unfused Softplus): no two that a Conv
    kernel may carry, nor any of them and no activation, may look alike to the regressor."""
    from latency.fusion import GENERIC_GPU_RULES, ORT_CPU_ARM64_RULES, ORT_CPU_X86_RULES
    from latency.ops import CONV_ACTS

    for rules in (ORT_CPU_X86_RULES(16), ORT_CPU_X86_RULES(8), ORT_CPU_ARM64_RULES, GENERIC_GPU_RULES):
        assert set(rules.conv_act) | {"HardSwish"} <= set(CONV_ACTS), rules.name  # NCHWc fuses HardSwish too
    base = {"x": [1, 32, 16, 16], "cout": 32, "kernel": [3, 3], "strides": [1, 1], "pads": [1, 1, 1, 1],
            "dilations": [1, 1], "group": 32, "act": "none", "sum": 0}
    seen = {}
    for act in ("none",) + CONV_ACTS:
        f = Config("Conv", dict(base, act=act)).features()
        seen[tuple(sorted(f.items()))] = act
    assert len(seen) == 1 + len(CONV_ACTS)


def test_conv_flops_grouped_and_depthwise():
    base = {"x": [1, 32, 16, 16], "cout": 32, "kernel": [3, 3], "strides": [1, 1], "pads": [1, 1, 1, 1],
            "dilations": [1, 1], "group": 1, "act": "none", "sum": 0}
    dense = Config("Conv", base).flops()
    assert dense == 2 * 32 * 16 * 16 * 32 * 9
    assert Config("Conv", dict(base, group=32)).flops() == dense / 32
    assert Config("Conv", dict(base, strides=[2, 2])).flops() == dense / 4


def test_features_are_finite_numbers():
    from profilers.plans import plan

    for c in plan("quick"):
        f = c.features()
        assert all(isinstance(v, float) and math.isfinite(v) for v in f.values()), c.key


def test_onnx_ops_map_to_one_kind():
    assert kind_of_op("Gemm") == "MatMul"
    assert kind_of_op("Reshape") == "Free"
    assert kind_of_op("NoSuchOp") is None
    seen = {}
    for k in kinds().values():
        for op in k.onnx_ops:
            assert op not in seen, f"{op} in {seen.get(op)} and {k.name}"
            seen[op] = k.name


def test_public_api_imports_lazily_and_resolves():
    """`from latency import ...` works for every name in __all__ and loads nothing heavy on import."""
    import subprocess
    import sys

    code = ("import sys, latency; heavy = [m for m in ('onnxruntime', 'xgboost', 'onnx', 'pandas') if m in sys.modules]; "
            "assert not heavy, heavy; from latency import " + ", ".join(__import__("latency").__all__) +
            "; assert callable(host_target) and targets.__name__ == 'latency.targets'; print('ok')")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stderr[-500:]


def test_transposes_the_runtime_runs_element_by_element_are_a_feature():
    from latency.ops import moves_one_axis

    one = (([1, 2, 24, 16, 16], [0, 2, 1, 3, 4]), ([1, 16, 16, 24], [0, 3, 1, 2]), ([1, 24, 16, 16], [0, 2, 3, 1]),
           ([1, 128, 4, 64], [0, 2, 1, 3]), ([64, 32], [1, 0]), ([1, 4, 1, 5], [0, 3, 2, 1]), ([3, 4], [0, 1]))
    many = (([1, 16, 16, 2, 24], [0, 4, 3, 1, 2]), ([2, 3, 4, 5], [3, 2, 1, 0]), ([2, 3, 4, 5], [1, 3, 0, 2]))
    assert all(moves_one_axis(x, p) for x, p in one)
    assert not any(moves_one_axis(x, p) for x, p in many)
    f = Config("Transpose", {"x": [1, 16, 16, 2, 24], "perm": [0, 4, 3, 1, 2]}).features()
    assert f["eltwise_perm"] == 1.0
    assert Config("Transpose", {"x": [1, 2, 24, 16, 16], "perm": [0, 2, 1, 3, 4]}).features()["eltwise_perm"] == 0.0
