"""Property-based tests (hypothesis) of the ONNX front end and the table-key parser.

Front end: random small graphs of Conv/Relu/Add/MatMul/Reshape/... with random shapes, some of them
made invalid on purpose (zero strides, kernels larger than the input, zero dims, unknown ops and
domains, dangling inputs): loading raises nothing but the library's named errors, and every node of
a graph that loads ends up in exactly one kernel or in ``uncovered`` (after fusion and after pricing).

Keys: a config's key parses back to the same key; malformed keys raise a named error.

Runs are derandomized (the same examples every run, no example database in the tree), so a failure
here is a bug to fix, never luck.
"""

import json
import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper

from latency.errors import LatencyError
from latency.estimator import Estimator
from latency.fusion import fuse
from latency.graph import load_graph
from latency.ops import PRECISIONS, SPARSITIES, Config, config_problem, kinds
from latency.store import Store
from latency.targets import get_target
from profilers.plans import plan
from profilers.sweep import run_sweep

from models import small_cnn

FAKE = get_target("fake")
RULES = [FAKE.fusion_rules(), get_target("x86-avx512-ort").fusion_rules(), get_target("x86-avx2-ort").fusion_rules()]
PROPS = settings(derandomize=True, database=None, deadline=None, max_examples=200,
                 suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
#: the front-end properties are cheap (a few ms an example) and where bugs hide: more examples
MANY = settings(PROPS, max_examples=500)


# ---------------------------------------------------------------------------------------------
# random graphs


def _conv_out(n, k, s, d, p0, p1):
    return (n + p0 + p1 - d * (k - 1) - 1) // s + 1 if s > 0 else 0


@st.composite
def graphs(draw):
    """(ModelProto, valid: bool): a chain of random ops over a 4-D tensor, then maybe a flatten and a
    matmul head. ``valid`` is False when a deliberate fault was drawn."""
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    nodes, inits, valid = [], [], True
    n, c, h, w = draw(st.sampled_from([1, 2])), draw(st.sampled_from([1, 3, 4, 8])), \
        draw(st.integers(1, 12)), draw(st.integers(1, 12))
    if draw(st.integers(0, 30)) == 0:  # a declared zero dim
        h, valid = 0, False
    cur, shape = "x", [n, c, h, w]
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(shape))]
    seen = [(cur, list(shape))]
    k = 0

    def name(prefix):
        nonlocal k
        k += 1
        return f"{prefix}{k}"

    def init(shape_, prefix="w"):
        nm = name(prefix)
        inits.append(numpy_helper.from_array((rng.standard_normal(shape_) * 0.1).astype(np.float32), nm))
        return nm

    for _ in range(draw(st.integers(1, 6))):
        op = draw(st.sampled_from(["Conv", "Conv", "Relu", "Sigmoid", "Add", "Mul", "MaxPool", "AveragePool",
                                   "BatchNormalization", "Concat", "Transpose", "GlobalAveragePool", "Clip",
                                   "HardSigmoid", "Identity", "Fault"]))
        out = name("t")
        if op == "Conv":
            cout = draw(st.sampled_from([1, 4, 8, 16]))
            kk = draw(st.sampled_from([1, 3, 5]))
            s = draw(st.sampled_from([1, 1, 2, 0])) if draw(st.booleans()) else 1
            p = draw(st.integers(0, 2))
            group = shape[1] if draw(st.integers(0, 4)) == 0 else 1
            if group > 1:
                cout = shape[1]
            wt = init([cout, shape[1] // group, kk, kk])
            args = [cur, wt] + ([init([cout], "b")] if draw(st.booleans()) else [])
            nodes.append(helper.make_node("Conv", args, [out], name=name("conv"), kernel_shape=[kk, kk],
                                          strides=[s, s], pads=[p] * 4, group=group))
            oh, ow = _conv_out(shape[2], kk, s, 1, p, p), _conv_out(shape[3], kk, s, 1, p, p)
            if s == 0 or oh <= 0 or ow <= 0:
                valid = False
            shape = [shape[0], cout, oh, ow]
        elif op in ("Relu", "Sigmoid", "Identity"):
            nodes.append(helper.make_node(op, [cur], [out], name=name(op.lower())))
        elif op in ("Clip", "HardSigmoid"):
            nodes.append(helper.make_node(op, [cur], [out], name=name(op.lower())))
        elif op in ("Add", "Mul"):
            same = [t for t, s_ in seen if s_ == shape and t != cur]
            other = draw(st.sampled_from(same)) if same and draw(st.booleans()) else init([1, shape[1], 1, 1], "c")
            nodes.append(helper.make_node(op, [cur, other], [out], name=name(op.lower())))
        elif op in ("MaxPool", "AveragePool"):
            kk = draw(st.sampled_from([1, 2, 3]))
            nodes.append(helper.make_node(op, [cur], [out], name=name("pool"), kernel_shape=[kk, kk], strides=[kk, kk]))
            shape = [shape[0], shape[1], (shape[2] - kk) // kk + 1, (shape[3] - kk) // kk + 1]
            if shape[2] <= 0 or shape[3] <= 0:
                valid = False
        elif op == "BatchNormalization":
            ch = shape[1]
            var = numpy_helper.from_array(np.ones(ch, np.float32), name("var"))
            inits.append(var)
            args = [cur] + [init([ch], nm) for nm in ("g", "be", "mu")] + [var.name]
            nodes.append(helper.make_node(op, args, [out], name=name("bn")))
        elif op == "Concat":
            same = [t for t, s_ in seen if s_[0] == shape[0] and s_[2:] == shape[2:]]
            other = draw(st.sampled_from(same))
            oc = next(s_ for t, s_ in seen if t == other)[1]
            nodes.append(helper.make_node(op, [cur, other], [out], name=name("cat"), axis=1))
            shape = [shape[0], shape[1] + oc, shape[2], shape[3]]
        elif op == "Transpose":
            perm = draw(st.permutations([0, 1, 2, 3]))
            nodes.append(helper.make_node(op, [cur], [out], name=name("tp"), perm=list(perm)))
            shape = [shape[i] for i in perm]
        elif op == "GlobalAveragePool":
            nodes.append(helper.make_node(op, [cur], [out], name=name("gap")))
            shape = shape[:2] + [1, 1]
        else:  # a deliberate fault: an unknown op, an op of an unknown domain, or a dangling input
            kind = draw(st.sampled_from(["unknown_op", "unknown_domain", "dangling"]))
            if kind == "unknown_op":
                nodes.append(helper.make_node("Frobnicate", [cur], [out], name=name("frob")))
                shape = None
            elif kind == "unknown_domain":
                nodes.append(helper.make_node("Relu", [cur], [out], name=name("alien"), domain="com.nowhere"))
                shape = None
            else:
                nodes.append(helper.make_node("Add", [cur, "nobody_writes_this"], [out], name=name("dangle")))
            valid = False
        cur = out
        if shape is None or not valid:  # nothing sensible to build on a fault
            break
        seen.append((cur, list(shape)))
    if valid and draw(st.booleans()):  # a flatten + matmul (or gemm) head
        flat = name("f")
        how = draw(st.sampled_from(["Flatten", "Reshape"]))
        if how == "Flatten":
            nodes.append(helper.make_node("Flatten", [cur], [flat], name=name("flatten"), axis=1))
        else:
            sh = numpy_helper.from_array(np.array([shape[0], -1], np.int64), name("shape"))
            inits.append(sh)
            nodes.append(helper.make_node("Reshape", [cur, sh.name], [flat], name=name("reshape")))
        feat = max(1, shape[1] * shape[2] * shape[3])
        outn = draw(st.sampled_from([1, 10, 32]))
        y = name("y")
        if draw(st.booleans()):
            nodes.append(helper.make_node("Gemm", [flat, init([outn, feat]), init([outn], "b")], [y], name=name("gemm"),
                                          transB=1))
        else:
            nodes.append(helper.make_node("MatMul", [flat, init([feat, outn])], [y], name=name("matmul")))
        cur = name("sm")
        nodes.append(helper.make_node("Softmax", [y], [cur], name=name("softmax"), axis=-1))
    g = helper.make_graph(nodes, "random", inputs, [helper.make_tensor_value_info(cur, TensorProto.FLOAT, None)],
                          inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    return m, valid


def _accounted(graph, kernels, uncovered):
    """Every non-foldable node in exactly one kernel or in uncovered, nowhere twice."""
    in_kernels = [n for k in kernels for n in k.nodes]
    unc = [u.node for u in uncovered]
    names = {r.name for r in graph.ops if not r.foldable}
    assert len(in_kernels) == len(set(in_kernels)), "a node in two kernels"
    assert not set(in_kernels) & set(unc), f"priced and uncovered: {set(in_kernels) & set(unc)}"
    missing = names - set(in_kernels) - set(unc)
    assert not missing, f"nodes neither priced nor uncovered: {missing}"


@pytest.fixture(scope="module")
def estimator(tmp_path_factory):
    db = tmp_path_factory.mktemp("props") / "fake.db"
    with Store(db) as s:
        run_sweep(s, FAKE, plan("quick"))
    return Estimator(FAKE, profile=db, overhead=False, check_host=False).prepare()


@MANY
@given(graphs())
def test_front_end_on_random_graphs(estimator, case):
    m, valid = case
    try:
        g = load_graph(m.SerializeToString())
    except LatencyError as e:
        assert "\n" not in str(e)
        return
    for rules in RULES:
        kernels, uncovered = fuse(g, rules)
        _accounted(g, kernels, uncovered)
    est = estimator.estimate(g)
    _accounted(g, est.kernels, est.uncovered)
    assert math.isfinite(est.total_ms) and est.total_ms >= 0 and est.overhead_us >= 0
    assert sum(k.share for k in est.kernels) <= 1 + 1e-9
    assert all(k.latency_us >= 0 and math.isfinite(k.latency_us) for k in est.kernels)
    if not valid:
        return
    # a valid graph of known ops: everything is priced (the fake profile has every kind)
    assert not [u for u in est.uncovered if "no op kind" in u.reason], est.uncovered


@MANY
@given(st.data())
def test_front_end_on_mutated_bytes(estimator, data):
    """Bytes of a valid model with random bytes flipped, cut or inserted: a named error, or a graph
    whose nodes are all accounted for."""
    raw = bytearray(small_cnn().SerializeToString())
    for _ in range(data.draw(st.integers(1, 4))):
        what = data.draw(st.sampled_from(["flip", "cut", "insert", "zero"]))
        i = data.draw(st.integers(0, len(raw) - 1))
        if what == "flip":
            raw[i] ^= data.draw(st.integers(1, 255))
        elif what == "cut":
            del raw[i:]
            if not raw:
                break
        elif what == "insert":
            raw[i:i] = data.draw(st.binary(min_size=1, max_size=8))
        else:
            raw[i] = 0
    try:
        g = load_graph(bytes(raw))
    except LatencyError as e:
        assert "\n" not in str(e)
        return
    kernels, uncovered = fuse(g, RULES[0])
    _accounted(g, kernels, uncovered)
    try:
        est = estimator.estimate(g)
    except LatencyError as e:  # e.g. a mutated attribute no runtime accepts
        assert "\n" not in str(e)
        return
    _accounted(g, est.kernels, est.uncovered)


# ---------------------------------------------------------------------------------------------
# the table-key parser

_json_leaf = st.one_of(st.integers(-2**40, 2**40), st.text(max_size=12), st.booleans(),
                       st.floats(allow_nan=False, allow_infinity=False, width=64))
_json = st.recursive(_json_leaf, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                        st.dictionaries(st.text(max_size=6), inner, max_size=4)),
                     max_leaves=12)


@st.composite
def configs(draw):
    kind = draw(st.sampled_from(sorted(kinds())))
    fields = kinds()[kind].fields
    params = {f: draw(st.one_of(st.integers(0, 4096), st.lists(st.integers(0, 512), max_size=5),
                                st.sampled_from(["none", "Relu", "Add", "Conv", "x'\"ü"]), _json))
              for f in fields if draw(st.integers(0, 5))}
    params.update(draw(st.dictionaries(st.text(max_size=5).filter(lambda s: s not in fields), _json, max_size=2)))
    return Config(kind, params, draw(st.sampled_from(PRECISIONS)), draw(st.sampled_from(SPARSITIES)))


@PROPS
@given(configs())
def test_key_round_trip(c):
    key = c.key
    back = Config.from_key(key)
    assert back.key == key and back.hash == c.hash
    assert (back.kind, back.precision, back.sparsity) == (c.kind, c.precision, c.sparsity)
    assert Config.from_key(back.key).key == key
    why = config_problem(key)  # never raises: a reason or None
    assert why is None or (isinstance(why, str) and "\n" not in why)


@PROPS
@given(st.one_of(st.text(max_size=60), _json.map(json.dumps), st.none(), st.integers(), st.binary(max_size=30),
                 st.builds(lambda d: json.dumps(d), st.fixed_dictionaries(
                     {}, optional={"kind": _json, "params": _json, "precision": _json, "sparsity": _json,
                                   "extra": _json}))))
def test_malformed_keys_raise_a_named_error(key):
    try:
        c = Config.from_key(key)
    except LatencyError as e:
        assert "\n" not in str(e)
        return
    # it parsed: then it is a real key of a registered kind, and it round-trips
    assert c.kind in kinds() and c.precision in PRECISIONS and c.sparsity in SPARSITIES
    assert Config.from_key(c.key).key == c.key


def test_known_malformed_keys():
    good = Config("Conv", {"x": [1, 3, 8, 8]}).key
    d = json.loads(good)
    bad = ["", "{", "null", "[]", "42", json.dumps({**d, "kind": "Convolution"}), json.dumps({**d, "params": []}),
           json.dumps({**d, "precision": "fp64"}), json.dumps({**d, "sparsity": 50}), json.dumps({**d, "x": 1}),
           json.dumps({k: v for k, v in d.items() if k != "sparsity"}), good[:-1], b"\xff\xfe"]
    for k in bad:
        with pytest.raises(LatencyError):
            Config.from_key(k)
