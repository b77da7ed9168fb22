"""Numba kernels of local training: one device's whole mini-batch SGD in one compiled call (all
epochs and batches, its shuffles included), devices one after the other; the entry points
release the GIL, so callers may run blocks of devices in threads (training.py does).

Layout. A dense layer whose public parameters are ``W (n_in + 1, n_out)`` (last row: biases) is
held transposed while training, ``WT (n_out, n_in + 1)``, so that every inner loop runs along the
long input axis: the forward pass is dot products of an input row with a row of WT, the backward
pass adds scaled input rows into a row of the gradient.

Arithmetic, all float32, the same for a device whichever devices share the call:
- forward: ``z = dot(x, WT[o, :n_in]) + WT[o, n_in]``; the dot is the one place compiled with
  reassociation (``fastmath={"reassoc"}``) so that LLVM vectorises it: its summation order is
  fixed by the compiled loop and n_in alone (every output goes through the same 2x2-blocked
  loop), never by the data or the other devices, but may differ between CPUs of different
  vector widths;
- output delta: softmax with the maximum subtracted first and the class sum taken in class
  order, minus one at the label, divided by the batch size; or (z - target) / b;
- gradient: ``sum_i delta[i, o] * x_i`` accumulated over the batch's rows in order, then
  ``+ l2 * w`` on weights (not biases); step: ``w -= lr * g``.
A device's rows are read in place (rows ``x0 + permutation``), checked finite before its first
step; a device holding NaN or Inf reports it and keeps its starting parameters.
"""
from __future__ import annotations

import numpy as np
from numba import njit

from ._compile import cached_njit
from ._shuffle import new_rng, permutation

# --- dense-layer pieces ------------------------------------------------------------------------


@njit(fastmath={"reassoc"})
def _dots2x2(x0, x1, w0, w1, n):
    """(x0.w0, x0.w1, x1.w0, x1.w1) over the first n entries: 4 products per load pair."""
    a = b = c = d = np.float32(0.0)
    for f in range(n):
        a += x0[f] * w0[f]
        b += x0[f] * w1[f]
        c += x1[f] * w0[f]
        d += x1[f] * w1[f]
    return a, b, c, d


@njit
def _affine(Z, S, rows, b, WT):
    """Z[i, o] = S[rows[i]] . WT[o, :n_in] + WT[o, n_in] for i < b: rows and outputs taken in
    pairs (an odd last one paired with itself), so every entry comes from the same loop."""
    n_in, n_out = S.shape[1], WT.shape[0]
    for i in range(0, b, 2):
        i1 = min(i + 1, b - 1)
        x0, x1 = S[rows[i]], S[rows[i1]]
        for o in range(0, n_out, 2):
            o1 = min(o + 1, n_out - 1)
            a, bb, c, d = _dots2x2(x0, x1, WT[o], WT[o1], n_in)
            Z[i, o] = a + WT[o, n_in]
            Z[i, o1] = bb + WT[o1, n_in]
            Z[i1, o] = c + WT[o, n_in]
            Z[i1, o1] = d + WT[o1, n_in]


@njit
def _grad_rows(g, S, rows, b, D, o0, o1):
    """For o in (o0, o1): g[j, :n_in] = sum_i D[i, o] * S[rows[i]] and g[j, n_in] =
    sum_i D[i, o], rows in order (j = 0, 1; o1 == o0 fills row 1 with the same). Rows go four at
    a time through one pass over the inputs, summed left to right: the same order as one row at
    a time; two outputs share each load of the inputs."""
    n_in = S.shape[1]
    g0, g1 = g[0], g[1]
    i = 0
    while i + 4 <= b:
        a0, a1, a2, a3 = D[i, o0], D[i + 1, o0], D[i + 2, o0], D[i + 3, o0]
        c0, c1, c2, c3 = D[i, o1], D[i + 1, o1], D[i + 2, o1], D[i + 3, o1]
        x0, x1, x2, x3 = S[rows[i]], S[rows[i + 1]], S[rows[i + 2]], S[rows[i + 3]]
        if i == 0:
            for f in range(n_in):
                g0[f] = ((a0 * x0[f] + a1 * x1[f]) + a2 * x2[f]) + a3 * x3[f]
                g1[f] = ((c0 * x0[f] + c1 * x1[f]) + c2 * x2[f]) + c3 * x3[f]
        else:
            for f in range(n_in):
                g0[f] = (((g0[f] + a0 * x0[f]) + a1 * x1[f]) + a2 * x2[f]) + a3 * x3[f]
                g1[f] = (((g1[f] + c0 * x0[f]) + c1 * x1[f]) + c2 * x2[f]) + c3 * x3[f]
        i += 4
    while i < b:
        a0, c0, x0 = D[i, o0], D[i, o1], S[rows[i]]
        if i == 0:
            for f in range(n_in):
                g0[f] = a0 * x0[f]
                g1[f] = c0 * x0[f]
        else:
            for f in range(n_in):
                g0[f] = g0[f] + a0 * x0[f]
                g1[f] = g1[f] + c0 * x0[f]
        i += 1
    s0 = s1 = np.float32(0.0)
    for i in range(b):
        s0 += D[i, o0]
        s1 += D[i, o1]
    g0[n_in] = s0
    g1[n_in] = s1


@njit
def _step(w, g, n_in, l2, lr, GT, o):
    """g (+ l2 * w on the weights); then ``w -= lr * g`` (SGD) when GT is empty, else
    GT[o] = g (w unchanged)."""
    if l2 != np.float32(0.0):
        for f in range(n_in):
            g[f] = g[f] + l2 * w[f]
    # (Loops, not slice assignments: those compile numba's shape-mismatch error message,
    # seconds of a cold start.)
    if GT.shape[0]:
        for f in range(n_in + 1):
            GT[o, f] = g[f]
    else:
        for f in range(n_in + 1):
            w[f] = w[f] - lr * g[f]


@njit
def _backward(WT, S, rows, b, D, l2, lr, g, GT):
    """For each output o, its gradient row (_grad_rows, outputs in pairs, + l2 * w on the
    weights); then ``WT[o] -= lr * g`` (SGD) when GT is empty, else GT[o] = g (WT unchanged).
    g: scratch (2, >= n_in + 1). Every gradient is taken before any step: each uses D alone."""
    n_in, n_out = S.shape[1], WT.shape[0]
    for o in range(0, n_out, 2):
        o1 = min(o + 1, n_out - 1)
        _grad_rows(g, S, rows, b, D, o, o1)
        _step(WT[o], g[0], n_in, l2, lr, GT, o)
        if o1 != o:
            _step(WT[o1], g[1], n_in, l2, lr, GT, o1)


@njit
def _delta(Z, b, labels, targets, trows):
    """Z (b, n_out) of outputs -> d(mean loss)/d(outputs): softmax cross-entropy when labels is
    non-empty (labels[trows[i]]), else half squared error against targets[trows[i]]."""
    inv = np.float32(b)
    n_out = Z.shape[1]
    for i in range(b):
        z = Z[i]
        if labels.shape[0]:
            m = z[0]
            for c in range(1, n_out):
                m = max(m, z[c])
            s = np.float32(0.0)
            for c in range(n_out):
                z[c] = np.exp(z[c] - m)
                s += z[c]
            for c in range(n_out):
                z[c] = z[c] / s
            z[labels[trows[i]]] -= np.float32(1.0)
        else:
            z[0] = z[0] - targets[trows[i]]
        for c in range(n_out):
            z[c] = z[c] / inv


# --- one batch of each model ------------------------------------------------------------------


@njit
def linear_batch(WT, X, rows, b, labels, targets, trows, l2, lr, Z, g, GT):
    """A linear model WT (n_out, F + 1) on one batch: an SGD step on WT, or (GT non-empty) its
    gradient into GT. Z (>= b, n_out) and g (2, F + 1) are scratch."""
    _affine(Z, X, rows, b, WT)
    _delta(Z, b, labels, targets, trows)
    _backward(WT, X, rows, b, Z, l2, lr, g, GT)


@njit
def mlp_batch(W1, W2, X, rows, b, labels, targets, trows, l2, lr, relu, scratch, G1, G2):
    """The MLP (W1 (H, F + 1), W2 (n_out, H + 1)) on one batch: an SGD step on both layers, or
    (G1, G2 non-empty) their gradients. scratch: (Z1, A, dZ (>= b, H), Z2 (>= b, n_out),
    hidden rows arange(>= b), g (2, >= max(F, H) + 1))."""
    Z1, A, dZ, Z2, hrows, g = scratch
    H = W1.shape[0]
    _affine(Z1, X, rows, b, W1)
    for i in range(b):
        for h in range(H):
            A[i, h] = max(Z1[i, h], np.float32(0.0)) if relu else np.tanh(Z1[i, h])
    _affine(Z2, A, hrows, b, W2)
    _delta(Z2, b, labels, targets, trows)
    # Back through the output layer (its weights before the step), classes in order, then
    # through the activation.
    for i in range(b):
        dz = dZ[i]
        dz[:] = np.float32(0.0)
        for c in range(W2.shape[0]):
            d, w = Z2[i, c], W2[c]
            for h in range(H):
                dz[h] = dz[h] + d * w[h]
        for h in range(H):
            if relu:
                dz[h] = dz[h] if Z1[i, h] > np.float32(0.0) else np.float32(0.0)
            else:
                dz[h] = dz[h] * (np.float32(1.0) - A[i, h] * A[i, h])
    _backward(W2, A, hrows, b, Z2, l2, lr, g[:, :H + 1], G2)
    _backward(W1, X, rows, b, dZ, l2, lr, g[:, :X.shape[1] + 1], G1)


# --- one device ---------------------------------------------------------------------------------


@njit(fastmath={"reassoc"})
def _finite(X, x0, n):
    """Whether rows x0 .. x0 + n - 1 of X hold only finite values (x - x is NaN otherwise)."""
    acc = np.float32(0.0)
    for r in range(x0, x0 + n):
        x = X[r]
        for f in range(x.shape[0]):
            acc += x[f] - x[f]
    return acc == np.float32(0.0)


@njit
def _unpack(WT, P, at):
    """WT (n_out, n_in + 1) = the transpose of P[at : at + WT.size] read as (n_in + 1, n_out)."""
    n_out, rows = WT.shape
    for r in range(rows):
        for o in range(n_out):
            WT[o, r] = P[at + r * n_out + o]


@njit
def _pack(out, WT, at):
    n_out, rows = WT.shape
    for r in range(rows):
        for o in range(n_out):
            out[at + r * n_out + o] = WT[o, r]


@njit
def _linear_device(P, X, x0, n, labels, targets, t0, words, epochs, bs, lr, l2, out):
    n_out = P.shape[0] // (X.shape[1] + 1)
    WT = np.empty((n_out, X.shape[1] + 1), np.float32)
    _unpack(WT, P, 0)
    if not _finite(X, x0, n):
        for j in range(P.shape[0]):
            out[j] = P[j]
        return False
    Z, g = np.empty((min(bs, n), n_out), np.float32), np.empty((2, X.shape[1] + 1), np.float32)
    none = np.empty((0, 0), np.float32)  # no gradient output: the batches step
    rng, perm = new_rng(words), np.empty(n, np.int64)
    for _ in range(epochs):
        permutation(rng, perm)
        for j in range(0, n, bs):
            b = min(bs, n - j)
            part = perm[j:j + b]
            linear_batch(WT, X, part + x0, b, labels, targets, part + t0, l2, lr, Z, g, none)
    _pack(out, WT, 0)
    return True


@njit
def _mlp_scratch(b, H, n_out, F):
    return (np.empty((b, H), np.float32), np.empty((b, H), np.float32),
            np.empty((b, H), np.float32), np.empty((b, n_out), np.float32), np.arange(b),
            np.empty((2, max(F, H) + 1), np.float32))


@njit
def _mlp_device(P, X, x0, n, labels, targets, t0, words, epochs, bs, lr, l2, H, relu, out):
    F = X.shape[1]
    n_out = (P.shape[0] - (F + 1) * H) // (H + 1)
    W1, W2 = np.empty((H, F + 1), np.float32), np.empty((n_out, H + 1), np.float32)
    _unpack(W1, P, 0)
    _unpack(W2, P, W1.size)
    if not _finite(X, x0, n):
        for j in range(P.shape[0]):
            out[j] = P[j]
        return False
    scratch = _mlp_scratch(min(bs, n), H, n_out, F)
    none = np.empty((0, 0), np.float32)  # no gradient output: the batches step
    rng, perm = new_rng(words), np.empty(n, np.int64)
    for _ in range(epochs):
        permutation(rng, perm)
        for j in range(0, n, bs):
            b = min(bs, n - j)
            part = perm[j:j + b]
            mlp_batch(W1, W2, X, part + x0, b, labels, targets, part + t0, l2, lr, relu,
                      scratch, none, none)
    _pack(out, W1, 0)
    _pack(out, W2, W1.size)
    return True


# --- entry points ---------------------------------------------------------------------------------


@cached_njit(nogil=True)
def train_linear(P, X, xstart, counts, labels, targets, tstart, words, epochs, bs, lr, l2, out):
    """SGD of K devices of a linear model from P into out (K, n_params) float32; returns which
    devices' rows were finite (K,) bool (the others keep P). Device k owns rows xstart[k] :
    xstart[k] + counts[k] of X, its labels (classification) or targets (regression, labels
    empty) from tstart[k]; words[k] is its seed (_shuffle.seed_words)."""
    K = counts.shape[0]
    ok = np.empty(K, np.bool_)
    for k in range(K):
        ok[k] = _linear_device(P, X, xstart[k], counts[k], labels, targets, tstart[k], words[k],
                               epochs, bs, lr, l2, out[k])
    return ok


@cached_njit(nogil=True)
def train_mlp(P, X, xstart, counts, labels, targets, tstart, words, epochs, bs, lr, l2, H, relu,
              out):
    """As train_linear, for the MLP of H hidden units (ReLU when relu, else tanh)."""
    K = counts.shape[0]
    ok = np.empty(K, np.bool_)
    for k in range(K):
        ok[k] = _mlp_device(P, X, xstart[k], counts[k], labels, targets, tstart[k], words[k],
                            epochs, bs, lr, l2, H, relu, out[k])
    return ok


@cached_njit()
def gradient_linear(P, X, labels, targets, l2):
    """The gradient (n_params,) float32 of the mean loss over all rows of X as one batch."""
    n = X.shape[0]
    n_out = P.shape[0] // (X.shape[1] + 1)
    WT = np.empty((n_out, X.shape[1] + 1), np.float32)
    _unpack(WT, P, 0)
    GT = np.empty_like(WT)
    rows = np.arange(n)
    linear_batch(WT, X, rows, n, labels, targets, rows, l2, np.float32(0.0),
                 np.empty((n, n_out), np.float32), np.empty((2, X.shape[1] + 1), np.float32), GT)
    out = np.empty(P.shape[0], np.float32)
    _pack(out, GT, 0)
    return out


@cached_njit()
def gradient_mlp(P, X, labels, targets, l2, H, relu):
    """As gradient_linear, for the MLP of H hidden units."""
    n, F = X.shape
    n_out = (P.shape[0] - (F + 1) * H) // (H + 1)
    W1, W2 = np.empty((H, F + 1), np.float32), np.empty((n_out, H + 1), np.float32)
    _unpack(W1, P, 0)
    _unpack(W2, P, W1.size)
    G1, G2 = np.empty_like(W1), np.empty_like(W2)
    rows = np.arange(n)
    mlp_batch(W1, W2, X, rows, n, labels, targets, rows, l2, np.float32(0.0), relu,
              _mlp_scratch(n, H, n_out, F), G1, G2)
    out = np.empty(P.shape[0], np.float32)
    _pack(out, G1, 0)
    _pack(out, G2, W1.size)
    return out
