"""Error-compensated rounding of a matrix to 32-value blocks with an f16 scale each (the q4/q3 files' blocks),
weighted by its layer's calibration inputs (issue 27; docs/llama.md "Rounding by the calibration inputs").

    d, q, master = round_blocks(W, H, lo, hi, scale="search", propagate=True)

W [M, N] (out x in) float; H [N, N] = X^T X of the layer's inputs X [n, N] on calibration text. Blocks run
along each row (32 columns). The result: scales d [M, nb] (f16 values as f32) and codes q [M, nb * 32]
(int8 in [lo, hi], 0 in the padding), the stored values d * q; master [M, N]: each value as it was when
rounded (W itself without propagation), which rounds to q at d, where healing's float masters start.

- propagate=False: each block's scale is chosen by a search weighted by the inputs' second moments h = diag(H)
  (llama.cpp's importance matrix: minimise sum_j h_j (w_j - d q_j)^2 instead of the plain squared error),
  and the values are rounded to the nearest code.
- propagate=True: GPTQ (arXiv 2210.17323): the columns are rounded in order, each column's rounding error
  spread over the columns not yet rounded through the Cholesky factor of H^-1 (damped), in blocks of 32
  columns (the update of the later columns done once per block); a block's scale is chosen, by the same
  weighted search, from its columns as they are when the block is reached.
scale: "search" (the trial scales of the engine's search, engine/host/quantize.cpp, plus a weighted
least-squares refit) or "absmax" (max / lo, q3a's rule). snap(b, d) -> d': each column block's chosen scales
moved onto a coarser grid before its columns are rounded (q4s/q3s: the nearest s D of the block's group).
"""
import numpy as np
import torch

BLOCK = 32
# trial scales max / t for t around the two ends of [lo, hi] (qtf_format's _LO_TRIALS / _HI_TRIALS)
LO_TRIALS = (-0.5, -0.25, 0.25, 0.5, 0.75, 1.0)
HI_TRIALS = (-0.25, 0.0, 0.25, 0.5)


def f16(x):
    return x.to(torch.float16).to(x.dtype)


def block_scales(v, h, lo, hi, scale="search"):
    """v [B, 32] values, h [B, 32] weights (>= 0) -> d [B] (f16 values) minimising sum h (v - d round(v/d))^2
    over the trial scales and the weighted least-squares refit of the best codes; all-zero blocks get 0."""
    v, h = v.double(), h.double()
    mx = v.gather(1, v.abs().argmax(1, keepdim=True))[:, 0]

    def codes(d):
        safe = torch.where(d == 0, torch.ones_like(d), d)
        return torch.where(d[:, None] == 0, torch.zeros_like(v), (v / safe[:, None]).round().clamp(lo, hi))

    def err(d, q):
        return (h * (v - d[:, None] * q) ** 2).sum(1)

    best_d = f16(mx / lo)
    if scale == "absmax":
        return best_d
    best = err(best_d, codes(best_d))
    trials = [lo + t for t in LO_TRIALS] + [hi + t for t in HI_TRIALS]
    for t in trials + [None]:
        q = codes(best_d) if t is None else codes(f16(mx / t))
        hq = h * q
        den = (hq * q).sum(1)
        d = f16((hq * v).sum(1) / torch.where(den > 0, den, torch.ones_like(den)))
        d = torch.where(den > 0, d, best_d)
        e = err(d, codes(d))
        win = (e < best) & (mx != 0) & torch.isfinite(d)
        best, best_d = torch.where(win, e, best), torch.where(win, d, best_d)
    return best_d


def round_blocks(W, H, lo, hi, scale="search", propagate=True, damp=0.01, snap=None):
    """-> (d [M, nb] float32, q [M, nb * 32] int8, master [M, N] float32): see the module's docstring."""
    W = torch.as_tensor(np.asarray(W), dtype=torch.float64).clone()
    H = torch.as_tensor(np.asarray(H), dtype=torch.float64).clone()
    M, N = W.shape
    if H.shape != (N, N):
        raise ValueError("H is %s, the matrix has %d columns" % (tuple(H.shape), N))
    nb = (N + BLOCK - 1) // BLOCK
    dead = torch.diagonal(H) <= 0  # an input that is always 0: its column does not matter, round it as it is
    H[dead, dead] = 1.0
    hdiag = torch.diagonal(H).clone()
    d_out = torch.zeros(M, nb, dtype=torch.float64)
    q_out = torch.zeros(M, nb * BLOCK, dtype=torch.float64)
    master = W.clone()
    if propagate:
        H += damp * hdiag.mean() * torch.eye(N, dtype=torch.float64)
        Hinv = torch.linalg.cholesky(torch.cholesky_inverse(torch.linalg.cholesky(H)), upper=True)
    for b in range(nb):
        c0, c1 = b * BLOCK, min(N, (b + 1) * BLOCK)
        n = c1 - c0
        v = torch.zeros(M, BLOCK, dtype=torch.float64)
        v[:, :n] = W[:, c0:c1]
        h = torch.zeros(M, BLOCK, dtype=torch.float64)
        h[:, :n] = hdiag[c0:c1][None, :]
        d = block_scales(v, h, lo, hi, scale)
        if snap is not None:  # the stored scales are a coarser grid (q4s/q3s: s D): the block's nearest on it
            d = torch.as_tensor(snap(b, d.numpy()), dtype=torch.float64)
        d_out[:, b] = d
        safe = torch.where(d == 0, torch.ones_like(d), d)
        if not propagate:
            q = torch.where(d[:, None] == 0, torch.zeros_like(v), (v / safe[:, None]).round().clamp(lo, hi))
            q_out[:, c0:c0 + BLOCK] = q
            continue
        W1 = W[:, c0:c1].clone()
        E = torch.zeros(M, n, dtype=torch.float64)
        Hi = Hinv[c0:c1, c0:c1]
        for i in range(n):
            w = W1[:, i]
            q = torch.where(d == 0, torch.zeros_like(w), (w / safe).round().clamp(lo, hi))
            q_out[:, c0 + i] = q
            master[:, c0 + i] = w
            e = (w - d * q) / Hi[i, i]
            W1[:, i:] -= e[:, None] * Hi[i, i:][None, :]
            E[:, i] = e
        W[:, c1:] -= E @ Hinv[c0:c1, c1:]
    return d_out.float(), q_out.to(torch.int8), master.float()


def weighted_error(W, V, H):
    """sum over rows of (w - v) H (w - v)^T: the squared error of the layer's outputs on the calibration
    inputs whose X^T X is H."""
    E = torch.as_tensor(np.asarray(W), dtype=torch.float64) - torch.as_tensor(np.asarray(V), dtype=torch.float64)
    return float(((E @ torch.as_tensor(np.asarray(H), dtype=torch.float64)) * E).sum())


def dequantize(d, q, cols):
    """d [M, nb], q [M, nb * 32] -> the stored values [M, cols] (float32, as the engine computes them)."""
    d = torch.as_tensor(d, dtype=torch.float32)
    q = torch.as_tensor(q).float()
    M, nb = d.shape
    return (q.view(M, nb, BLOCK) * d[:, :, None]).view(M, nb * BLOCK)[:, :cols]
