"""The Mondrian core on integer codes: all open partitions of a level are handled together by
array operations (segments of one row permutation), so the Python work is per level, not per
partition.

Rows of the open partitions are kept grouped by partition (``rows``, segment starts
``starts``). One level: per-segment min/max of every code (``reduceat``), the attributes ranked by
normalized width, then for each rank the median code of the chosen attribute (one sort of
``segment * M + code`` keys), the two cuts beside it, their side counts, and if asked the
sensitive constraints of the two sides. Split segments are rewritten in place left-then-right;
segments with no allowable cut become equivalence classes.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ._tabular_encode import Column, Tree


# --- sensitive attribute --------------------------------------------------------------------------

@dataclass
class Sensitive:
    """The sensitive column as codes 0..S-1 (numeric: ranks; categorical: any order; with a
    hierarchy: leaf codes) and the constraints to enforce on every class."""

    codes: np.ndarray
    n_codes: int
    kind: str                 # "numeric" (ordered EMD), "equal" or "tree" (hierarchical EMD)
    tree: Tree | None
    l: float | None
    l_kind: str
    t: float | None

    def __post_init__(self) -> None:
        n = len(self.codes)
        counts = np.bincount(self.codes, minlength=self.n_codes).astype(np.float64)
        self.q = counts / n
        if self.kind == "numeric":
            self.fq = np.cumsum(counts) / n
            self.fq[-1] = 1.0
            self.pf = np.concatenate(([0.0], np.cumsum(self.fq)))
        if self.kind == "tree":
            tree = self.tree
            qcum = np.concatenate(([0.0], np.cumsum(self.q)))
            self.qnode = qcum[tree.hi + 1] - qcum[tree.lo]
            h = tree.height.astype(np.float64) / tree.height[tree.root]
            hp = np.where(tree.parent >= 0, h[np.maximum(tree.parent, 0)], 0.0)
            # ground distance of two leaves = height of their lowest common ancestor / H (Li et
            # al.); as a tree metric, each node's edge to its parent weighs (h(parent) - h) / 2.
            self.weight = np.where(tree.parent >= 0, (hp - h) / 2, 0.0)
            self.emd_base = float(np.sum(self.weight * self.qnode))

    def groups_ok(self, codes: np.ndarray, groups: np.ndarray, n_groups: int) -> np.ndarray:
        """Whether each group of rows (sensitive ``codes`` with group ids ``groups``) meets l and t.
        Empty groups are reported as failing."""
        s = self.n_codes
        key = groups * s + codes
        if n_groups * s <= max(8 * len(key), 1 << 20):  # a dense histogram beats a sort
            dense = np.bincount(key, minlength=n_groups * s)
            run_key = np.flatnonzero(dense)
            counts = dense[run_key].astype(np.float64)
        else:
            key = np.sort(key)
            first = np.empty(len(key), bool)
            first[0] = True
            np.not_equal(key[1:], key[:-1], out=first[1:])
            starts = np.flatnonzero(first)
            counts = np.diff(np.append(starts, len(key))).astype(np.float64)
            run_key = key[starts]
        g, v = run_key // s, run_key % s
        size = np.bincount(g, counts, n_groups)
        ok = size > 0
        p = counts / size[g]
        if self.l is not None:
            if self.l_kind == "distinct":
                ok &= np.bincount(g, minlength=n_groups) >= self.l
            else:
                entropy = -np.bincount(g, p * np.log(p), n_groups)
                ok &= entropy >= math.log(self.l) - 1e-12
        if self.t is not None:
            ok &= self.emd(g, v, p, n_groups) <= self.t + 1e-12  # rounding of equal distributions
        return ok

    def emd(self, g: np.ndarray, v: np.ndarray, p: np.ndarray, n_groups: int) -> np.ndarray:
        """Earth mover's distance of each group's distribution to the table's, from the runs
        (group g, value v, probability p) sorted by (g, v)."""
        if self.n_codes == 1:
            return np.zeros(n_groups)
        if self.kind == "equal":  # 1/2 sum |p - q|, the values absent from a group adding q
            q = self.q[v]
            return 0.5 * (1.0 + np.bincount(g, np.abs(p - q) - q, n_groups))
        if self.kind == "numeric":
            return self._emd_ordered(g, v, p, n_groups)
        return self._emd_tree(g, v, p, n_groups)

    def _emd_ordered(self, g, v, p, n_groups):
        # EMD = sum_i |F_p(i) - F_q(i)| / (S - 1). F_p is constant (c) from one run to the next,
        # F_q is increasing: each stretch [a, b) splits where F_q crosses c and is summed in
        # closed form from the prefix sums pf of F_q.
        s, fq, pf = self.n_codes, self.fq, self.pf
        last = np.empty(len(g), bool)
        last[-1] = True
        np.not_equal(g[1:], g[:-1], out=last[:-1])
        first = np.empty(len(g), bool)
        first[0] = True
        first[1:] = last[:-1]
        csum = np.cumsum(p)
        base = (csum - p)[first]                      # cumulative before each group's first run
        c = csum - np.repeat(base, np.diff(np.append(np.flatnonzero(first), len(g))))
        c[last] = 1.0
        a = v
        b = np.where(last, s, np.roll(v, -1))
        x = np.clip(np.searchsorted(fq, c, side="left"), a, b)
        term = c * (x - a) - (pf[x] - pf[a]) + (pf[b] - pf[x]) - c * (b - x)
        head = np.zeros(n_groups)
        head[g[first]] = pf[v[first]]                 # [0, first value): F_p = 0
        return (np.bincount(g, term, n_groups) + head) / (s - 1)

    def _emd_tree(self, g, v, p, n_groups):
        # EMD = sum over non-root nodes C of weight(C) |p(C) - q(C)|: the base sum assumes
        # p(C) = 0 everywhere, then each node holding some of the group's mass is corrected.
        tree, w, qn = self.tree, self.weight, self.qnode
        out = np.full(n_groups, self.emd_base)
        for depth in range(1, tree.anc.shape[1]):
            node = tree.anc[v, depth]
            keep = node >= 0
            if not keep.any():
                continue
            gd, nd, pd_ = g[keep], node[keep], p[keep]
            change = np.empty(len(gd), bool)
            change[0] = True
            change[1:] = (gd[1:] != gd[:-1]) | (nd[1:] != nd[:-1])
            at = np.flatnonzero(change)
            mass = np.add.reduceat(pd_, at)
            nodes = nd[at]
            out += np.bincount(gd[at], w[nodes] * (np.abs(mass - qn[nodes]) - qn[nodes]),
                               n_groups)
        return out

    def table_meets_l(self) -> bool:
        t, self.t = self.t, None
        try:
            return bool(self.groups_ok(self.codes, np.zeros(len(self.codes), np.int64), 1)[0])
        finally:
            self.t = t


# --- Mondrian -------------------------------------------------------------------------------------

def _unit_positions(col: Column) -> np.ndarray | None:
    """Numeric codes -> position in [0, 1] of the value within the table's range."""
    if col.kind != "numeric":
        return None
    vals = col.values.astype(np.float64)
    span = vals[-1] - vals[0]
    return (vals - vals[0]) / span if span > 0 else np.zeros_like(vals)


def _lca(tree: Tree, lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Lowest common ancestor (node, depth) of leaf codes lo and hi, elementwise."""
    a, b = tree.anc[lo], tree.anc[hi]
    depth = ((a == b) & (a >= 0)).sum(axis=1) - 1
    return a[np.arange(len(lo)), depth], depth


def _widths(cols: list[Column], units: list, mn: np.ndarray, mx: np.ndarray) -> np.ndarray:
    """(q, segments) normalized width of each attribute in each segment: the NCP its release
    would cost (numeric: range / table range; hierarchy: (leaves under the LCA - 1) / (leaves -
    1)); for categorical values without hierarchy, the span of their sorted codes."""
    w = np.zeros(mn.shape)
    for j, col in enumerate(cols):
        if col.kind == "numeric":
            w[j] = units[j][mx[j]] - units[j][mn[j]]
        elif col.n_codes > 1:
            if col.kind == "tree":
                node, _ = _lca(col.tree, mn[j], mx[j])
                w[j] = (col.tree.hi[node] - col.tree.lo[node]) / (col.n_codes - 1)
            else:
                w[j] = (mx[j] - mn[j]) / (col.n_codes - 1)
    return w


def mondrian_codes(cols: list[Column], k: int, sens: Sensitive | None
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Strict multidimensional Mondrian over coded columns.

    Returns (class id per row, per-class min codes (n_classes, q), per-class max codes)."""
    n, q = len(cols[0].codes), len(cols)
    dtype = np.int32 if max(c.n_codes for c in cols) < 2**31 else np.int64
    codes = np.stack([c.codes.astype(dtype, copy=False) for c in cols])
    units = [_unit_positions(c) for c in cols]
    big = max(c.n_codes for c in cols) + 1
    part = np.empty(n, np.int64)
    class_mn: list[np.ndarray] = []
    class_mx: list[np.ndarray] = []
    n_classes = 0

    rows = np.arange(n, dtype=np.int64)
    starts = np.zeros(1, np.int64)
    while len(rows):
        sizes = np.diff(np.append(starts, len(rows)))
        n_seg = len(starts)
        x = codes[:, rows]
        mn = np.minimum.reduceat(x, starts, axis=1)
        mx = np.maximum.reduceat(x, starts, axis=1)
        width = _widths(cols, units, mn, mx)
        rank = np.argsort(-width, axis=0, kind="stable")
        seg_of_row = np.repeat(np.arange(n_seg), sizes)

        attr = np.full(n_seg, -1, np.int64)    # chosen attribute per segment, -1: no cut
        thr = np.zeros(n_seg, np.int64)        # left side: code <= thr
        n_left = np.zeros(n_seg, np.int64)
        for r in range(q):
            a_seg = rank[r]
            cand = (attr < 0) & (width[a_seg, np.arange(n_seg)] > 0)
            if not cand.any():
                continue
            segs = np.flatnonzero(cand)
            a = a_seg[segs]
            pos = np.flatnonzero(cand[seg_of_row])
            local = np.cumsum(cand) - 1         # segment -> index among candidates
            seg_sizes = sizes[segs]
            sub_starts = np.concatenate(([0], np.cumsum(seg_sizes)[:-1]))
            v = x[a_seg[seg_of_row[pos]], pos].astype(np.int64)
            key = np.sort(local[seg_of_row[pos]] * big + v)
            offset = np.arange(len(segs)) * big
            med = key[sub_starts + (seg_sizes - 1) // 2] - offset
            # The block holding the median: the value itself, or for a hierarchy the child of
            # the segment's LCA holding it; the two cuts are just before and just after it.
            blo, bhi = med.copy(), med.copy()
            for j, col in enumerate(cols):
                sel = np.flatnonzero(a == j)
                if col.kind != "tree" or not len(sel):
                    continue
                _, depth = _lca(col.tree, mn[j, segs[sel]], mx[j, segs[sel]])
                child = col.tree.anc[med[sel], depth + 1]
                blo[sel], bhi[sel] = col.tree.lo[child], col.tree.hi[child]
            left_a = np.searchsorted(key, offset + blo, side="left") - sub_starts
            left_b = np.searchsorted(key, offset + bhi, side="right") - sub_starts
            ok_a = (left_a >= k) & (seg_sizes - left_a >= k)
            ok_b = (left_b >= k) & (seg_sizes - left_b >= k)
            # Prefer the more balanced cut (ties: code <= block end).
            a_first = np.abs(2 * left_a - seg_sizes) < np.abs(2 * left_b - seg_sizes)
            cuts = [(np.where(a_first, blo - 1, bhi), np.where(a_first, left_a, left_b),
                     np.where(a_first, ok_a, ok_b)),
                    (np.where(a_first, bhi, blo - 1), np.where(a_first, left_b, left_a),
                     np.where(a_first, ok_b, ok_a))]
            taken = np.zeros(len(segs), bool)
            for cut, left, ok in cuts:
                ok = ok & ~taken
                if sens is not None and ok.any():
                    ok = _sides_ok(sens, rows, pos, v, local, seg_of_row, cut, ok, len(segs))
                attr[segs[ok]] = a[ok]
                thr[segs[ok]] = cut[ok]
                n_left[segs[ok]] = left[ok]
                taken |= ok

        done = attr < 0
        if done.any():
            ids = n_classes + np.cumsum(done) - 1
            row_done = done[seg_of_row]
            part[rows[row_done]] = ids[seg_of_row[row_done]]
            class_mn.append(mn[:, done].T)
            class_mx.append(mx[:, done].T)
            n_classes += int(done.sum())
        split = ~done
        if not split.any():
            break
        # Rewrite the split segments, left rows first, keeping order within each side: a row's
        # new place is its side's start plus the rows of that side before it in its segment.
        keep = split[seg_of_row]
        seg_k = seg_of_row[keep]
        rows_k = rows[keep]
        right = (x[attr[seg_k], np.flatnonzero(keep)] > thr[seg_k]).astype(np.int64)
        split_sizes = sizes[split]
        seg_start = np.concatenate(([0], np.cumsum(split_sizes)[:-1]))
        rights_before = np.cumsum(right) - right
        base_r = rights_before[seg_start]
        split_index = (np.cumsum(split) - 1)[seg_k]
        offset = np.arange(len(right)) - seg_start[split_index]       # place in old segment
        in_side = np.where(right == 1, rights_before - base_r[split_index],
                           offset - (rights_before - base_r[split_index]))
        left_sizes = n_left[split]
        place = seg_start[split_index] + right * left_sizes[split_index] + in_side
        rows = np.empty_like(rows_k)
        rows[place] = rows_k
        starts = np.stack([seg_start, seg_start + left_sizes], axis=1).reshape(-1)
    return part, np.concatenate(class_mn), np.concatenate(class_mx)


def _sides_ok(sens: Sensitive, rows, pos, v, local, seg_of_row, cut, ok, n_cand) -> np.ndarray:
    """ok narrowed to the candidate segments whose two sides at ``cut`` meet l and t."""
    seg_local = local[seg_of_row[pos]]
    on = ok[seg_local]
    right = v[on] > cut[seg_local[on]]
    groups = 2 * seg_local[on] + right
    sides = sens.groups_ok(sens.codes[rows[pos[on]]], groups, 2 * n_cand).reshape(-1, 2)
    return ok & sides[:, 0] & sides[:, 1]
