"""The fake target: kernels priced by a closed formula, so sweep -> store -> train -> estimate runs
in tests in a second. It uses the x86 fusion passes (NCHWc block 8) and measures on any host."""

from __future__ import annotations

from .base import Target


def _passes():
    from .. import fusion

    return fusion.ORT_CPU_X86_RULES(8)


TARGETS = (
    Target("fake", "formula-priced stand-in for tests (no device)", "fake", "formula", "fake", "fake", 1, None,
           "fake", fusion=_passes),
)
