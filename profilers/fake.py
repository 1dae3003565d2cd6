"""A formula-priced stand-in backend: deterministic "measurements" for tests, no device needed."""

from __future__ import annotations

import math
import os
import time

from latency.ops import Config


def fake_latency_us(cfg: Config) -> float:
    """Roofline-ish closed form with a per-kind constant; not a measurement of anything."""
    f = cfg.features()
    speed = {"fp32": 1.0, "fp16": 1.0, "int8": 2.5, "int8_dynamic": 1.8}[cfg.precision]
    return 2.0 + f["flops"] / (20e3 * speed) + f["bytes"] / 8e3 + 0.3 * (len(cfg.kind) % 5)


def measure_chunk(configs: list[Config], protocol=None) -> list[dict]:
    rows = []
    # test hook: slow the stand-in down so a test can kill a sweep in the middle of it
    time.sleep(float(os.environ.get("LATENCY_FAKE_DELAY_S", "0")))
    for c in configs:
        if c.params.get("fail"):
            rows.append({"latency_us": None, "error": "fake failure", "n_rounds": 0, "n_runs": 0})
            continue
        base = fake_latency_us(c)
        # a deterministic wobble per round so statistics have something to chew on
        rounds = [base * (1 + 0.01 * ((int(c.hash[:4], 16) + r) % 5)) for r in range(4)]
        rows.append({"latency_us": min(rounds), "median_us": sorted(rounds)[2], "spread": 0.01,
                     "n_rounds": 4, "n_runs": 20, "rounds_us": rounds, "canary_us": [100.0] * 4,
                     "unstable": 0, "remeasured": 0, "error": None, "extra": {"formula": "fake"}})
        assert math.isfinite(base)
    return rows
