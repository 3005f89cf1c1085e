"""Reference Q-TensorFormer in PyTorch: the math of docs/model.md, written to be read.

The C++ engine must reproduce this module's forward pass (tests/fixtures hold the numbers). Choices the
spec leaves open, and made here (the engine follows them):
- n_qubits = 0 means no quantum parts at all: e = a, every token is classical, rank = the stored rank.
- quantum_attention = 0 with n_qubits > 0: the router still computes h and the "quantum" decision (it is
  reported), but every token uses classical attention.
- The stored bond rank of TT bond k is min(model.tt.rank, TT maximum of that bond); a token of rank r uses
  bond indices < min(r, r_k).
- The variational layer's CRX angle of the last wire (p[Q-1, 2]) exists in the tensor but is unused.
- The KV rank: keys and values of a token are computed at that token's own rank (they are cached).

Circuits are batched state vectors (complex; complex128 when the model runs in float64). Gates follow
PennyLane's conventions and wire 0 is the most significant bit of the basis index.
"""
import math
from dataclasses import dataclass, asdict, field
from typing import List

import torch
import torch.nn as nn
import torch.nn.functional as F


@dataclass
class Config:
    vocab_size: int = 65
    d_model: int = 128
    n_layers: int = 3
    n_heads: int = 4
    d_ff: int = 512
    context: int = 256
    tensorized: int = 1
    d_factors: List[int] = field(default_factory=lambda: [4, 4, 8])
    ff_factors: List[int] = field(default_factory=lambda: [8, 8, 8])
    tt_rank: int = 8
    r_min: int = 2
    r_max: int = 8
    alpha: float = 1.0
    theta: float = 0.5
    n_qubits: int = 4
    n_qlayers: int = 2
    adaptive_rank: int = 1
    quantum_attention: int = 1
    activation: str = "daruan"
    daruan_depth: int = 3
    tied_embeddings: int = 1
    ln_eps: float = 1e-5
    dropout: float = 0.0  # training only (embeddings and residual branches); not stored in the .qtf

    def to_dict(self):
        return asdict(self)


def dense_baseline(cfg: Config) -> Config:
    """The same width with plain dense linears, GELU and no quantum parts."""
    d = cfg.to_dict()
    d.update(tensorized=0, n_qubits=0, adaptive_rank=0, quantum_attention=0, activation="gelu")
    return Config(**d)


# ---------------------------------------------------------------------------------------------------
# Gates and state vectors. A gate is a [..., 2, 2] complex tensor whose leading dims broadcast against
# the state's batch dims; a state is [..., 2**Q] complex.

def _complex(re, im):
    return torch.complex(re, im)


def rx(t):
    c, s, z = torch.cos(t / 2), torch.sin(t / 2), torch.zeros_like(t)
    return _complex(torch.stack([torch.stack([c, z], -1), torch.stack([z, c], -1)], -2),
                    torch.stack([torch.stack([z, -s], -1), torch.stack([-s, z], -1)], -2))


def ry(t):
    c, s, z = torch.cos(t / 2), torch.sin(t / 2), torch.zeros_like(t)
    return _complex(torch.stack([torch.stack([c, -s], -1), torch.stack([s, c], -1)], -2),
                    torch.stack([torch.stack([z, z], -1), torch.stack([z, z], -1)], -2))


def rz(t):
    c, s, z = torch.cos(t / 2), torch.sin(t / 2), torch.zeros_like(t)
    return _complex(torch.stack([torch.stack([c, z], -1), torch.stack([z, c], -1)], -2),
                    torch.stack([torch.stack([-s, z], -1), torch.stack([z, s], -1)], -2))


def hadamard(dtype):
    h = torch.tensor([[1.0, 1.0], [1.0, -1.0]], dtype=dtype) / math.sqrt(2.0)
    return _complex(h, torch.zeros_like(h))


def _mix(U, s0, s1):
    """(U00 s0 + U01 s1, U10 s0 + U11 s1) with U's batch dims broadcast over s's two trailing dims."""
    u = lambda a, b: U[..., a, b][..., None, None]
    return u(0, 0) * s0 + u(0, 1) * s1, u(1, 0) * s0 + u(1, 1) * s1


def apply_1q(psi, U, wire, Q):
    s = psi.reshape(*psi.shape[:-1], 2 ** wire, 2, 2 ** (Q - wire - 1))
    a, b = _mix(U, s[..., 0, :], s[..., 1, :])
    return torch.stack([a, b], -2).reshape(psi.shape)


def apply_crx(psi, U, control, Q):
    """RX (given as U) on wire control+1 where wire `control` is 1."""
    s = psi.reshape(*psi.shape[:-1], 2 ** control, 2, 2, 2 ** (Q - control - 2))
    off, on = s[..., 0, :, :], s[..., 1, :, :]
    a, b = _mix(U, on[..., 0, :], on[..., 1, :])
    return torch.stack([off, torch.stack([a, b], -2)], -3).reshape(psi.shape)


def zero_state(batch_shape, Q, real_dtype, device=None):
    re = torch.zeros(*batch_shape, 2 ** Q, dtype=real_dtype, device=device)
    re[..., 0] = 1.0
    return _complex(re, torch.zeros_like(re))


def encode(psi, u, Q):
    """Angle encoding E(u): per wire RY(arcsin u_i) then RZ(arccos u_i^2). u: [..., Q] in (-1, 1)."""
    for i in range(Q):
        psi = apply_1q(psi, ry(torch.asin(u[..., i])), i, Q)
        psi = apply_1q(psi, rz(torch.acos(u[..., i] ** 2)), i, Q)
    return psi


def variational_layer(psi, p, Q):
    """p: [..., Q, 3] angles (RX, RZ, CRX) broadcastable to the state's batch dims."""
    for i in range(Q):
        psi = apply_1q(psi, rx(p[..., i, 0]), i, Q)
        psi = apply_1q(psi, rz(p[..., i, 1]), i, Q)
    for i in range(Q - 1):
        psi = apply_crx(psi, rx(p[..., i, 2]), i, Q)
    return psi


def expect_z(psi, Q):
    """<Z_i> for every wire: [..., Q]."""
    prob = psi.real ** 2 + psi.imag ** 2
    out = []
    for i in range(Q):
        pi = prob.reshape(*prob.shape[:-1], 2 ** i, 2, 2 ** (Q - i - 1))
        out.append(pi[..., 0, :].sum((-1, -2)) - pi[..., 1, :].sum((-1, -2)))
    return torch.stack(out, -1)


def entanglement_entropy(psi, Q):
    """Von Neumann entropy (bits) of wires 0..Q/2-1, from the eigenvalues of rho_A = M M^dagger."""
    half = 2 ** (Q // 2)
    M = psi.reshape(*psi.shape[:-1], half, half)
    rho = M @ M.conj().transpose(-1, -2)
    p = torch.linalg.eigvalsh(rho).clamp_min(0.0)
    keep = p >= 1e-12
    # clamp inside the log keeps the gradient finite where p is (nearly) zero; those terms are skipped.
    terms = torch.where(keep, p * torch.log2(p.clamp_min(1e-12)), torch.zeros_like(p))
    return -terms.sum(-1)


# Fast equivalents used by the model (the gate-by-gate functions above are the definition; the tests
# check these against them). Training is bound by kernel launches, so whole layers become one matmul.

def encoding_gates(u):
    """E(u) per wire: RZ(arccos u^2) RY(arcsin u) as [..., Q, 2, 2]."""
    a, b = torch.asin(u) / 2, torch.acos(u ** 2) / 2
    c, s, cb, sb = torch.cos(a), torch.sin(a), torch.cos(b), torch.sin(b)
    re = torch.stack([torch.stack([c * cb, -s * cb], -1), torch.stack([s * cb, c * cb], -1)], -2)
    im = torch.stack([torch.stack([-c * sb, s * sb], -1), torch.stack([s * sb, c * sb], -1)], -2)
    return _complex(re, im)


def encode_zero(u, Q):
    """E(u)|0..0>, a product state: the Kronecker product of each wire's first gate column."""
    col = encoding_gates(u)[..., 0]  # [..., Q, 2]
    psi = col[..., 0, :]
    for i in range(1, Q):
        psi = (psi[..., :, None] * col[..., i, None, :]).reshape(*psi.shape[:-1], -1)
    return psi


def encode_fast(psi, u, Q):
    W = encoding_gates(u)
    for i in range(Q):
        psi = apply_1q(psi, W[..., i, :, :], i, Q)
    return psi


def _kron(A, B):
    """Batched Kronecker product of [..., m, n] and [..., p, q] (A's index most significant)."""
    out = A[..., :, None, :, None] * B[..., None, :, None, :]
    return out.reshape(*out.shape[:-4], A.shape[-2] * B.shape[-2], A.shape[-1] * B.shape[-1])


def variational_unitary(p, Q):
    """The 2^Q x 2^Q matrix of variational_layer(., p, Q); p: [..., Q, 3] (parameters only)."""
    single = rz(p[..., 1]) @ rx(p[..., 0])  # [..., Q, 2, 2]: RX first, then RZ
    U = single[..., 0, :, :]
    for i in range(1, Q):
        U = _kron(U, single[..., i, :, :])
    eye2 = torch.eye(2, dtype=U.dtype, device=U.device)
    P0, P1 = torch.diag(eye2[0]), torch.diag(eye2[1])  # |0><0|, |1><1| on the control
    g = rx(p[..., 2])
    for i in range(Q - 1):
        crx = _kron(P0, eye2) + _kron(P1.expand(g.shape[:-3] + (2, 2)), g[..., i, :, :])
        full = _kron(_kron(torch.eye(2 ** i, dtype=U.dtype, device=U.device), crx),
                     torch.eye(2 ** (Q - i - 2), dtype=U.dtype, device=U.device))
        U = full @ U
    return U


def apply_unitary(psi, U):
    """U psi for states psi [..., n, 2^Q] as rows of a matmul; U [..., 2^Q, 2^Q] batch-broadcast with psi's
    dims before n (so per-head unitaries [H, S, S] apply to states [B, H, T, S] without being copied)."""
    return psi @ U.transpose(-1, -2)


def encoder_circuit(u, qparams, Q):
    """The entropy meter of one block: u [..., Q] -> (z [..., Q], S [...])."""
    psi = encode_zero(u, Q)
    for j in range(qparams.shape[0]):
        psi = apply_unitary(psi, variational_unitary(qparams[j], Q))
    return expect_z(psi, Q), entanglement_entropy(psi, Q)


def kernel_feature_state(u, var, Q):
    """|phi(u)> = V2 E(u) V1 E(u) |0..0>; u: [B, H, T, Q], var: [H, 2, Q, 3] (per head)."""
    psi = apply_unitary(encode_zero(u, Q), variational_unitary(var[..., 0, :, :], Q))
    return apply_unitary(encode_fast(psi, u, Q), variational_unitary(var[..., 1, :, :], Q))


def encoder_circuit_gatewise(u, qparams, Q):
    """encoder_circuit gate by gate, exactly as MODEL.md words it."""
    psi = encode(zero_state(u.shape[:-1], Q, u.dtype, u.device), u, Q)
    for j in range(qparams.shape[0]):
        psi = variational_layer(psi, qparams[j], Q)
    return expect_z(psi, Q), entanglement_entropy(psi, Q)


def kernel_feature_state_gatewise(u, var, Q):
    """kernel_feature_state gate by gate; var: [..., 2, Q, 3] broadcastable to u's batch dims."""
    psi = zero_state(u.shape[:-1], Q, u.dtype, u.device)
    psi = variational_layer(encode(psi, u, Q), var[..., 0, :, :], Q)
    return variational_layer(encode(psi, u, Q), var[..., 1, :, :], Q)


# ---------------------------------------------------------------------------------------------------
# Linears

def tt_bond_ranks(out_factors, in_factors, rank):
    """[1, r_1, .., r_{K-1}, 1]: each internal bond is min(rank, the TT maximum of that bond)."""
    sizes = [m * n for m, n in zip(out_factors, in_factors)]
    ranks = [1]
    for k in range(1, len(sizes)):
        left, right = math.prod(sizes[:k]), math.prod(sizes[k:])
        ranks.append(min(rank, left, right))
    return ranks + [1]


class RankPlan:
    """Tokens grouped by rank, shared by all linears of a block: the distinct ranks (ints), the
    permutation that sorts tokens by rank, its inverse, and the group sizes."""

    def __init__(self, rank):
        flat = rank.reshape(-1)
        uniq, counts = torch.unique(flat, return_counts=True)
        self.ranks, self.sizes = uniq.tolist(), counts.tolist()
        if len(self.ranks) > 1:
            self.perm = torch.sort(flat)[1]
            self.inv = torch.empty_like(self.perm)
            self.inv[self.perm] = torch.arange(flat.numel(), device=flat.device)


class TTLinear(nn.Module):
    """y = W x + b with W a TT-matrix; cores[k]: [r_{k-1}, m_k, n_k, r_k], first factor most significant.
    `ranks` (optional) gives every bond explicitly ([1, r_1, .., r_{K-1}, 1], e.g. from TT-SVD with a
    per-matrix error target); the engine reads bond ranks from the core shapes."""

    def __init__(self, in_factors, out_factors, rank, ranks=None):
        super().__init__()
        self.in_factors, self.out_factors = list(in_factors), list(out_factors)
        self.ranks = list(ranks) if ranks is not None else tt_bond_ranks(out_factors, in_factors, rank)
        n_in, n_out = math.prod(in_factors), math.prod(out_factors)
        # Each entry of W sums prod(r) products of K core entries: pick the core std so W's std is
        # 1/sqrt(N) at full stored rank.
        K = len(in_factors)
        core_std = (1.0 / (n_in * math.prod(self.ranks))) ** (1.0 / (2 * K))
        self.cores = nn.ParameterList([
            nn.Parameter(torch.randn(self.ranks[k], out_factors[k], in_factors[k], self.ranks[k + 1]) * core_std)
            for k in range(K)])
        self.bias = nn.Parameter(torch.zeros(n_out))

    def forward_tt(self, x, rank=None):
        """The TT contraction core by core (the definition). x: [..., N]; rank: None (stored ranks) or a long tensor of x's leading shape (per token)."""
        lead = x.shape[:-1]
        t = x.reshape(-1, math.prod(self.in_factors))
        r = None if rank is None else rank.reshape(-1, 1)
        B = t.shape[0]
        # t: [B, inputs not yet contracted, bond, outputs already produced]; contract the last core first.
        t = t.reshape(B, -1, 1, 1)
        for k in reversed(range(len(self.cores))):
            G = self.cores[k]
            t = t.reshape(B, t.shape[1] // G.shape[2], G.shape[2], G.shape[3], t.shape[3])
            t = torch.einsum("bpnrs,amnr->bpams", t, G)
            t = t.reshape(B, t.shape[1], G.shape[0], -1)
            if r is not None and k > 0:  # truncate the bond to the token's rank
                keep = (torch.arange(G.shape[0], device=x.device)[None, :] < r).to(t.dtype)
                t = t * keep[:, None, :, None]
        return t.reshape(*lead, -1) + self.bias

    def dense_weight(self, rank=None):
        """The materialized W [M, N] at a given rank (tests and parameter studies)."""
        W = torch.ones(1, 1, 1, dtype=self.cores[0].dtype, device=self.cores[0].device)  # [rows, cols, bond]
        for G in self.cores:
            a = G.shape[0] if rank is None else min(rank, G.shape[0])
            g = G[:a]
            W = torch.einsum("xya,amnb->xmynb", W[..., :a], g)
            W = W.reshape(W.shape[0] * W.shape[1], W.shape[2] * W.shape[3], -1)
        return W[..., 0]

    def weights_at(self, rank_list):
        """[len(rank_list), M, N]: W truncated to each rank of rank_list (ints), in one einsum chain."""
        dev = self.cores[0].device
        R = torch.tensor(rank_list, device=dev)[:, None]
        W = self.cores[0][0][None]  # [U, rows, cols, bond]
        for k in range(1, len(self.cores)):
            keep = (torch.arange(W.shape[-1], device=dev)[None, :] < R).to(W.dtype)  # bond k truncated to r
            W = torch.einsum("uxya,amnb->uxmynb", W * keep[:, None, None, :], self.cores[k])
            W = W.reshape(W.shape[0], W.shape[1] * W.shape[2], W.shape[3] * W.shape[4], W.shape[5])
        return W[..., 0]

    def forward(self, x, rank=None, plan=None):
        """x: [..., N]. rank: None (stored ranks) or a long tensor of x's leading shape (per token);
        plan: a RankPlan of the same tokens (the fast path used in training: one dense matmul per distinct
        rank with the materialized W_r, which is the same function as forward_tt)."""
        if plan is None and rank is not None:
            plan = RankPlan(rank)
        if plan is None or len(plan.ranks) == 1:
            W = self.weights_at([max(self.ranks) if plan is None else plan.ranks[0]])[0]
            return F.linear(x, W, self.bias)
        Ws = self.weights_at(plan.ranks)
        lead = x.shape[:-1]
        xs = x.reshape(-1, x.shape[-1])[plan.perm].split(plan.sizes)
        y = torch.cat([F.linear(c, Ws[i]) for i, c in enumerate(xs)])[plan.inv]
        return y.reshape(*lead, -1) + self.bias

    def n_params(self):
        return sum(c.numel() for c in self.cores) + self.bias.numel()


class DenseLinear(nn.Linear):
    def __init__(self, n_in, n_out):
        super().__init__(n_in, n_out)
        nn.init.normal_(self.weight, std=1.0 / math.sqrt(n_in))
        nn.init.zeros_(self.bias)

    def forward(self, x, rank=None, plan=None):
        return F.linear(x, self.weight, self.bias)


# ---------------------------------------------------------------------------------------------------
# DARUAN activation

class Daruan(nn.Module):
    """act_c(x) = a_c g_c(x) + e_c + s_c x sigmoid(x), g_c = <Z> of a one-qubit re-uploading circuit:
    |0>, H; for l < D: RZ(t[c,l,0]) RY(t[c,l,1]) RZ(w[c,l] x + b[c,l]); then RZ(t[c,D,0]) RY(t[c,D,1]).

    forward() tracks the Bloch vector (exact: each gate is a rotation of the sphere; H|0> = +x);
    circuit() simulates the state vector. Both are the same function (tested)."""

    def __init__(self, channels, depth):
        super().__init__()
        self.depth = depth
        self.theta = nn.Parameter((torch.rand(channels, depth + 1, 2) * 2 - 1) * math.pi)
        self.w = nn.Parameter(torch.ones(channels, depth))
        self.b = nn.Parameter(torch.zeros(channels, depth))
        self.a = nn.Parameter(torch.ones(channels))
        self.e = nn.Parameter(torch.zeros(channels))
        self.s = nn.Parameter(torch.ones(channels))

    @staticmethod
    def _rz(X, Y, Z, t):
        c, s = torch.cos(t), torch.sin(t)
        return c * X - s * Y, s * X + c * Y, Z

    @staticmethod
    def _ry(X, Y, Z, t):
        c, s = torch.cos(t), torch.sin(t)
        return c * X + s * Z, Y, c * Z - s * X

    def g_gatewise(self, x):
        """g rotation by rotation (the definition in Bloch form)."""
        X, Y, Z = torch.ones_like(x), torch.zeros_like(x), torch.zeros_like(x)
        t = self.theta
        for l in range(self.depth):
            X, Y, Z = self._rz(X, Y, Z, t[:, l, 0])
            X, Y, Z = self._ry(X, Y, Z, t[:, l, 1])
            X, Y, Z = self._rz(X, Y, Z, self.w[:, l] * x + self.b[:, l])
        X, Y, Z = self._rz(X, Y, Z, t[:, self.depth, 0])
        X, Y, Z = self._ry(X, Y, Z, t[:, self.depth, 1])
        return Z

    def g(self, x):
        """g with the data-independent rotations folded: RY(t1) RZ(t0) is one per-channel 3x3 matrix, the
        first one acts on the constant +x so it is a per-channel vector, and only Z of the last one is kept."""
        t = self.theta
        c0, s0, c1, s1 = torch.cos(t[..., 0]), torch.sin(t[..., 0]), torch.cos(t[..., 1]), torch.sin(t[..., 1])
        # rows of M_l = RY(t[l,1]) RZ(t[l,0]), each [channels, depth + 1]
        m00, m01, m02 = c1 * c0, -c1 * s0, s1
        m10, m11 = s0, c0
        m20, m21, m22 = -s1 * c0, s1 * s0, c1
        X, Y, Z = m00[:, 0], m10[:, 0], m20[:, 0]  # M_0 (1, 0, 0)
        for l in range(self.depth):
            if l > 0:
                X, Y, Z = (m00[:, l] * X + m01[:, l] * Y + m02[:, l] * Z, m10[:, l] * X + m11[:, l] * Y,
                           m20[:, l] * X + m21[:, l] * Y + m22[:, l] * Z)
            phi = self.w[:, l] * x + self.b[:, l]
            c, s = torch.cos(phi), torch.sin(phi)
            X, Y = c * X - s * Y, s * X + c * Y
        D = self.depth
        return m20[:, D] * X + m21[:, D] * Y + m22[:, D] * Z

    def g_circuit(self, x):
        """The same g by state-vector simulation, x: [..., channels]."""
        psi = apply_1q(zero_state(x.shape, 1, x.dtype, x.device), hadamard(x.dtype), 0, 1)
        t = self.theta
        for l in range(self.depth):
            psi = apply_1q(psi, rz(t[:, l, 0]), 0, 1)
            psi = apply_1q(psi, ry(t[:, l, 1]), 0, 1)
            psi = apply_1q(psi, rz(self.w[:, l] * x + self.b[:, l]), 0, 1)
        psi = apply_1q(psi, rz(t[:, self.depth, 0]), 0, 1)
        psi = apply_1q(psi, ry(t[:, self.depth, 1]), 0, 1)
        return expect_z(psi, 1)[..., 0]

    def forward(self, x):
        return self.a * self.g(x) + self.e + self.s * x * torch.sigmoid(x)


# ---------------------------------------------------------------------------------------------------
# The model

class Block(nn.Module):
    def __init__(self, cfg: Config):
        super().__init__()
        self.cfg = cfg
        d, Q, H = cfg.d_model, cfg.n_qubits, cfg.n_heads
        self.ln1 = nn.LayerNorm(d, eps=cfg.ln_eps)
        self.ln2 = nn.LayerNorm(d, eps=cfg.ln_eps)
        if Q > 0:
            self.enc = nn.Linear(d, Q)
            nn.init.normal_(self.enc.weight, std=1.0 / math.sqrt(d))
            self.qparams = nn.Parameter((torch.rand(cfg.n_qlayers, Q, 3) * 2 - 1) * math.pi)
            self.qout = nn.Linear(Q, d)
            nn.init.normal_(self.qout.weight, std=0.02)
            nn.init.zeros_(self.qout.bias)

        def linear(n_in, n_out, f_in, f_out):
            return TTLinear(f_in, f_out, cfg.tt_rank) if cfg.tensorized else DenseLinear(n_in, n_out)

        df, ff = cfg.d_factors, cfg.ff_factors
        self.q, self.k, self.v, self.o = (linear(d, d, df, df) for _ in range(4))
        self.up = linear(d, cfg.d_ff, df, ff)
        self.down = linear(cfg.d_ff, d, ff, df)
        if Q > 0 and cfg.quantum_attention:
            self.w_qk = nn.Parameter(torch.randn(H, Q, d // H) / math.sqrt(d // H))
            self.qvar = nn.Parameter((torch.rand(H, 2, Q, 3) * 2 - 1) * math.pi)
            self.beta = nn.Parameter(torch.full((H,), 4.0))
        self.act = Daruan(cfg.d_ff, cfg.daruan_depth) if cfg.activation == "daruan" else None

    def forward(self, x):
        cfg, Q = self.cfg, self.cfg.n_qubits
        B, T, d = x.shape
        H, dh = cfg.n_heads, d // cfg.n_heads
        a = self.ln1(x)
        stats = {}
        if Q > 0:
            u = torch.tanh(self.enc(a))
            if self.training:  # keep asin/acos gradients finite where tanh saturates in float
                u = u.clamp(-1 + 1e-6, 1 - 1e-6)
            z, S = encoder_circuit(u, self.qparams, Q)
            S = S.to(a.dtype)
            e = a + self.qout(z.to(a.dtype))
            h = S / (Q / 2)
            if cfg.adaptive_rank:
                rank = (cfg.r_min + torch.floor(cfg.alpha * S)).long().clamp(cfg.r_min, cfg.r_max)
            else:
                rank = torch.full((B, T), cfg.tt_rank, dtype=torch.long, device=x.device)
            hard = (h > cfg.theta).to(a.dtype)
            soft = torch.sigmoid((h - cfg.theta) / 0.1)
            g = hard + (soft - soft.detach())  # straight-through: value is exactly `hard`
            stats.update(S=S, h=h, quantum=hard, g=g)
        else:
            e = a
            rank = torch.full((B, T), cfg.tt_rank, dtype=torch.long, device=x.device)
            g = None
        stats["rank"] = rank
        # tokens grouped by rank once for the six linears (fixed rank: one plain matmul each)
        plan = RankPlan(rank) if cfg.tensorized and Q > 0 and cfg.adaptive_rank else None
        drop = (lambda t: F.dropout(t, cfg.dropout, True)) if self.training and cfg.dropout > 0 else (lambda t: t)

        def heads(t):
            return t.view(B, T, H, dh).transpose(1, 2)  # [B, H, T, dh]

        q, k, v = heads(self.q(e, plan=plan)), heads(self.k(e, plan=plan)), heads(self.v(e, plan=plan))
        causal = torch.ones(T, T, dtype=torch.bool, device=x.device).tril()
        if hasattr(F, "scaled_dot_product_attention") and x.dtype != torch.float64:
            out = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        else:  # torch 1.x, and float64 references
            scores = (q @ k.transpose(-1, -2)) / math.sqrt(dh)
            out = torch.softmax(scores.masked_fill(~causal, float("-inf")), -1) @ v
        if g is not None and cfg.quantum_attention:
            u_qk = torch.tanh(torch.einsum("bhtd,hqd->bhtq", torch.cat([q, k], 2), self.w_qk))
            if self.training:
                u_qk = u_qk.clamp(-1 + 1e-6, 1 - 1e-6)
            phi_q, phi_k = kernel_feature_state(u_qk, self.qvar, Q).split(T, 2)  # queries and keys at once
            ov = phi_q.conj() @ phi_k.transpose(-1, -2)  # <phi(q_t)|phi(k_j)>
            kern = (ov.real ** 2 + ov.imag ** 2).to(x.dtype)
            qscores = self.beta[None, :, None, None] * kern
            qout = torch.softmax(qscores.masked_fill(~causal, float("-inf")), -1) @ v
            gq = g[:, None, :, None]
            out = gq * qout + (1 - gq) * out
        x = x + drop(self.o(out.transpose(1, 2).reshape(B, T, d), plan=plan))

        b = self.ln2(x)
        hid = self.up(b, plan=plan)
        hid = self.act(hid) if self.act is not None else F.gelu(hid)
        x = x + drop(self.down(hid, plan=plan))
        return x, stats


class QTensorFormer(nn.Module):
    def __init__(self, cfg: Config):
        super().__init__()
        self.cfg = cfg
        self.tok_emb = nn.Embedding(cfg.vocab_size, cfg.d_model)
        self.pos_emb = nn.Embedding(cfg.context, cfg.d_model)
        nn.init.normal_(self.tok_emb.weight, std=0.02)
        nn.init.normal_(self.pos_emb.weight, std=0.02)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layers))
        self.lnf = nn.LayerNorm(cfg.d_model, eps=cfg.ln_eps)
        if not cfg.tied_embeddings:
            self.head = nn.Parameter(torch.randn(cfg.vocab_size, cfg.d_model) * 0.02)

    def head_weight(self):
        return self.tok_emb.weight if self.cfg.tied_embeddings else self.head

    def forward(self, tokens):
        """tokens [B, T] -> logits [B, T, V], and per layer a dict of per-token S, h, quantum, g, rank."""
        T = tokens.shape[1]
        x = self.tok_emb(tokens) + self.pos_emb(torch.arange(T, device=tokens.device))
        if self.training and self.cfg.dropout > 0:
            x = F.dropout(x, self.cfg.dropout, True)
        stats = []
        for blk in self.blocks:
            x, st = blk(x)
            stats.append(st)
        return F.linear(self.lnf(x), self.head_weight()), stats

    def param_counts(self):
        total = sum(p.numel() for p in self.parameters())
        block = sum(p.numel() for p in self.blocks.parameters())
        return total, block
