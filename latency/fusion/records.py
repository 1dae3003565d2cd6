"""The records fusion hands out: :class:`Kernel` (one executed kernel) and :class:`Uncovered` (a node
no kernel prices, and why)."""

from __future__ import annotations

from dataclasses import dataclass, field

from .. import ops


@dataclass(frozen=True)
class Kernel:
    """One executed kernel: an op-kind config plus the original nodes it covers.

    Kernels the runtime inserts (NCHWc reorders, NHWC transposes) have ``nodes=()``. ``branch``: for a
    kernel inside an If whose condition is not constant, the ((If node, branch), ...) it runs under,
    outermost first; the estimate keeps the costlier branch of each such If.
    """

    name: str
    kind: str
    params: dict = field(hash=False, compare=False)
    precision: str = "fp32"
    sparsity: str = "0"
    nodes: tuple = ()
    op_types: tuple = ()
    branch: tuple = ()
    #: an iteration after the first of a Loop / Scan body: the same weights and buffers again, so no new
    #: working set (the cache gates read the working set: a loop of N iterations is not N models)
    repeat: bool = False

    @property
    def config(self) -> ops.Config:
        return ops.Config(self.kind, ops.canonical_params(self.kind, self.params), self.precision, self.sparsity)

    @property
    def key(self) -> str:
        return self.config.key


@dataclass(frozen=True)
class Uncovered:
    """A node no kernel prices, and why."""

    node: str
    op_type: str
    reason: str
