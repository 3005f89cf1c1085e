#!/usr/bin/python3
"""Golden vectors for engine/quantum from an independent implementation: QuTiP 4.7.1 (dense operators on
the full register, qutip's own rx/ry/rz/cnot/snot, ptrace and entropy_vn).

Run with Debian's interpreter (the only one with qutip):
    /usr/bin/python3 tools/quantum_golden/gen_golden.py
Writes tests/quantum/golden/{circuits,encoder,features,daruan}.txt (whitespace-separated tokens, '#'
lines are comments; the layouts are described at the top of each file). Deterministic (fixed seeds).
Conventions (MODEL.md): PennyLane gates, RZ(t) = diag(e^{-it/2}, e^{it/2}); wire 0 is the most
significant bit, which is qutip's tensor order (the first factor is the leftmost index)."""
import os

import numpy as np
import qutip
from qutip.qip.operations import cnot, rx, ry, rz, snot

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tests", "quantum", "golden")


def check_conventions():
    t = 0.7
    c, s = np.cos(t / 2), np.sin(t / 2)
    assert np.allclose(rx(t).full(), [[c, -1j * s], [-1j * s, c]])
    assert np.allclose(ry(t).full(), [[c, -s], [s, c]])
    assert np.allclose(rz(t).full(), np.diag([np.exp(-1j * t / 2), np.exp(1j * t / 2)]))
    # Wire 0 is the most significant bit: X on wire 0 of |00> gives |10> = basis index 2.
    psi = qutip.tensor(qutip.sigmax(), qutip.qeye(2)) * qutip.tensor(qutip.basis(2, 0), qutip.basis(2, 0))
    assert abs(psi.full()[2, 0] - 1) < 1e-12
    # PennyLane's Rot(phi, theta, omega) matrix equals RZ(omega) RY(theta) RZ(phi).
    phi, th, om = 0.3, -1.1, 2.0
    c, s = np.cos(th / 2), np.sin(th / 2)
    pl = np.array([[np.exp(-0.5j * (phi + om)) * c, -np.exp(0.5j * (phi - om)) * s],
                   [np.exp(-0.5j * (phi - om)) * s, np.exp(0.5j * (phi + om)) * c]])
    assert np.allclose((rz(om) * ry(th) * rz(phi)).full(), pl)


def crx(Q, control, target, t):
    """CRX as |0><0|_c (x) I + |1><1|_c (x) RX(t)_t on the full register."""
    def op(ctrl_proj, tgt):
        return qutip.tensor([ctrl_proj if w == control else (tgt if w == target else qutip.qeye(2))
                             for w in range(Q)])
    p0, p1 = qutip.basis(2, 0).proj(), qutip.basis(2, 1).proj()
    return op(p0, qutip.qeye(2)) + op(p1, rx(t))


def gate_op(Q, g):
    name, args = g[0], g[1:]
    if name == "RX": return rx(args[1], Q, args[0])
    if name == "RY": return ry(args[1], Q, args[0])
    if name == "RZ": return rz(args[1], Q, args[0])
    if name == "H": return snot(Q, args[0])
    if name == "CNOT": return cnot(Q, args[0], args[1])
    if name == "CRX": return crx(Q, args[0], args[1], args[2])
    if name == "ROT":
        w, phi, th, om = args
        return rz(om, Q, w) * ry(th, Q, w) * rz(phi, Q, w)
    raise ValueError(name)


def zero(Q):
    return qutip.tensor([qutip.basis(2, 0)] * Q)


def z_expect(Q, psi):
    return [qutip.expect(qutip.tensor([qutip.sigmaz() if w == i else qutip.qeye(2) for w in range(Q)]), psi)
            for i in range(Q)]


def entropy(Q, psi):
    if Q < 2: return 0.0
    return qutip.entropy_vn(psi.ptrace(list(range(Q // 2))), base=2)


def f32(v):
    """Inputs are rounded to float32 first: the engine reads them as float, so the golden outputs are the
    exact results for exactly the inputs it sees."""
    return float(np.float32(v)) if np.isscalar(v) else np.asarray(v, np.float32).astype(np.float64)


def fmt(values):
    return " ".join("%.10g" % v for v in values)


def state_lines(psi):
    a = psi.full().ravel()
    return ["%.10g %.10g" % (x.real, x.imag) for x in a]


def random_gate(rng, Q):
    kinds = ["RX", "RY", "RZ", "H", "ROT"] + (["CNOT", "CRX", "CRX"] if Q > 1 else [])
    k = kinds[rng.integers(len(kinds))]
    ang = lambda: f32(rng.uniform(-np.pi, np.pi) * 1.3)
    w = int(rng.integers(Q))
    if k in ("RX", "RY", "RZ"): return (k, w, ang())
    if k == "H": return (k, w)
    if k == "ROT": return (k, w, ang(), ang(), ang())
    c, t = (int(x) for x in rng.choice(Q, size=2, replace=False))
    return ("CNOT", c, t) if k == "CNOT" else ("CRX", c, t, ang())


def gen_circuits(rng):
    lines = ["# circuit Q n_gates; n_gates lines: RX|RY|RZ wire angle, H wire, CNOT control target,",
             "# CRX control target angle, ROT wire phi theta omega; then 'state' and 2^Q lines 're im'",
             "# (basis order, wire 0 = most significant bit); 'z' Q values <Z_i>; 'entropy' S (bits, wires",
             "# 0..Q/2-1, qutip ptrace + entropy_vn base 2)."]
    for Q, count in ((2, 6), (4, 6), (6, 4), (8, 3)):
        for _ in range(count):
            gates = [random_gate(rng, Q) for _ in range(int(rng.integers(4 * Q, 8 * Q)))]
            psi = zero(Q)
            for g in gates: psi = gate_op(Q, g) * psi
            lines.append("circuit %d %d" % (Q, len(gates)))
            lines += [" ".join([g[0]] + [str(x) if isinstance(x, int) else "%.10g" % x for x in g[1:]])
                      for g in gates]
            lines.append("state")
            lines += state_lines(psi)
            lines.append("z " + fmt(z_expect(Q, psi)))
            lines.append("entropy %.10g" % entropy(Q, psi))
    return lines


def encoding(Q, u, psi):
    for i in range(Q):
        psi = rz(np.arccos(u[i] ** 2), Q, i) * ry(np.arcsin(u[i]), Q, i) * psi
    return psi


def variational(Q, p, psi):
    """p: [Q][3] angles (RX, RZ, CRX); CRX(p[i][2]) on (i, i+1) for i = 0..Q-2."""
    for i in range(Q):
        psi = rz(p[i][1], Q, i) * rx(p[i][0], Q, i) * psi
    for i in range(Q - 1):
        psi = crx(Q, i, i + 1, p[i][2]) * psi
    return psi


def gen_encoder(rng):
    lines = ["# encoder Q n_qlayers; 'u' Q values; 'params' n_qlayers*Q*3 values ([layer][wire][RX, RZ, CRX]);",
             "# 'z' Q values; 'entropy' S (bits)."]
    for Q in (2, 4, 6, 8):
        for L in (0, 1, 2, 3):
            u = f32(rng.uniform(-0.999, 0.999, Q))
            p = f32(rng.uniform(-np.pi, np.pi, (L, Q, 3)))
            psi = encoding(Q, u, zero(Q))
            for j in range(L): psi = variational(Q, p[j], psi)
            lines += ["encoder %d %d" % (Q, L), "u " + fmt(u), "params " + fmt(p.ravel()),
                      "z " + fmt(z_expect(Q, psi)), "entropy %.10g" % entropy(Q, psi)]
    return lines


def gen_features(rng):
    lines = ["# features Q K; K blocks: 'u' Q values, 'var' 2*Q*3 values (V1 then V2, [wire][RX, RZ, CRX]),",
             "# 'state' and 2^Q lines 're im' of V2 E(u) V1 E(u)|0..0>; then 'fidelity' K*K values",
             "# |<phi_a|phi_b>|^2 (row-major)."]
    for Q in (2, 4, 6, 8):
        K = 3
        lines.append("features %d %d" % (Q, K))
        states = []
        for k in range(K):
            u = f32(rng.uniform(-0.999, 0.999, Q))
            var = f32(rng.uniform(-np.pi, np.pi, (2, Q, 3)))
            if k == 2:  # a near neighbour of state 1, so fidelities are not all small
                u = f32(np.clip(u_prev + rng.normal(0, 0.05, Q), -0.999, 0.999))
                var = var_prev
            u_prev, var_prev = u, var
            psi = variational(Q, var[1], encoding(Q, u, variational(Q, var[0], encoding(Q, u, zero(Q)))))
            states.append(psi)
            lines += ["u " + fmt(u), "var " + fmt(var.ravel()), "state"] + state_lines(psi)
        fid = [abs(a.overlap(b)) ** 2 for a in states for b in states]
        lines.append("fidelity " + fmt(fid))
    return lines


def daruan_g(theta, w, b, x):
    """<Z> of |0>, H; for l < D: RZ(t[l,0]) RY(t[l,1]) RZ(w_l x + b_l); RZ(t[D,0]) RY(t[D,1])."""
    D = len(w)
    psi = snot() * qutip.basis(2, 0)
    for l in range(D):
        psi = rz(w[l] * x + b[l]) * ry(theta[l][1]) * rz(theta[l][0]) * psi
    psi = ry(theta[D][1]) * rz(theta[D][0]) * psi
    return qutip.expect(qutip.sigmaz(), psi)


def gen_daruan(rng):
    lines = ["# daruan D C NX; 'theta' C*(D+1)*2 values, 'w' C*D, 'b' C*D; 'x' NX values; 'g' C*NX values",
             "# (g[c][k] = <Z> of channel c's circuit at x[k])."]
    for D in (1, 2, 3, 4):
        C, NX = 3, 25
        theta = f32(rng.uniform(-np.pi, np.pi, (C, D + 1, 2)))
        w = f32(rng.normal(0, 1.0, (C, D)))
        b = f32(rng.normal(0, 0.5, (C, D)))
        x = f32(np.linspace(-8, 8, NX))
        g = [daruan_g(theta[c], w[c], b[c], xk) for c in range(C) for xk in x]
        lines += ["daruan %d %d %d" % (D, C, NX), "theta " + fmt(theta.ravel()), "w " + fmt(w.ravel()),
                  "b " + fmt(b.ravel()), "x " + fmt(x), "g " + fmt(g)]
    return lines


def main():
    check_conventions()
    os.makedirs(OUT, exist_ok=True)
    rng = np.random.default_rng(20240611)
    for name, gen in (("circuits", gen_circuits), ("encoder", gen_encoder), ("features", gen_features),
                      ("daruan", gen_daruan)):
        path = os.path.join(OUT, name + ".txt")
        with open(path, "w") as f:
            f.write("\n".join(gen(rng)) + "\n")
        print("wrote", os.path.normpath(path), os.path.getsize(path), "bytes")


if __name__ == "__main__":
    main()
