"""A GPU profile's rows name the card they were measured on (name, compute capability, driver, clocks,
runtime and version): two cards of one target stay two devices in a profile database and in `latency db
merge`; one card in another state (current clock, power limit) stays one. Fake device records throughout."""

import pytest
from click.testing import CliRunner

import latency.targets.gpu as G
from latency.cli import main
from latency.ops import Config
from latency.profiles import read_profile
from latency.store import Store
from latency.targets import get_target

SXM = {"gpu_name": "NVIDIA H100 80GB HBM3", "compute_capability": "9.0", "driver_version": "550.54.15",
       "sm_clock_max_mhz": "1980", "mem_clock_max_mhz": "2619", "sm_clock_mhz": "1980", "memory_total_mib": "81559",
       "power_limit_w": "700.00"}
PCIE = {**SXM, "gpu_name": "NVIDIA H100 PCIe", "sm_clock_max_mhz": "1755", "mem_clock_max_mhz": "1593",
        "power_limit_w": "350.00"}
VERSIONS = {"onnxruntime_version": "1.20.1", "tensorrt_version": "10.3.0"}


def test_two_cards_of_one_target_have_two_fingerprints_one_card_in_two_states_one():
    t = get_target("h100")
    a, b = G.gpu_fingerprint(t, SXM, VERSIONS), G.gpu_fingerprint(t, PCIE, VERSIONS)
    assert a != b and a["gpu_name"] == "NVIDIA H100 80GB HBM3" and a["compute_capability"] == "9.0"
    assert a["runtime"] == "tensorrt" and a["runtime_version"] == "10.3.0" and a["onnxruntime_version"] == "1.20.1"
    assert "cpu_model" not in a
    idle = {**SXM, "sm_clock_mhz": "345", "power_limit_w": "500.00"}  # state, not identity
    assert G.gpu_fingerprint(t, idle, VERSIONS) == a
    assert G.gpu_fingerprint(t, {**SXM, "driver_version": "560.35.03"}, VERSIONS) != a  # another driver
    assert G.gpu_fingerprint(t, SXM, {**VERSIONS, "tensorrt_version": "8.6.1"}) != a  # another runtime version
    cuda = G.gpu_fingerprint(get_target("h100-ort-cuda"), SXM, VERSIONS)
    assert cuda["runtime"] == "onnxruntime" and cuda["runtime_version"] == "1.20.1"
    assert cuda["provider"] == "CUDAExecutionProvider" and cuda != a


def test_the_target_fingerprint_is_the_gpus(monkeypatch):
    monkeypatch.setattr(G, "read_gpu", lambda index=0: dict(SXM))
    monkeypatch.setattr(G, "runtime_versions", lambda runtime: dict(VERSIONS))
    assert get_target("h100").fingerprint() == G.gpu_fingerprint(get_target("h100"), SXM, VERSIONS)
    assert get_target("t4-ort-cuda").fingerprint()["gpu_name"] == SXM["gpu_name"]


def test_read_gpu_parses_nvidia_smi_and_leaves_out_what_it_cannot_say(monkeypatch):
    import shutil

    monkeypatch.setattr(shutil, "which", lambda name: "/usr/bin/nvidia-smi")

    def smi(fields, index):
        if fields == ("compute_cap",):
            return None  # a driver older than 510 has no compute_cap field
        vals = {"name": "Tesla T4", "driver_version": "470.82.01", "clocks.max.sm": "1590", "clocks.max.mem": "5001",
                "clocks.sm": "300", "memory.total": "15109", "power.limit": "[N/A]", "pci.bus_id": "00000000:00:1E.0"}
        return [vals[f] for f in fields]

    monkeypatch.setattr(G, "_smi", smi)
    rec = G.read_gpu()
    assert rec["gpu_name"] == "Tesla T4" and rec["sm_clock_max_mhz"] == "1590" and rec["driver_version"] == "470.82.01"
    assert "power_limit_w" not in rec and "compute_capability" not in rec


def test_no_gpu_is_one_line(monkeypatch):
    import shutil

    from latency.errors import LatencyError

    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(LatencyError, match="no NVIDIA GPU"):
        get_target("t4").fingerprint()


def _sweep(path, monkeypatch, card, lat=10.0):
    """A one-config sweep of h100 into ``path`` on the fake ``card`` (the backend's rows are fake too)."""
    import profilers.sweep as S

    monkeypatch.setattr(G, "read_gpu", lambda index=0: dict(card))
    monkeypatch.setattr(G, "runtime_versions", lambda runtime: dict(VERSIONS))
    monkeypatch.setattr(S, "measure", lambda target, configs, protocol=None: [
        {"latency_us": lat, "median_us": lat, "spread": 0.01, "n_rounds": 1, "n_runs": 50, "rounds_us": [lat],
         "canary_us": [], "unstable": 0, "remeasured": 0, "kernel_ops": ["MatMul"], "error": None,
         "extra": {"gpu": card}} for _ in configs])
    cfg = Config("MatMul", {"a": [64, 512], "b": [512, 512], "const_b": 1, "bias": 0, "scale": 0, "trans_b": 0,
                            "act": "none"}, "fp16")
    with Store(str(path)) as st:
        S.run_sweep(st, get_target("h100"), [cfg])


def test_db_merge_keeps_two_cards_of_one_target_apart(tmp_path, monkeypatch):
    a, b, c = tmp_path / "sxm.db", tmp_path / "pcie.db", tmp_path / "sxm-again.db"
    _sweep(a, monkeypatch, SXM, 10.0)
    _sweep(b, monkeypatch, PCIE, 14.0)
    _sweep(c, monkeypatch, {**SXM, "sm_clock_mhz": "1410"}, 10.5)
    (info,) = read_profile(a, "user")
    assert info.device["kind"] == "gpu" and info.device["gpu_name"] == SXM["gpu_name"]
    assert info.device["power_limit_w"] == "700.00" and info.device["tensorrt_version"] == "10.3.0"
    assert "compute capability 9.0" in info.device_name() and "driver 550.54.15" in info.device_name()
    with Store(str(a), readonly=True) as st:
        assert [t["gpu_name"] for t in st.targets()] == [SXM["gpu_name"]]

    r = CliRunner().invoke(main, ["db", "merge", "--db", str(a), str(b)])  # another card: refused, both named
    assert r.exit_code != 0 and "Traceback" not in r.output and len(r.output.strip().splitlines()) == 1
    assert "NVIDIA H100 PCIe" in r.output and "NVIDIA H100 80GB HBM3" in r.output
    r = CliRunner().invoke(main, ["db", "merge", "--db", str(a), str(c)])  # the same card: one device
    assert r.exit_code == 0 and "0 target(s) added" in r.output and "1 kept" in r.output, r.output
    r = CliRunner().invoke(main, ["db", "merge", "--db", str(a), "--keep-both", str(b)])
    assert r.exit_code == 0 and "h100@" in r.output, r.output
    with Store(str(a), readonly=True) as st:
        names = {t["name"]: t["gpu_name"] for t in st.targets()}
    assert names["h100"] == SXM["gpu_name"]
    (renamed,) = [n for n in names if n.startswith("h100@")]
    assert names[renamed] == PCIE["gpu_name"]
    assert {i.target: i.device["gpu_name"] for i in read_profile(a, "user")}[renamed] == PCIE["gpu_name"]


def test_a_sweep_on_another_card_into_the_same_database_is_refused(tmp_path, monkeypatch):
    from latency.errors import StoreError

    a = tmp_path / "h.db"
    _sweep(a, monkeypatch, SXM)
    with pytest.raises(StoreError, match="gpu_name"):
        _sweep(a, monkeypatch, PCIE)
