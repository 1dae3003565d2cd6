"""Targets as plugins: the registry, entry points, a target registered from a test, the import graph."""

import ast
import importlib.metadata
import os
import pathlib

import pytest
from click.testing import CliRunner

import latency.targets as T
from latency.cli import main
from latency.errors import LatencyError, UnknownTarget
from latency.targets.base import Target

ROOT = pathlib.Path(__file__).resolve().parent.parent

# a plugin's declaration: a CPU-less device that is never this host, with its own fusion passes
PLUGIN = Target("plugin-npu", "an accelerator declared by another package", "npu", "vendor-rt", "NPUProvider",
                "npu", 1, None, None, spec={"source": "vendor sheet"},
                fusion=lambda: __import__("latency.fusion", fromlist=["x"]).ORT_CPU_X86_RULES(8))


@pytest.fixture
def fresh_registry(monkeypatch):
    monkeypatch.setattr(T, "_TARGETS", {})
    monkeypatch.setattr(T, "_LOADED", False)
    yield


def test_builtin_targets_come_through_the_entry_point_group():
    eps = {ep.name: ep.value for ep in importlib.metadata.entry_points(group=T.ENTRY_POINT_GROUP)}
    assert eps.get("x86") == "latency.targets.x86:TARGETS" and eps.get("fake") == "latency.targets.fake:TARGETS"
    assert {"x86-avx2-ort", "x86-avx512-ort", "arm64-ort", "t4", "fake"} <= set(T.targets())


def test_a_target_from_another_package_registers_through_an_entry_point(fresh_registry, monkeypatch):
    ep = importlib.metadata.EntryPoint("npu", "tests.test_targets:PLUGIN", T.ENTRY_POINT_GROUP)
    real = importlib.metadata.entry_points
    monkeypatch.setattr(importlib.metadata, "entry_points",
                        lambda group=None: list(real(group=group)) + ([ep] if group == T.ENTRY_POINT_GROUP else []))
    t = T.get_target("plugin-npu")
    assert t == PLUGIN and not t.describes_host() and t.fusion_rules() is not None
    r = CliRunner().invoke(main, ["targets"])
    assert r.exit_code == 0 and "plugin-npu" in r.output and "derived from vendor sheet" in r.output


def test_a_broken_plugin_is_one_clear_error(fresh_registry, monkeypatch):
    ep = importlib.metadata.EntryPoint("bad", "no_such_module_xyz:TARGETS", T.ENTRY_POINT_GROUP)
    real = importlib.metadata.entry_points
    monkeypatch.setattr(importlib.metadata, "entry_points",
                        lambda group=None: list(real(group=group)) + ([ep] if group == T.ENTRY_POINT_GROUP else []))
    with pytest.raises(LatencyError, match="target plugin bad .* failed to load: ModuleNotFoundError"):
        T.targets()


def test_register_at_run_time_and_name_clashes(fresh_registry):
    mine = Target("test-cpu", "a test CPU", "cpu", "onnxruntime", "CPUExecutionProvider", "test", 1,
                  fusion=lambda: "passes", host_kind=lambda host: host.get("arch") == "test-arch")
    T.register(mine)
    assert T.get_target("test-cpu").fusion_rules() == "passes"
    assert mine.describes_host({"arch": "test-arch"}) and not mine.describes_host({"arch": "x86_64"})
    ok, why = mine.host_supported()
    assert not ok and "no measuring backend" in why
    with pytest.raises(LatencyError, match="already registered"):
        T.register(Target("test-cpu", "other", "cpu", "x", "y", "z"))
    T.unregister("test-cpu")
    with pytest.raises(UnknownTarget, match="valid targets: .*x86-avx512-ort"):
        T.get_target("test-cpu")


def _imports(path):
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.module


def test_the_library_does_not_import_the_measuring_side():
    """Nothing in latency/ imports profilers/ except the CLI (which wires the two together)."""
    offenders = []
    for path in (ROOT / "latency").rglob("*.py"):
        if path.name == "cli.py" and path.parent.name == "latency":
            continue
        if any(m == "profilers" or m.startswith("profilers.") for m in _imports(path)):
            offenders.append(str(path.relative_to(ROOT)))
    assert offenders == []


def test_no_isa_if_chains_outside_the_target_declarations():
    decl = {"x86.py", "arm.py", "gpu.py", "fake.py"}
    pattern = ("isa ==", "isa.startswith", '"avx512f" in', "'avx512f' in")
    found = []
    for path in (ROOT / "latency").rglob("*.py"):
        if path.parent.name == "targets" and path.name in decl:
            continue
        text = path.read_text()
        found += [f"{path.relative_to(ROOT)}: {p}" for p in pattern if p in text]
    assert found == [], found
    assert os.path.exists(ROOT / "latency" / "targets" / "base.py")
