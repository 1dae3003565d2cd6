"""What a what-if plan can change in a model, and who owns each executed kernel.

* **Units** are what a choice names: a node ``quantize_static`` quantizes on its own account (Conv,
  ConvTranspose, Gemm, MatMul, Add, Mul, Concat, Softmax, the normalisations, a Gather of a weight
  table, ...) together with the nodes that only follow it (a Relu/Clip it makes removable, a
  Reshape, Transpose, MaxPool, ... after it: ``quantize_static`` quantizes those exactly when their
  input is quantized). Excluding a unit from int8 means passing its node to ``nodes_to_exclude``.
* **Owners** partition the executed kernels: each unit, each other node, each graph input, plus one
  global owner. A kernel belongs to the owner of the first original node it covers, or, when it
  covers none (a Q/DQ pair, a reorder or layout transpose the runtime inserts), to the owner that
  produces the tensor it sits on.
* **Keys**: what an owner's kernels can depend on: the precision bit of every unit adjacent to its
  tensors (its own, its producers', its consumers', the other readers of its inputs), the prune
  level of every channel group touching it, and the *layout state* of its neighbour owners (which
  of their tensors ran NCHWc-blocked or NHWC: the one effect that travels along a chain, e.g. a
  residual stream). An owner's own state is a function of its transfer key: its bits, its prune
  levels and its producers' states.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..graph import Graph
from .rewrite import (_FOLLOW_INPUT, _REMOVABLE, QDQ_OP_TYPES, WEIGHTED_OPS, ChannelGroup, _is_float, _is_init,
                      channel_group, dynamic_marks)


@dataclass
class Unit:
    """A choosable node and the nodes that follow its precision. ``families``: the reduced precisions it
    can take; ``group``: its channel group (prune), with ``group.reason`` saying why not."""

    name: str
    op: str
    members: tuple
    index: int
    weighted: bool = False
    families: tuple = ()
    group: ChannelGroup | None = None
    #: the nodes ``nodes_to_exclude`` must name to keep the unit fp32 (its head, a BatchNormalization
    #: folded into it in fp32)
    excludes: tuple = ()

    @property
    def prunable(self) -> bool:
        return self.group is not None and not self.group.reason


@dataclass
class Owner:
    name: str
    kind: str                      # "unit", "node", "input", "global"
    members: tuple = ()            # original node names
    tensors: tuple = ()            # tensors it produces (a graph input's owner: that input)
    inputs: tuple = ()             # tensors it reads that others produce
    consts: tuple = ()             # float constants it reads (a quantized reader puts a DQ on them)
    unit: int = -1                 # the unit whose weighted head it holds (sparsity), or -1
    bits: tuple = ()               # units whose precision bit its kernels depend on
    producers: tuple = ()          # owners producing its inputs
    consumers: tuple = ()          # owners reading its outputs
    prunes: tuple = ()             # units whose prune level touches it
    order: int = 0


@dataclass
class Structure:
    graph: Graph
    units: list
    owners: list
    unit_of_node: dict
    owner_of_node: dict
    owner_of_tensor: dict
    notes: list = field(default_factory=list)

    @property
    def unit_names(self) -> list:
        return [u.name for u in self.units]


_FOLLOWERS = set(_REMOVABLE) | set(_FOLLOW_INPUT) | {"Where"}


def _static_head(g: Graph, r) -> bool:
    if r.foldable or r.domain != "" or r.op_type not in QDQ_OP_TYPES or r.op_type in _FOLLOWERS:
        return False
    ins = [t.name for t in r.inputs if t.name]
    if r.op_type in ("Gather", "GatherElements"):
        return bool(ins) and _is_init(g, ins[0]) and _is_float(g, ins[0])
    return any(_is_float(g, t) and not _is_init(g, t) for t in ins)


def _float_const(g: Graph, t: str) -> bool:
    """A float constant a quantized reader marks: an initializer (it gets a DequantizeLinear) or the output
    of a folded node (a Gather of a constant table at constant indices: it gets a quantize pair)."""
    return _is_float(g, t) and (_is_init(g, t) or g.tensor(t).const and g.producer(t) is not None)


def analyse(g: Graph, merge=None) -> Structure:
    """Units, owners and keys of ``g`` (see the module docstring). ``merge``: sets of node names that
    share a kernel somewhere (from fusions of the model): each set's owners become one."""
    order = {r.name: i for i, r in enumerate(g.ops)}
    dyn = set(dynamic_marks(g, lambda n: True))
    units: list = []
    unit_of: dict = {}
    for r in g.ops:
        static = _static_head(g, r)
        if not static and r.name not in dyn:
            continue
        if r.op_type in ("BatchNormalization", "InstanceNormalization") and r.inputs:
            # a norm right after a weighted node folds into it in fp32: one choice for both
            p = g.producer(r.inputs[0].name)
            if p is not None and p.name in unit_of and units[unit_of[p.name]].weighted and \
                    len(g.consumers.get(r.inputs[0].name, ())) == 1 and units[unit_of[p.name]].name == p.name:
                u = units[unit_of[p.name]]
                u.members += (r.name,)
                u.excludes += (r.name,)
                unit_of[r.name] = u.index
                continue
        fams = tuple(f for f, ok in (("int8", static), ("int8-dynamic", r.name in dyn)) if ok)
        weighted = r.op_type in WEIGHTED_OPS and len(r.inputs) > 1 and _is_init(g, r.inputs[1].name)
        u = Unit(r.name, r.op_type, (r.name,), len(units), weighted, fams,
                 channel_group(g, r.name) if weighted else None, (r.name,))
        unit_of[r.name] = u.index
        units.append(u)
    # followers: the data-movement ops and removable activations whose input a unit produces
    for r in g.ops:
        if r.foldable or r.op_type not in _FOLLOWERS or r.name in unit_of:
            continue
        i = 1 if r.op_type == "Where" else 0
        if len(r.inputs) <= i:
            continue
        p = g.producer(r.inputs[i].name)
        if p is not None and p.name in unit_of:
            k = unit_of[p.name]
            unit_of[r.name] = k
            units[k].members = units[k].members + (r.name,)
    live = [r for r in g.ops if not r.foldable]
    split = _cyclic_units(g, units, unit_of)
    # base groups: a unit's nodes, or one node; then groups that share a kernel somewhere are merged
    # (one owner per fusion cluster, so that a kernel that moves between them stays with one owner)
    base: dict = {}
    for r in live:
        k = unit_of.get(r.name)
        base[r.name] = ("u", k) if k is not None and k not in split else ("n", r.name)
    merge = [set(m) for m in (merge or ())]
    while True:
        groups, why = _merged_groups(g, live, base, merge, units, unit_of, order)
        if why is None:
            break
        merge = [m for m in merge if not (m & why)]  # a merge that makes a cycle: keep those apart
    owners: list = []
    owner_of_node: dict = {}

    def add_owner(o):
        o.order = len(owners)
        owners.append(o)
        for n in o.members:
            owner_of_node[n] = o.order
        return o

    for t in g.inputs:
        add_owner(Owner(f"input:{t.name}", "input", (), (t.name,)))
    for members in groups:
        ks = sorted({unit_of[n] for n in members if n in unit_of})
        weighted = [k for k in ks if units[k].weighted and units[k].name in members]
        w = weighted[0] if weighted else -1
        if len(ks) == 1 and set(members) == set(units[ks[0]].members):
            add_owner(Owner(units[ks[0]].name, "unit", members, (), w))
        else:
            add_owner(Owner(members[0] if len(members) == 1 else f"{members[0]}+{len(members) - 1}",
                            "node" if len(members) == 1 else "cluster", members, (), w))
    # initializers several nodes read: the quantizer gives each one DequantizeLinear, copied per reader
    readers: dict = {}
    for r in live:
        for t in r.inputs:
            if t.name and _float_const(g, t.name):
                readers.setdefault(t.name, []).append(r.name)
    shared = sorted(t for t, rs in readers.items() if len(set(rs)) > 1)
    for t in shared:
        add_owner(Owner(f"const:{t}", "const", (), (t,)))
    add_owner(Owner("global", "global"))
    owner_of_tensor: dict = {t.name: i for i, t in enumerate(g.inputs)}
    for o in owners:
        if o.kind == "const":
            owner_of_tensor[o.tensors[0]] = o.order
    for t, rs in readers.items():
        if t not in owner_of_tensor and rs[0] in owner_of_node:
            owner_of_tensor[t] = owner_of_node[rs[0]]
    for o in owners:
        if o.kind in ("unit", "node", "cluster"):
            outs = []
            for n in o.members:
                for t in g.ops[order[n]].outputs:
                    if t.name:
                        outs.append(t.name)
                        owner_of_tensor[t.name] = o.order
            o.tensors = tuple(outs)
    # adjacency
    for o in owners:
        if o.kind == "global":
            continue
        if o.kind == "const":
            us = {unit_of[n] for n in readers[o.tensors[0]] if n in unit_of}
            o.bits = tuple(sorted(us))
            o.consumers = tuple(sorted({owner_of_node[n] for n in readers[o.tensors[0]] if n in owner_of_node}))
            continue
        mine = set(o.tensors)
        ins, outs, consts = set(), set(), set()
        for n in o.members:
            r = g.ops[order[n]]
            for t in r.inputs:
                if t.name and not g.tensor(t.name).const and t.name not in mine:
                    ins.add(t.name)
                elif t.name and _float_const(g, t.name):
                    consts.add(t.name)
        o.consts = tuple(sorted(consts))
        for t in o.tensors:
            for c in g.consumer_ops(t):
                if owner_of_node.get(c.name, -1) != o.order and not c.foldable:
                    outs.add(t)
        bits, prods, cons = set(), set(), set()
        for n in o.members:
            if n in unit_of:
                bits.add(unit_of[n])
        for t in ins:
            p = g.producer(t)
            if p is not None and p.name in unit_of:
                bits.add(unit_of[p.name])
            if t in owner_of_tensor:
                prods.add(owner_of_tensor[t])
            for c in g.consumer_ops(t):
                if c.name in unit_of:
                    bits.add(unit_of[c.name])
        for t in list(outs) + [t for t in o.tensors if o.kind == "input"]:
            for c in g.consumer_ops(t):
                if c.name in unit_of:
                    bits.add(unit_of[c.name])
                if c.name in owner_of_node and owner_of_node[c.name] != o.order:
                    cons.add(owner_of_node[c.name])
        o.bits = tuple(sorted(bits))
        o.inputs = tuple(sorted(ins))
        o.producers = tuple(sorted(prods - {o.order}))
        o.consumers = tuple(sorted(cons - {o.order}))
    # prune: every owner a channel group touches
    touched: dict = {}
    for u in units:
        if not u.prunable:
            continue
        nodes = set()
        for t, _ in u.group.tensors:
            p = g.producer(t)
            if p is not None:
                nodes.add(p.name)
            nodes.update(c.name for c in g.consumer_ops(t))
        nodes.update(n for (n, _), _ in u.group.weights)
        for n in nodes:
            if n in owner_of_node:
                touched.setdefault(owner_of_node[n], set()).add(u.index)
    for o in owners:
        o.prunes = tuple(sorted(touched.get(o.order, ())))
    _check_acyclic(owners)
    return Structure(g, units, owners, unit_of, owner_of_node, owner_of_tensor)


def _merged_groups(g, live, base, merge, units, unit_of, order):
    """(node groups in an owner order where producers come first, None), or (None, nodes of a cycle)
    when merging makes the owner graph cyclic."""
    parent = {k: k for k in set(base.values())}

    def find(a):
        while parent[a] != a:
            parent[a] = parent[parent[a]]
            a = parent[a]
        return a

    for m in merge:
        ks = sorted({find(base[n]) for n in m if n in base}, key=str)
        for k in ks[1:]:
            parent[find(k)] = find(ks[0])
    members: dict = {}
    for r in live:
        members.setdefault(find(base[r.name]), []).append(r.name)
    gid = {n: k for k, ns in members.items() for n in ns}
    deps = {k: set() for k in members}
    for r in live:
        for t in r.inputs:
            p = g.producer(t.name) if t.name else None
            if p is not None and p.name in gid and gid[p.name] != gid[r.name]:
                deps[gid[r.name]].add(gid[p.name])
    # Kahn, earliest first member first
    first = {k: min(order[n] for n in ns) for k, ns in members.items()}
    indeg = {k: len(v) for k, v in deps.items()}
    users: dict = {}
    for k, v in deps.items():
        for p in v:
            users.setdefault(p, []).append(k)
    import heapq

    ready = [(first[k], str(k), k) for k, d in indeg.items() if d == 0]
    heapq.heapify(ready)
    out = []
    while ready:
        _, _, k = heapq.heappop(ready)
        out.append(tuple(sorted(members[k], key=order.get)))
        for u in users.get(k, ()):
            indeg[u] -= 1
            if indeg[u] == 0:
                heapq.heappush(ready, (first[u], str(u), u))
    if len(out) < len(members):
        stuck = {n for k, d in indeg.items() if d > 0 for n in members[k]}
        return None, stuck
    return out, None


def _cyclic_units(g: Graph, units, unit_of) -> set:
    """Units whose followers read a tensor produced downstream of the unit's head (a Where's other
    branch): their nodes become owners of their own (the unit's bit still binds them)."""
    order = {r.name: i for i, r in enumerate(g.ops)}
    bad = set()
    for u in units:
        head = order[u.name]
        members = set(u.members)
        for n in u.members[1:]:
            r = g.ops[order[n]]
            for t in r.inputs:
                p = g.producer(t.name) if t.name else None
                if p is not None and p.name not in members and order[p.name] > head and not p.foldable:
                    bad.add(u.index)
    return bad


def _check_acyclic(owners) -> None:
    """Owners are processed in index order: every producer must come first."""
    for o in owners:
        for p in o.producers:
            if p >= o.order:
                raise AssertionError(f"what-if owners out of order: {owners[p].name} feeds {o.name}")
