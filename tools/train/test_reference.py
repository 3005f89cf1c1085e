"""Fast CPU tests of the Python reference: /usr/bin/python3 -m unittest discover -s tools/train -p 'test_*.py'"""
import math
import os
import sys
import tempfile
import unittest

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from export import export_qtf, load_qtf  # noqa: E402
from model import (Config, Daruan, QTensorFormer, TTLinear, apply_crx, apply_1q, encoder_circuit,  # noqa: E402
                   encoder_circuit_gatewise, entanglement_entropy, expect_z, kernel_feature_state,
                   kernel_feature_state_gatewise, rx, ry, rz, zero_state)
from qtf_format import QtfError, read_qtf, write_qtf  # noqa: E402

D = torch.float64
FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tests", "fixtures")


def tiny_config(**kw):
    base = dict(vocab_size=11, d_model=16, n_layers=2, n_heads=2, d_ff=32, context=8, d_factors=[2, 8],
                ff_factors=[4, 8], tt_rank=4, r_min=1, r_max=4, alpha=2.0, theta=0.4, n_qubits=4, n_qlayers=2)
    base.update(kw)
    return Config(**base)


class TestGates(unittest.TestCase):
    def test_matrices_follow_pennylane(self):
        t = torch.tensor(0.7, dtype=D)
        c, s = math.cos(0.35), math.sin(0.35)
        np.testing.assert_allclose(rx(t).numpy(), [[c, -1j * s], [-1j * s, c]], atol=1e-15)
        np.testing.assert_allclose(ry(t).numpy(), [[c, -s], [s, c]], atol=1e-15)
        np.testing.assert_allclose(rz(t).numpy(), np.diag([np.exp(-0.35j), np.exp(0.35j)]), atol=1e-15)

    def test_wire_zero_is_most_significant(self):
        psi = apply_1q(zero_state((), 3, D), rx(torch.tensor(math.pi, dtype=D)), 0, 3)
        self.assertAlmostEqual(abs(psi[4].item()), 1.0)  # |100>
        np.testing.assert_allclose(expect_z(psi, 3).numpy(), [-1, 1, 1], atol=1e-12)

    def test_crx_acts_only_when_control_is_one(self):
        Q, pi = 3, torch.tensor(math.pi, dtype=D)
        psi0 = apply_crx(zero_state((), Q, D), rx(pi), 0, Q)
        self.assertAlmostEqual(abs(psi0[0].item()), 1.0)
        one = apply_1q(zero_state((), Q, D), rx(pi), 0, Q)  # |100>
        self.assertAlmostEqual(abs(apply_crx(one, rx(pi), 0, Q)[6].item()), 1.0)  # -> |110>


class TestEntropy(unittest.TestCase):
    def test_bounds_and_known_states(self):
        Q = 4
        product = zero_state((), Q, D)
        self.assertAlmostEqual(entanglement_entropy(product, Q).item(), 0.0, places=12)
        # two Bell pairs across the cut (wires 0-2 and 1-3): maximal, Q/2 bits
        bell = torch.zeros(16, dtype=torch.complex128)
        for a in (0, 1):
            for b in (0, 1):
                bell[(a << 3) | (b << 2) | (a << 1) | b] = 0.5
        self.assertAlmostEqual(entanglement_entropy(bell, Q).item(), 2.0, places=12)
        torch.manual_seed(0)
        for Q in (2, 4, 6):
            u = torch.rand(200, Q, dtype=D) * 2 - 1
            _, S = encoder_circuit(u, (torch.rand(2, Q, 3, dtype=D) * 2 - 1) * math.pi, Q)
            self.assertGreaterEqual(S.min().item(), -1e-12)
            self.assertLessEqual(S.max().item(), Q / 2 + 1e-12)


class TestFastCircuitsEqualGatewise(unittest.TestCase):
    def test_encoder_and_kernel_states(self):
        torch.manual_seed(1)
        for Q in (2, 4, 6):
            u = torch.rand(7, Q, dtype=D) * 2 - 1
            p = (torch.rand(3, Q, 3, dtype=D) * 2 - 1) * math.pi
            (z1, s1), (z2, s2) = encoder_circuit(u, p, Q), encoder_circuit_gatewise(u, p, Q)
            self.assertLess((z1 - z2).abs().max().item(), 1e-12)
            self.assertLess((s1 - s2).abs().max().item(), 1e-12)
            var = (torch.rand(3, 2, Q, 3, dtype=D) * 2 - 1) * math.pi
            uk = torch.rand(2, 3, 5, Q, dtype=D) * 2 - 1
            a, b = kernel_feature_state(uk, var, Q), kernel_feature_state_gatewise(uk, var[:, None], Q)
            self.assertLess((a - b).abs().max().item(), 1e-12)
            norms = (a.real ** 2 + a.imag ** 2).sum(-1)
            self.assertLess((norms - 1).abs().max().item(), 1e-12)


class TestTTLinear(unittest.TestCase):
    def test_equals_materialized_dense_at_every_rank(self):
        torch.manual_seed(2)
        for fin, fout, rank in (([4, 4], [8, 4], 5), ([2, 4, 4], [4, 4, 2], 6), ([2, 2, 2, 4], [2, 4, 2, 2], 3)):
            lin = TTLinear(fin, fout, rank).to(D)
            with torch.no_grad():
                lin.bias.normal_()
            x = torch.randn(9, math.prod(fin), dtype=D)
            for r in range(1, max(lin.ranks) + 1):
                W = lin.dense_weight(r)
                y = lin(x, torch.full((9,), r, dtype=torch.long))
                self.assertLess((y - (x @ W.T + lin.bias)).abs().max().item(), 1e-12)
            self.assertLess((lin(x) - (x @ lin.dense_weight().T + lin.bias)).abs().max().item(), 1e-12)

    def test_per_token_ranks(self):
        torch.manual_seed(3)
        lin = TTLinear([2, 4, 4], [4, 2, 4], 4).to(D)
        x = torch.randn(6, 32, dtype=D)
        ranks = torch.tensor([1, 2, 3, 4, 2, 1])
        y = lin(x, ranks)
        for i, r in enumerate(ranks.tolist()):
            self.assertLess((y[i] - (lin.dense_weight(r) @ x[i] + lin.bias)).abs().max().item(), 1e-12)

    def test_mixed_radix_order(self):
        """Rank-1 cores make W a Kronecker product with the first factor most significant."""
        lin = TTLinear([2, 3], [3, 2], 1).to(D)
        with torch.no_grad():
            A, B = torch.randn(3, 2, dtype=D), torch.randn(2, 3, dtype=D)
            lin.cores[0].copy_(A[None, :, :, None])
            lin.cores[1].copy_(B[None, :, :, None])
        self.assertLess((lin.dense_weight() - torch.kron(A, B)).abs().max().item(), 1e-14)


class TestDaruan(unittest.TestCase):
    def test_bloch_form_equals_circuit(self):
        torch.manual_seed(4)
        for depth in (1, 2, 3, 5):
            act = Daruan(13, depth).to(D)
            with torch.no_grad():
                act.w.uniform_(-3, 3)
                act.b.normal_()
            x = torch.linspace(-6, 6, 401, dtype=D)[:, None].expand(401, 13)
            self.assertLess((act.g(x) - act.g_circuit(x)).abs().max().item(), 1e-12)
            self.assertLessEqual(act.g(x).abs().max().item(), 1 + 1e-12)


class TestRouter(unittest.TestCase):
    def test_straight_through_gradient(self):
        """Forward uses the hard gate; the gradient is that of sigmoid((h - theta) / 0.1)."""
        torch.manual_seed(5)
        model = QTensorFormer(tiny_config()).to(D)
        tokens = torch.randint(0, 11, (2, 8))
        _, stats = model(tokens)
        g, h = stats[0]["g"], stats[0]["h"]
        self.assertTrue(torch.equal(g, (h > 0.4).to(D)))
        h_leaf = h.detach().requires_grad_()
        soft = torch.sigmoid((h_leaf - 0.4) / 0.1)
        gst = (h_leaf > 0.4).to(D) + (soft - soft.detach())
        gst.sum().backward()
        np.testing.assert_allclose(h_leaf.grad.numpy(), (soft * (1 - soft) / 0.1).detach().numpy(), atol=1e-12)

    def test_training_step_has_finite_gradients(self):
        torch.manual_seed(6)
        model = QTensorFormer(tiny_config())
        logits, stats = model(torch.randint(0, 11, (2, 8)))
        loss = logits.logsumexp(-1).mean() + sum(s["g"].mean() for s in stats)
        loss.backward()
        for name, p in model.named_parameters():
            self.assertTrue(p.grad is not None and torch.isfinite(p.grad).all(), name)
        self.assertNotEqual(model.blocks[0].enc.weight.grad.abs().sum().item(), 0.0)  # router path trains


class TestFormat(unittest.TestCase):
    def test_round_trip_alignment_and_tamper(self):
        meta = {"a.int": -3, "a.float": 0.25, "a.str": "héllo", "a.ints": [1, 2, 3], "a.floats": [0.5, 1.0],
                "a.strs": ["\n", "x", ""], "a.empty": ""}
        tensors = [("w", np.arange(6, dtype=np.float32).reshape(2, 3)),
                   ("h", np.array([1.5, -2.0, 3.0], dtype=np.float16)), ("z", np.ones((1, 2, 3, 4), np.float32))]
        data = write_qtf(None, meta, tensors)
        m, t = read_qtf(data)
        self.assertEqual(m, meta)
        for name, a in tensors:
            np.testing.assert_array_equal(t[name], a)
        for off in (80, 200, len(data) - 1):
            bad = bytearray(data)
            bad[off] ^= 1
            with self.assertRaisesRegex(QtfError, "checksum"):
                read_qtf(bytes(bad))
        with self.assertRaisesRegex(QtfError, "size"):
            read_qtf(data[:-1])

    def test_model_export_round_trip(self):
        torch.manual_seed(7)
        for cfg in (tiny_config(), tiny_config(tensorized=0, n_qubits=0, activation="gelu", tied_embeddings=0),
                    tiny_config(quantum_attention=0, adaptive_rank=0)):
            model = QTensorFormer(cfg).eval()
            tokens = torch.randint(0, 11, (1, 8))
            with tempfile.TemporaryDirectory() as tmp:
                path = os.path.join(tmp, "m.qtf")
                export_qtf(model, path, [chr(65 + i) for i in range(11)], {"created_by": "test"})
                loaded, meta = load_qtf(path)
            self.assertEqual(meta["tokenizer.type"], "char")
            with torch.no_grad():
                self.assertTrue(torch.equal(model(tokens)[0], loaded(tokens)[0]))


class TestFixtures(unittest.TestCase):
    def test_fixtures_reproduce(self):
        """Every committed fixture still matches the reference (catches drift between the two)."""
        import json
        names = sorted(f[:-5] for f in os.listdir(FIXTURES) if f.endswith(".json"))
        self.assertGreaterEqual(len(names), 7)
        for name in names:
            with open(os.path.join(FIXTURES, name + ".json")) as f:
                doc = json.load(f)
            model, _ = load_qtf(os.path.join(FIXTURES, name + ".qtf"), dtype=D)
            with torch.no_grad():
                logits, stats = model(torch.tensor([doc["tokens"]]))
            self.assertLess(np.abs(logits[0].numpy() - np.array(doc["logits"])).max(), 1e-6, name)
            ranks = [[int(s["rank"][0, t]) for s in stats] for t in range(len(doc["tokens"]))]
            self.assertEqual(ranks, doc["rank"], name)


if __name__ == "__main__":
    unittest.main()
