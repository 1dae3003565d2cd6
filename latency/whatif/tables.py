"""The what-if plan's learned tables: probes (whole rewritten models, fused and priced as an estimate
prices them), attribution of every kernel to an owner, and the vectorised evaluation.

One **probe** is one candidate priced exactly: the fp32 graph rewritten as the tool would
(:mod:`.rewrite`), the target's fusion passes run over it, every kernel priced by the estimator
(with one price per sparsity level for each weighted kernel). Its kernels are split among owners
(:mod:`.structure`; a kernel with a weighted node belongs to that node's owner); each owner's share is
stored under the owner's *key* in that probe: the precision bits, prune levels and quantize pairs
near it and the layout states of its neighbours. The plan probes the plain model, each whole-model
variant, one-factor-at-a-time groups (units no owner sees together flipped at once, from the plain
and from the whole-model variant, and pruned at each level) and a few random mixes.

Evaluating a candidate is then arithmetic: compute every owner's layout state from its transfer key
(in topological order), look every owner's cost key up, sum the coefficients, and apply the in-model
context and overhead exactly as :meth:`latency.Estimator.estimate` does. A key seen in a probe
gives that probe's kernels exactly; a key never seen gives the kernels of the most similar
situation seen (agreeing on the longest run of digits, nearest first), so an owner is always priced
as a whole, as some real fusion priced it, and :meth:`Tables.sums` says which candidates were exact.
A key seen at two prices is counted in ``inconsistencies`` (the locality the tables assume did not
hold); a kernel that spans owners makes the plan regroup them and replay its probes.

Coefficients per kernel (us, or MB): ``iso`` (time alone), ``curve`` (in-model curve term, times
the private-cache gate), ``fetch`` (weight fetch, times the last-level gate), ``ov0`` / ``ov1``
(the overhead model's per-kernel terms, the second times the last-level gate), ``fp`` (working-set
MB, which sets both gates), ``wmb`` (weight MB, reported).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, replace
from functools import lru_cache

import numpy as np

from ..context import cache_gate
from ..estimator import KernelEstimate, footprint_term_mb, overhead_us, weight_mb
from ..ops import Config, config_problem

COEFS = ("iso", "curve", "fetch", "ov0", "ov1", "fp", "wmb")
#: sparsity digits: 0 is the weight as the model holds it
SPARSITY_LEVELS = ("model", "50", "75", "90", "95", "2:4")
PRUNE_LEVELS = (0.0, 0.25, 0.5)
_SIGMA_RADIX = 64
_NROWS = 6  # sparsity rows of a weighted unit's entries: len(SPARSITY_LEVELS)
_INSERTED = re.compile(r"^(?:ReorderInput|ReorderOutput|Cast|QuantizeLinear|DequantizeLinear)\((.*)\)$|^Transpose\((.*),(?:NHWC|NCHW)\)$")


@dataclass(frozen=True)
class PricedKernel:
    """One kernel of a probe with its isolated price: ``kernel`` (fusion's record), ``nodes`` (the
    original nodes it covers), ``iso_us``, ``source``, ``detail``, ``key``."""

    kernel: object
    nodes: tuple
    iso_us: float | None
    source: str
    detail: str
    key: str


class Tables:
    """Learned tables of one precision family over a :class:`~latency.whatif.structure.Structure`.

    State of a candidate, per column: the precision bit of each unit, its prune digit, whether each
    tensor (or constant) carries a quantize pair (``q``: the OR of the bits of the units whose
    quantization marks it, found by the tool's own marking rules), each owner's layout state
    (``sigma``, learned), each unit's sparsity digit, and whether any unit runs reduced (the tool's
    pre-processing then rewrote the whole model: every key reads it, last). An owner's transfer key
    (what decides its layout state): its own bits, its tensors' ``q``, its prune digits, its producers' states. Its cost
    key adds its consumers' bits and ``q`` (whether they absorb its DQ) and the states of itself and
    its consumers two deep (a fold into a conv reaches past a norm). Keys list the digits nearest
    first (prune digits: a pruned kernel is a different shape; own bits, own ``q``, consumers, layout
    states).

    A full key seen in a probe gives that probe's kernels exactly. A key never seen takes the
    kernels of the *most similar situation seen*: the one agreeing on the longest run of digits in
    that order (a trie walk that follows the candidate's digit while it can, else the most observed
    branch). So an owner is always priced as a whole, as some real fusion of the model priced it,
    and a candidate is exact when every owner's key was seen (``exact`` in :meth:`sums`).
    """

    def __init__(self, plan, family: str):
        self.plan = plan
        self.family = family
        st = plan.structure
        self.n_units = len(st.units)
        self.n_owners = len(st.owners)
        self._build_specs()
        self.sigma_ids = [dict() for _ in st.owners]
        self.obs_t = [dict() for _ in st.owners]   # transfer key -> layout state id
        self.obs_c = [dict() for _ in st.owners]   # cost key -> entry id
        self.ambiguous_c = [set() for _ in st.owners]  # cost keys seen at two prices (not exact for anyone)
        self.entries = [[] for _ in st.owners]     # per owner: _OwnerEntry per distinct price
        self._entry_index = [dict() for _ in st.owners]
        self.cands: dict = {}                      # probed candidates (bits, prune) -> their exact kernels
        self._cand_hashes = np.zeros(0)
        self._arrays = None
        self.probes = 0
        self.warmed = False
        self.inconsistencies: list = []

    # -- keys ----------------------------------------------------------------------------------
    def _build_specs(self):
        """Per owner: columns of the state (bits | prune | q | sigma | sparsity) its keys read, nearest
        first, with their radices."""
        st = self.plan.structure
        U, O = self.n_units, self.n_owners
        tensors = []
        for o in st.owners:
            tensors.extend(o.inputs)
            tensors.extend(o.tensors)
        from .rewrite import quant_pre_processed

        g = self.plan.graph
        self.q_tensors = [t for t in dict.fromkeys(tensors) if not g.tensor(t).const]
        # float initializers: a quantized reader gives them a DequantizeLinear that every reader then reads
        self.q_tensors += sorted({c for o in st.owners for c in o.consts})
        self.q_index = {t: i for i, t in enumerate(self.q_tensors)}
        T = len(self.q_tensors)
        marks = self.plan.marking_units(self.family)
        self.q_mat = np.zeros((U, T))
        for t, units in marks.items():
            if t in self.q_index:
                for u in units:
                    self.q_mat[u, self.q_index[t]] = 1.0
        self.q_units = [tuple(sorted(int(u) for u in np.flatnonzero(self.q_mat[:, i]))) for i in range(T)]
        self.Q0, self.S0, self.P0 = 2 * U, 2 * U + T, 2 * U + T + O
        # the last column: whether any unit runs reduced (then the tool's pre-processing ran on the model)
        self.A = 3 * U + T + O
        self.width = self.A + 1
        own_bits = [sorted({st.unit_of_node[n] for n in o.members if n in st.unit_of_node}) for o in st.owners]
        for o in st.owners:
            if o.kind == "const":
                own_bits[o.order] = list(o.bits)

        def qcols(o):
            return [self.Q0 + self.q_index[t] for t in list(o.inputs) + list(o.tensors) + list(o.consts)
                    if t in self.q_index]

        def ccols(o):  # a shared constant's DQ decides whether a pattern (LayerNorm's eps) still matches
            return [self.Q0 + self.q_index[t] for t in o.consts if t in self.q_index]

        pp = quant_pre_processed(g) if self.family == "int8" else None
        pre, pre_origin = (pp.graph, pp.node_origin) if pp is not None else (g, {})

        def producer_bits(o):
            # the precision of the units writing the owner's inputs: whether a tensor's quantize pair comes
            # from its producer (and so also sits before a Reshape quant_pre_process put in front of a Gemm)
            # or only from its readers, which the tensor's q alone does not tell
            out = []
            for t in o.inputs:
                p = pre.producer(t) if t in pre.producers else g.producer(t)
                if p is not None and pre_origin.get(p.name, p.name) in st.unit_of_node:
                    out.append(st.unit_of_node[pre_origin.get(p.name, p.name)])
                # the other units reading it (a few, not a hub): equal nodes on one input are merged by the
                # runtime (the input Reshapes of the Q, K and V projections) only while all stay float
                rs = [st.unit_of_node[c.name] for c in g.consumer_ops(t) if c.name in st.unit_of_node]
                if len(rs) <= 4:
                    out += rs
            return out

        self.t_cols, self.c_cols, self.t_rad, self.c_rad = [], [], [], []
        for o in st.owners:
            spec = [(U + u, len(PRUNE_LEVELS), 0) for u in o.prunes] + [(c, 2, 0) for c in ccols(o)] + \
                [(c, 2, 1) for c in own_bits[o.order]] + \
                [(c, 2, 2) for c in qcols(o)] + [(u, 2, 2) for u in producer_bits(o)] + \
                [(self.S0 + p, _SIGMA_RADIX, 4) for p in o.producers] + [(self.A, 2, 5)]
            t = _spec(spec)
            self.t_cols.append(np.array([c for c, _, _ in t], np.int64))
            self.t_rad.append([r for _, r, _ in t])
            cons = set(o.consumers)
            for c in o.consumers:
                cons.update(st.owners[c].consumers)
            cons.discard(o.order)
            # a consumer absorbs a DQ when it forms a QDQ unit: its own bits and its tensors' q decide
            spec += [(b, 2, 3) for k in o.consumers for b in own_bits[k]]
            spec += [(c, 2, 2) for k in o.consumers for c in qcols(st.owners[k])]
            spec += [(self.S0 + c, _SIGMA_RADIX, 4) for c in [o.order] + sorted(cons)]
            c = _spec(spec)
            self.c_cols.append(np.array([x for x, _, _ in c], np.int64))
            self.c_rad.append([r for _, r, _ in c])

    def _base_state(self, bits: np.ndarray, prune: np.ndarray, sparsity=None) -> np.ndarray:
        n = bits.shape[0]
        U = self.n_units
        state = np.zeros((n, self.width), np.int64)
        state[:, :U] = bits
        state[:, U: 2 * U] = prune
        state[:, self.Q0: self.S0] = (np.asarray(bits, float) @ self.q_mat) > 0
        state[:, self.A] = np.asarray(bits).any(axis=1)
        if sparsity is not None:
            state[:, self.P0: self.P0 + U] = sparsity
        return state

    # -- probes --------------------------------------------------------------------------------
    def probe(self, bits: np.ndarray, prune: np.ndarray) -> None:
        """Price one candidate exactly (whole rewritten model) and learn every owner's share."""
        self.probe_many([(bits, prune)])

    def probe_many(self, specs) -> None:
        """:meth:`probe` of every (bits, prune) in ``specs``, in that order, their kernels priced in one batch."""
        for data in run_probes(self.plan, self.family, specs):
            self.plan.log_probe(self.family, data)
            self.learn(data)

    def learn(self, data) -> None:
        """Learn from one probe's record (see :func:`run_probes`); the plan replays its records when it
        regroups its owners."""
        plan = self.plan
        st = plan.structure
        bits, prune = data["bits"], data["prune"]
        self.probes += 1
        self._cand_hashes = np.append(self._cand_hashes, _cand_hash(np.asarray(bits)[None, :],
                                                                    np.asarray(prune)[None, :]))
        self.cands[_cand_key(bits, prune)] = _OwnerEntry.of(
            [pr for _, _, _, pr in data["kernels"]],
            [(n or t, op, why) for n, t, op, why in data["uncovered"]])
        order = plan.node_order
        owned = [[] for _ in st.owners]
        unc = [[] for _ in st.owners]
        for k, names, tensors, priced in data["kernels"]:
            if names:
                main = [n for n in names if plan.op_of.get(n) not in ("Identity", "Dropout")] or list(names)
                # a kernel with a weighted node belongs to it (whatever folds into it); the other nodes
                # such kernels cover, and kernels without one, make their owners one (see Plan._regroup)
                heads = [n for n in main if n in plan._weighted_heads]
                rest = [n for n in main if n not in plan._weighted_heads]
                if len({st.owner_of_node.get(n) for n in rest} - {None}) > 1:
                    plan.merge_later(set(rest))
                pick = heads or main
                o = st.owner_of_node.get(min(pick, key=lambda n: order.get(n, 1 << 30)), self.n_owners - 1)
            else:
                o = next((st.owner_of_tensor[t] for t in tensors if t in st.owner_of_tensor), self.n_owners - 1)
            owned[o].append(priced)
        for node, tensor, op, why in data["uncovered"]:
            o = st.owner_of_node.get(node, self.n_owners - 1) if node else \
                st.owner_of_tensor.get(tensor, self.n_owners - 1)
            unc[o].append((node or tensor, op, why))
        row = self._base_state(np.asarray(bits)[None, :], np.asarray(prune)[None, :])[0]
        seen_q = data["quantized"]
        for t, i in self.q_index.items():
            if bool(row[self.Q0 + i]) != (t in seen_q):
                self.inconsistencies.append((t, "quantize pair", int(row[self.Q0 + i]), int(t in seen_q)))
        marks = data["layout"]
        for o in st.owners:
            sig = tuple(marks.get(t, ()) for t in o.tensors)
            ids = self.sigma_ids[o.order]
            s_ = ids.setdefault(sig, len(ids))
            if s_ >= _SIGMA_RADIX:
                raise OverflowError(f"owner {o.name} has more than {_SIGMA_RADIX} layout states")
            row[self.S0 + o.order] = s_
        for o in st.owners:
            i = o.order
            tkey = tuple(int(x) for x in row[self.t_cols[i]])
            s_ = int(row[self.S0 + i])
            old = self.obs_t[i].setdefault(tkey, s_)
            if old != s_:
                self.inconsistencies.append((o.name, "layout state"))
            ckey = tuple(int(x) for x in row[self.c_cols[i]])
            e = self._entry_id(i, _OwnerEntry.of(owned[i], unc[i]))
            old = self.obs_c[i].setdefault(ckey, e)
            if old != e:
                self.inconsistencies.append((o.name, "price", self.entries[i][old].total(), self.entries[i][e].total()))
                self.ambiguous_c[i].add(ckey)
        self._arrays = None

    def _entry_id(self, o: int, entry) -> int:
        h = entry.signature()
        k = self._entry_index[o].get(h)
        if k is None:
            self.entries[o].append(entry)
            k = self._entry_index[o][h] = len(self.entries[o]) - 1
        return k

    # -- evaluation ----------------------------------------------------------------------------
    def _compile(self):
        """Per owner: the tries of its transfer and cost tables, and its entries' coefficients."""
        if self._arrays is not None:
            return self._arrays
        st = self.plan.structure
        trans, costs = [], []
        for o in st.owners:
            i = o.order
            trans.append(_Trie(self.obs_t[i], self.t_cols[i], self.t_rad[i]))
            units = sorted({u for e in self.entries[i] for u, _, _ in e.var})
            fixed = np.array([e.fixed for e in self.entries[i]]) if self.entries[i] else np.zeros((0, len(COEFS)))
            var = []
            for u in units:
                arr = np.zeros((len(self.entries[i]), _NROWS, len(COEFS)))
                for k, e in enumerate(self.entries[i]):
                    for uu, pc, _ in e.var:
                        if uu == u:
                            arr[k, :len(pc)] = pc
                            arr[k, len(pc):] = pc[-1]
                var.append((u, arr))
            costs.append((_Trie(self.obs_c[i], self.c_cols[i], self.c_rad[i], self.ambiguous_c[i]), fixed, var))
        self._arrays = (trans, costs)
        return self._arrays

    def sums(self, bits: np.ndarray, prune: np.ndarray, sparsity: np.ndarray, want_state: bool = True,
             chunk: int = 8192, want_exact: bool = True):
        """(N x COEFS sums, exact mask, state rows or None) for candidates given as unit matrices (bits,
        prune digits, sparsity digits): per chunk, one layout sweep over the owners, then each owner's
        entry. ``exact``: every owner's situation was seen as such (or the candidate itself was
        probed); the others are priced from the most similar situations seen."""
        trans, costs = self._compile()
        st = self.plan.structure
        n = bits.shape[0]
        U = self.n_units
        acc = np.zeros((n, len(COEFS)))
        exact = np.ones(n, bool)
        state = np.zeros((n, self.width), np.int64) if want_state else None
        marks = self.q_units
        for a in range(0, n, chunk):
            b = min(n, a + chunk)
            S = np.zeros((self.width, b - a), np.int32)
            S[:U] = bits[a:b].T
            S[U:2 * U] = prune[a:b].T
            S[self.P0: self.P0 + U] = sparsity[a:b].T
            S[self.A] = bits[a:b].any(axis=1)
            for i, us in enumerate(marks):
                if len(us) == 1:
                    S[self.Q0 + i] = S[us[0]]
                elif us:
                    S[self.Q0 + i] = S[list(us)].max(axis=0)
            ex = np.ones(b - a, bool)
            for o in st.owners:
                v, e = trans[o.order].walk(S, want_exact)
                S[self.S0 + o.order] = v
                if want_exact:
                    ex &= e
            ac = acc[a:b]
            for o in st.owners:
                trie, fixed, var = costs[o.order]
                if not len(fixed):
                    continue
                v, e = trie.walk(S, want_exact)
                if want_exact:
                    ex &= e
                ac += fixed[v]
                for u, arr in var:
                    ac += arr[v, S[self.P0 + u]]
            exact[a:b] = ex
            if want_state:
                state[a:b] = S.T
        if not want_exact:
            exact[:] = False
        if self.cands:  # candidates probed whole: their own kernels, exactly
            h = _cand_hash(bits, prune)
            # (even where every key was seen: a key seen at two prices is not exact for all who share it)
            for r in np.flatnonzero(np.isin(h, self._cand_hashes)):
                c = self.cands.get(_cand_key(bits[r], prune[r]))
                if c is not None:
                    acc[r] = c.coef(sparsity[r])
                    exact[r] = True
        return acc, exact, state

    def kernels_of(self, state_row: np.ndarray, bits=None, prune=None, sparsity=None):
        """([(owner index or None, priced kernel)], uncovered) of one candidate: its own probe when it was
        probed, else each owner's entry (what :meth:`sums` adds up)."""
        if bits is not None:
            c = self.cands.get(_cand_key(bits, prune))
            if c is not None:
                return [(None, pk) for pk in c.kernels(sparsity)], list(c.uncovered)
        trans, costs = self._compile()
        out, unc = [], []
        S = state_row.astype(np.int32)[:, None]
        for o in self.plan.structure.owners:
            trie, fixed, var = costs[o.order]
            if not len(fixed):
                continue
            v, _ = trie.walk(S)
            e = self.entries[o.order][int(v[0])]
            out += [(o.order, pk) for pk in e.kernels(state_row[self.P0: self.P0 + self.n_units])]
            unc += list(e.uncovered)
        return out, unc


class _OwnerEntry:
    """An owner's kernels in one situation: ``fixed`` (their coefficients but for the weighted kernels'),
    ``var`` [(unit, coefficient rows per sparsity digit, priced kernel per row)], ``plain`` (priced
    kernels), ``uncovered``."""

    __slots__ = ("fixed", "var", "plain", "uncovered")

    @classmethod
    def of(cls, priced, uncovered):
        e = cls()
        e.fixed, e.var, e.plain, e.uncovered = np.zeros(len(COEFS)), [], [], list(uncovered)
        for prow, pc, pu, unit in priced:
            e.uncovered += pu
            if unit >= 0 and len(pc) > 1:
                e.var.append((unit, pc, prow))
            else:
                e.fixed = e.fixed + pc[0]
                if prow[0] is not None:
                    e.plain.append(prow[0])
        return e

    def signature(self):
        return (self.fixed.tobytes(), tuple((u, pc.tobytes()) for u, pc, _ in self.var),
                tuple(sorted(p.kernel.name for p in self.plain)), len(self.uncovered))

    def total(self) -> float:
        return float(self.fixed[0] + sum(pc[0, 0] for _, pc, _ in self.var))

    def coef(self, sparsity) -> np.ndarray:
        c = self.fixed.copy()
        for u, pc, _ in self.var:
            c += pc[min(int(sparsity[u]), len(pc) - 1)]
        return c

    def kernels(self, sparsity) -> list:
        ks = list(self.plain)
        for u, pc, prow in self.var:
            pk = prow[min(int(sparsity[u]), len(prow) - 1)]
            if pk is not None:
                ks.append(pk)
        return ks


class _Trie:
    """Observed keys (digit tuples, nearest digit first) -> values, walked for many candidates at once:
    follow the candidate's digit where a seen key did, else the branch most seen keys took."""

    def __init__(self, obs: dict, cols, radices, ambiguous=()):
        self.cols = [int(c) for c in cols]
        L = len(self.cols)
        width = max([int(r) for r in radices] + [2])
        children = [dict()]
        count = [0]
        leaf = {}
        for key, value in obs.items():
            node = 0
            count[0] += 1
            for d in key:
                nxt = children[node].get(d)
                if nxt is None:
                    nxt = children[node][d] = len(children)
                    children.append(dict())
                    count.append(0)
                node = nxt
                count[node] += 1
            leaf[node] = value
        n = len(children)
        self.trans = np.zeros((n, width), np.int32)
        self.same = np.zeros((n, width), bool)
        for node, ch in enumerate(children):
            if not ch:
                continue
            best = max(ch, key=lambda d: (count[ch[d]], -d))
            self.trans[node, :] = ch[best]
            for d, c in ch.items():
                if d < width:
                    self.trans[node, d] = c
                    self.same[node, d] = True
        self.value = np.full(n, -1, np.int64)
        for node, v in leaf.items():
            self.value[node] = v
        # a key seen at two prices gives its first, and never counts as exact
        self.ambiguous = np.zeros(n, bool)
        for key in ambiguous:
            node = 0
            for d in key:
                node = children[node].get(d)
                if node is None:
                    break
            if node is not None:
                self.ambiguous[node] = True
        self.any_ambiguous = bool(self.ambiguous.any())  # known once, not scanned on every lookup
        # below which depth every subtree holds one value: a walk for the value can stop there
        depth = [0] * n
        sub = [None] * n
        for node in range(n - 1, -1, -1):  # children come after their parent
            if node in leaf:
                sub[node] = leaf[node]
            else:
                vs = {sub[c] for c in children[node].values()}
                sub[node] = vs.pop() if len(vs) == 1 and None not in vs and -2 not in vs else -2
        stack = [0]
        while stack:
            node = stack.pop()
            for c in children[node].values():
                depth[c] = depth[node] + 1
                stack.append(c)
        undecided = [depth[k] for k in range(n) if sub[k] == -2]
        self.decide = (max(undecided) + 1) if undecided else 0
        self.sub = np.array([v if v is not None and v >= 0 else -1 for v in sub], np.int64)
        self.empty = not obs
        self.width = width
        self.L = L
        # flat tables for the walk: the row of node k starts at k * width, and a step reads the child's
        # row start directly (every digit of a column is below its radix, so below ``width``)
        self._next = (self.trans.astype(np.intp) * width).ravel()
        self._same = self.same.ravel()

    def walk(self, S: np.ndarray, exact: bool = True):
        """(values, exact) for the candidates in the columns of state ``S`` (digits x candidates);
        ``exact=False`` stops where the value is decided (and returns None for exact)."""
        m = S.shape[1]
        if self.empty:
            return np.zeros(m, np.int64), np.zeros(m, bool)
        at = np.zeros(m, np.intp)  # the current node's row start
        nxt, w = self._next, self.width
        if not exact:
            for c in self.cols[: self.decide]:
                at += S[c]
                at = nxt.take(at)
            return self.sub.take(at // w), None
        ex = np.ones(m, bool)
        same = self._same
        for c in self.cols:
            at += S[c]
            ex &= same.take(at)
            at = nxt.take(at)
        leaf = at // w
        if self.any_ambiguous:
            ex &= ~self.ambiguous.take(leaf)
        return self.value.take(leaf), ex


def _cand_hash(bits: np.ndarray, prune: np.ndarray) -> np.ndarray:
    """A fingerprint per candidate row of (bits, prune) (a quick filter before the exact key). Integer
    weights below 2**20 on digits below 3: every partial sum is an integer a float64 holds exactly, so the
    BLAS product gives the same value for a row of a matrix as for that row alone (with fractional
    weights it could round differently, and a probed candidate would then not be found)."""
    bits, prune = np.asarray(bits), np.asarray(prune)
    w = _hash_weights(bits.shape[1])
    return bits.astype(np.float64) @ w[0] + prune.astype(np.float64) @ w[1]


@lru_cache(maxsize=64)
def _hash_weights(width: int) -> np.ndarray:
    """The fingerprint's weights for ``width`` units (made once per width)."""
    w = np.random.default_rng(12345).integers(1, 1 << 20, (2, width)).astype(np.float64)
    w.setflags(write=False)
    return w


def _cand_key(bits, prune) -> bytes:
    return np.asarray(bits, np.int8).tobytes() + b"|" + np.asarray(prune, np.int8).tobytes()


def run_probes(plan, family: str, specs) -> list:
    """Each (bits, prune) of ``specs`` rewritten as the tool would, fused and priced (its kernels priced in one
    batch with the others': one regressor call per op kind): a record per candidate that does not depend on how
    the plan groups owners. ``kernels``: (kernel, original nodes, tensors it sits on, prices); ``layout``:
    original tensor -> which of its aliases ran NCHWc-blocked / NHWC (what the producer side decides: a
    DequantizeLinear output exists only when some consumer does not absorb it, and has its input's layout
    anyway); ``quantized``: tensors given a quantize pair (or a DQ, constants)."""
    fronts = [fuse_probe(plan, family, bits, prune) for bits, prune in specs]
    plan.price_kernels([it for f in fronts for it in f["items"]])
    return [finish_probe(plan, f) for f in fronts]


def fuse_probe(plan, family: str, bits, prune) -> dict:
    """The first half of :func:`run_probes`: the candidate rewritten and fused, its kernels not priced yet."""
    from ..fusion.driver import fused_graph
    from ..fusion.lower import emit

    rw = plan.rewrite(family, bits, prune, materialize=False)
    state = fused_graph(rw.graph, plan.rules)
    layouts = getattr(state, "layouts", {}) or {}
    kernels, uncovered = emit(state)
    marks: dict = {}
    for tag, names in (("b", layouts.get("blocked", ())), ("h", layouts.get("nhwc", ()))):
        for name in names:
            if name.endswith("_DequantizeLinear_Output"):
                continue
            marks.setdefault(rw.tensor_origin.get(name, name), set()).add((tag, name))
    marks = {t: tuple(sorted(v)) for t, v in marks.items()}
    origins = [_origins(k, rw) for k in kernels]
    unc = []
    for u in uncovered:
        n = rw.node_origin.get(u.node, u.node)
        unc.append((n, None, u.op_type, u.reason) if isinstance(n, str) else
                   (None, n[1] if isinstance(n, tuple) else u.node, u.op_type, u.reason))
    quantized = set()
    for name in rw.node_origin:
        for suffix in ("_QuantizeLinear", "_DequantizeLinear"):
            if name.endswith(suffix):
                t = name[: -len(suffix)]
                quantized.add(rw.tensor_origin.get(t, t))
    return {"bits": np.array(bits, np.int64), "prune": np.array(prune, np.int64),
            "items": [(k, names) for k, (names, _) in zip(kernels, origins)],
            "tensors": [tensors for _, tensors in origins], "uncovered": unc,
            "layout": marks, "quantized": quantized}


def finish_probe(plan, front: dict) -> dict:
    """The second half of :func:`run_probes`: ``front``'s kernels with their prices (read from the plan's memo,
    which :func:`run_probes` filled for every probe in one batch)."""
    items = front["items"]
    priced = plan.price_kernels(items)
    out = [(k, names, tensors, pr) for (k, names), tensors, pr in zip(items, front["tensors"], priced)]
    return {"bits": front["bits"], "prune": front["prune"], "kernels": out, "uncovered": front["uncovered"],
            "layout": front["layout"], "quantized": front["quantized"]}


def _origins(k, rw):
    """(original nodes, original tensors) a fused kernel covers or sits on."""
    names, tensors = [], []
    for n in k.nodes:
        o = rw.node_origin.get(n, n)
        if isinstance(o, tuple):
            tensors.append(rw.tensor_origin.get(o[1], o[1]))
        elif o is not None:
            names.append(o)
    if names or tensors:
        return tuple(dict.fromkeys(names)), tuple(tensors)
    if "/dup" in k.name:  # a DequantizeLinear copied once per consumer
        o = rw.node_origin.get(k.name.rsplit("/dup", 1)[0])
        if isinstance(o, tuple):
            return (), (rw.tensor_origin.get(o[1], o[1]),)
        if isinstance(o, str):
            return (o,), ()
    head = k.name
    while "/" in head:  # a kernel a node's lowering adds ("x/gemm_input_reshape")
        head = head.rsplit("/", 1)[0]
        o = rw.node_origin.get(head)
        if isinstance(o, str):
            return (o,), ()
    m = _INSERTED.match(k.name)
    if m:
        t = m.group(1) or m.group(2)
        return (), (rw.tensor_origin.get(t, t),)
    return (), ()


def _spec(spec):
    """(column, radix, priority) triples, each column once at its best priority, in priority order."""
    best: dict = {}
    for c, r, p in spec:
        if c not in best or p < best[c][1]:
            best[c] = (r, p)
    order = sorted(best, key=lambda c: (best[c][1], [x for x, _, _ in spec].index(c)))
    return [(c, best[c][0], best[c][1]) for c in order]


def _fetch_us(cm, key: str, iso: float, gate: float) -> float:
    """The weight fetch :meth:`latency.Estimator.estimate` adds to a kernel (config ``key``, ``iso`` us
    alone) in a model with last-level ``gate`` (the context model reads the kernel's time alone and its
    config: a matrix-vector product streams at the memory rate)."""
    return cm.stream_us(weight_mb(key), gate, isolated_us=iso, key=key)


class Pricer:
    """Prices kernels with an :class:`~latency.Estimator` and turns them into coefficients; applies
    the estimator's context and overhead (scalar, and vectorised over candidates)."""

    def __init__(self, est):
        self.est = est
        self.cm = est.context_
        self.ov = est.overhead_
        self._coef: dict = {}
        ov = self.ov
        self.per_run = float(ov.get("per_run_us", 0.0)) if (
            "per_long_kernel_us" in ov or ov.get("per_run_us") or ov.get("per_kernel_us")
            or ov.get("per_weight_mb_us")) else 0.0
        spec = self.cm.spec if self.cm is not None else {}
        gs = spec.get("gate", {}) if isinstance(spec.get("gate"), dict) else {}
        self._use_cm_gate = bool(self.cm) and bool(spec.get("gate"))
        fp = gs.get("footprint_mb")
        self._bounds = tuple(fp) if fp and 0 < fp[0] < fp[1] else None
        self._curve = gs.get("curve")
        self._fp_scale = float(gs.get("footprint_scale", 1.0))
        cfp = (spec.get("curve_gate") or {}).get("footprint_mb")
        self._curve_bounds = tuple(cfp) if cfp and 0 < cfp[0] < cfp[1] else None
        self._ov_bounds = (ov.get("weights") or {}).get("gate_footprint_mb")

    def price(self, cfgs: list) -> list:
        """(latency_us, source, detail) per Config, as the estimator prices it (None: uncovered)."""
        out = [None] * len(cfgs)
        ok = [i for i, c in enumerate(cfgs) if not config_problem(c.key)]
        res = self.est._price_many([cfgs[i] for i in ok])
        for i, r in zip(ok, res):
            out[i] = r
        return out

    def coefficients(self, kind, op_types, iso, source, key, repeat: bool = False) -> np.ndarray:
        # the op types decide the overhead terms: a dispatched metadata op (the first), a dynamic-int8 conv
        # chain's extra kernels (their number); ``repeat``: a loop body's later iteration (no working set)
        ck = (key, source, op_types[:1], len(op_types), iso, repeat)
        hit = self._coef.get(ck)
        if hit is not None:
            return hit
        v = np.zeros(len(COEFS))
        free = source == "free"
        v[0] = iso
        if self.cm and not free:
            small = self.cm.small_factor(kind, iso, _key_precision(key), key)
            if small is not None:  # no cache gate on it: all in the fixed part
                v[0] = iso * small
            else:
                v[1] = iso * (self.cm.factor(kind, iso, 1.0, _key_precision(key), key) - 1.0)
            v[2] = _fetch_us(self.cm, key, iso, 1.0)  # linear in the gate
        ke = KernelEstimate("k", kind, tuple(op_types), (), _key_precision(key) or "", "", iso, source, key=key,
                            isolated_us=iso)
        o0 = overhead_us([ke], self.ov, 0.0) - self.per_run
        o1 = overhead_us([ke], self.ov, 1.0) - self.per_run
        v[3], v[4] = o0, o1 - o0
        if not free:
            v[5] = 0.0 if repeat else footprint_term_mb(key)
            v[6] = weight_mb(key)
        self._coef[ck] = v
        return v

    # -- gates, scalar and vectorised --------------------------------------------------------
    def gates(self, footprint_mb: float) -> tuple:
        """(last-level gate, private-cache gate) as Estimator.estimate computes them."""
        if self._use_cm_gate:
            g = self.cm.gate(footprint_mb)
        else:
            g = cache_gate(footprint_mb, self._ov_bounds)
        cg = self.cm.curve_gate(footprint_mb) if self.cm else g
        return g, cg

    def gates_vec(self, fp: np.ndarray) -> tuple:
        def gate(x, bounds, curve):
            x = np.asarray(x, float)
            if not bounds and not curve:
                return np.ones_like(x)
            lx = np.log(np.maximum(x, 1e-300))
            if curve and curve.get("footprint_mb"):
                g = np.clip(np.interp(lx, np.log(curve["footprint_mb"]), curve["gate"]), 0, 1)
            else:
                lo, hi = math.log(bounds[0]), math.log(bounds[1])
                g = np.clip((lx - lo) / (hi - lo), 0, 1)
            return np.where(x <= 0, 0.0, g)

        if self._use_cm_gate:
            g = gate(fp * self._fp_scale, self._bounds, self._curve) if (self._bounds or self._curve) \
                else np.ones_like(fp)
        else:
            g = gate(fp, self._ov_bounds, None)
        if self.cm:
            cg = gate(fp, self._curve_bounds, None) if self._curve_bounds else g
        else:
            cg = g
        return g, cg

    def totals_us(self, acc: np.ndarray, any_kernels: bool = True) -> np.ndarray:
        """Total microseconds per candidate from its coefficient sums (the estimator's arithmetic)."""
        g, cg = self.gates_vec(acc[:, 5])
        ksum = acc[:, 0] + cg * acc[:, 1] + g * acc[:, 2]
        ov = (self.per_run + acc[:, 3] + g * acc[:, 4]) if any_kernels else np.zeros(len(acc))
        scaled = np.maximum(0.5 * ksum, ksum + ov)
        return np.where((ov < 0) & (ksum > 0), scaled, ksum + ov)


def finish(pricer: Pricer, priced: list, uncovered: list, target: str, profile, warnings=()):
    """An :class:`~latency.Estimate` from priced kernels, exactly as :meth:`latency.Estimator.estimate`
    finishes one (gates from the working set, in-model context, overhead, negative overhead moved
    into the kernels)."""
    from ..estimator import Estimate
    from ..overhead import settle_overhead

    cm, ov = pricer.cm, pricer.ov
    fp = sum(footprint_term_mb(p.key) for p in priced if p.source != "free" and not getattr(p.kernel, "repeat", False))
    gate, cgate = pricer.gates(fp)
    ests = []
    for p in priced:
        k = p.kernel
        iso = max(0.0, float(p.iso_us))
        lat, detail = iso, p.detail
        if cm and p.source != "free":
            f = cm.factor(k.kind, iso, cgate, k.precision, p.key)
            s = _fetch_us(cm, p.key, iso, gate)
            lat = iso * f + s
            detail = (detail + "; " if detail else "") + f"in-model context x{f:.3f}" + \
                (f" + {s:.1f} us weight fetch" if s >= 0.05 else "") + f" (gates: private cache {cgate:.2f}, " \
                f"last-level cache {gate:.2f})"
        ests.append(KernelEstimate(k.name, k.kind, tuple(k.op_types), tuple(p.nodes) or tuple(k.nodes), k.precision,
                                   k.sparsity, lat, p.source, 0.0, detail, p.key, iso))
    ests, ksum, overhead, ov_source = settle_overhead(ests, ov, gate)
    total = ksum + overhead
    ests = [replace(e, share=e.latency_us / total if total > 0 else 0.0) for e in ests]
    sources: dict = {}
    for e in ests:
        sources[e.source] = sources.get(e.source, 0) + 1
    warnings = list(warnings)
    if uncovered:
        warnings.append(f"{len(uncovered)} node(s) could not be priced and are NOT in the total (see uncovered)")
    return Estimate(total / 1000.0, ksum, overhead, tuple(ests), tuple(uncovered), target, profile, ov_source,
                    tuple(warnings), sources, pricer.est.context_source_, fp, gate, cgate,
                    getattr(pricer.est.rules_, "name", ""))


@lru_cache(maxsize=None)
def _key_precision(key: str) -> str:
    """The precision a config key names (its in-model curve may be the precision's own)."""
    return Config.from_key(key).precision
