"""Tests of compress.py (TT-SVD, rank allocation, teacher -> student, healing) and of the trainer's fast
paths against their definitions: /usr/bin/python3 -m unittest discover -s tools/train -p 'test_*.py'"""
import os
import sys
import tempfile
import unittest

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import compress  # noqa: E402
import train  # noqa: E402
from export import export_qtf, load_qtf, trim_unused  # noqa: E402
from model import Config, Daruan, QTensorFormer, TTLinear, tt_bond_ranks  # noqa: E402

D = torch.float64


def tiny_dense(**kw):
    base = dict(vocab_size=11, d_model=16, n_layers=2, n_heads=2, d_ff=32, context=8, d_factors=[2, 2, 4],
                ff_factors=[2, 4, 4], tensorized=0, n_qubits=0, adaptive_rank=0, quantum_attention=0,
                activation="gelu")
    base.update(kw)
    return Config(**base)


class TestFastPaths(unittest.TestCase):
    def test_grouped_tt_forward_equals_contraction(self):
        torch.manual_seed(0)
        lin = TTLinear([2, 4, 4], [4, 2, 4], 4, ranks=[1, 3, 4, 1]).to(D)
        x = torch.randn(5, 7, 32, dtype=D)
        rank = torch.randint(1, 6, (5, 7))
        self.assertLess((lin(x, rank) - lin.forward_tt(x, rank)).abs().max().item(), 1e-12)
        self.assertLess((lin(x) - lin.forward_tt(x)).abs().max().item(), 1e-12)

    def test_folded_daruan_equals_gatewise(self):
        torch.manual_seed(1)
        for depth in (1, 2, 3, 4):
            act = Daruan(9, depth).to(D)
            with torch.no_grad():
                act.w.uniform_(-3, 3)
                act.b.normal_()
            x = torch.randn(50, 9, dtype=D) * 3
            self.assertLess((act.g(x) - act.g_gatewise(x)).abs().max().item(), 1e-12)

    def test_full_range_alpha(self):
        cfg = Config(r_min=2, r_max=8, n_qubits=4)
        alpha = train.full_range_alpha(cfg)
        rank = lambda S: min(max(cfg.r_min + int(alpha * S), cfg.r_min), cfg.r_max)
        self.assertEqual(rank(0.0), 2)
        self.assertEqual(rank(2.0), 8)  # S = Q/2 reaches r_max
        self.assertEqual(sorted({rank(s / 100) for s in range(201)}), list(range(2, 9)))


class TestTTSVD(unittest.TestCase):
    def test_full_rank_is_exact_and_errors_fall(self):
        torch.manual_seed(2)
        W = torch.randn(32, 16, dtype=D)
        of, inf = [4, 2, 4], [2, 2, 4]
        full = max(tt_bond_ranks(of, inf, 1 << 30))
        lin = compress.tt_svd_linear(W, (of, inf), full, dtype=D)
        self.assertLess((lin.dense_weight() - W).abs().max().item(), 1e-10)
        err = compress.tt_errors(W, of, inf)
        self.assertLess(err[full], 1e-10)
        self.assertTrue(all(err[r + 1] <= err[r] + 1e-12 for r in range(1, full)))

    def test_leading_components_carry_the_most(self):
        """Truncating the stored cores at run time keeps the largest singular directions: the error of the
        leading r components falls with r and beats the trailing r components."""
        torch.manual_seed(3)
        A = sum(torch.kron(torch.randn(4, 4, dtype=D) * s, torch.randn(8, 4, dtype=D)) for s in (3, 2, 1))
        A = A + 0.05 * torch.randn(32, 16, dtype=D)  # TT rank 3 plus noise
        lin = compress.tt_svd_linear(A, ([4, 8], [4, 4]), 8, dtype=D)
        pe = compress.prefix_errors(lin, A)
        self.assertLess(pe[3], 0.1)
        self.assertTrue(all(pe[r + 1] <= pe[r] + 1e-12 for r in range(1, 8)))
        with torch.no_grad():  # reverse the bond order: the same rank-3 truncation is much worse
            rev = compress.tt_svd_linear(A, ([4, 8], [4, 4]), 8, dtype=D)
            rev.cores[0].copy_(rev.cores[0].flip(-1))
            rev.cores[1].copy_(rev.cores[1].flip(0))
        self.assertLess((rev.dense_weight() - lin.dense_weight()).abs().max().item(), 1e-10)
        self.assertGreater(compress.prefix_errors(rev, A)[3], 5 * pe[3])

    def test_allocation_respects_budget(self):
        torch.manual_seed(4)
        errors, shapes = {}, {}
        for n, (of, inf) in {"a": ([4, 4], [4, 4]), "b": ([4, 8], [4, 4])}.items():
            W = torch.randn(16 if n == "a" else 32, 16, dtype=D)
            errors[n] = compress.tt_errors(W, of, inf)
            shapes[n] = (of, inf, W.norm().item())
        for uniform in (False, True):
            ranks = compress.allocate_ranks(errors, shapes, 300, uniform)
            used = sum(compress.tt_params(shapes[n][0], shapes[n][1], tt_bond_ranks(shapes[n][0], shapes[n][1], r))
                       for n, r in ranks.items())
            self.assertLessEqual(used, 300)
            self.assertGreater(used, 100)

    def test_factorize(self):
        self.assertEqual(compress.factorize(128), [4, 4, 8])
        self.assertEqual(compress.factorize(512), [8, 8, 8])
        self.assertEqual(compress.factorize(64, 2), [8, 8])


class TestCompressModel(unittest.TestCase):
    def teacher(self):
        torch.manual_seed(5)
        t = QTensorFormer(tiny_dense()).to(D).eval()
        with torch.no_grad():
            for p in t.parameters():
                p.add_(0.1 * torch.randn_like(p))
        return t

    def test_lossless_at_zero_error_and_budget(self):
        teacher = self.teacher()
        tokens = torch.randint(0, 11, (2, 8))
        cfg = compress.student_config(teacher.cfg, quantum=False)
        student, rep = compress.compress_model(teacher, cfg, max_error=1e-9, log=lambda *_: None)
        student = student.to(D).eval()  # f32 cores: exact up to f32 rounding
        with torch.no_grad():
            self.assertLess((student(tokens)[0] - teacher(tokens)[0]).abs().max().item(), 1e-5)
        budget = teacher.param_counts()[1] / 3
        small, rep = compress.compress_model(teacher, cfg, budget=budget, log=lambda *_: None)
        self.assertLessEqual(small.param_counts()[1], budget)
        self.assertGreater(rep["block_ratio"], 2.5)
        with tempfile.TemporaryDirectory() as tmp:  # per-matrix ranks survive the file
            path = os.path.join(tmp, "s.qtf")
            export_qtf(small.eval(), path, [chr(65 + i) for i in range(11)])
            loaded, _ = load_qtf(path, dtype=D)
        with torch.no_grad():
            self.assertLess((loaded(tokens)[0] - small.to(D)(tokens)[0]).abs().max().item(), 1e-5)

    def test_quantum_student_starts_near_teacher_and_heals(self):
        teacher = self.teacher().float()
        cfg = compress.student_config(teacher.cfg, quantum=True, daruan_depth=2)
        student, _ = compress.compress_model(teacher, cfg, max_error=1e-9, log=lambda *_: None)
        student.cfg.alpha = train.full_range_alpha(student.cfg)
        gen = torch.Generator().manual_seed(0)
        data = torch.randint(0, 11, (64, 9), generator=gen)
        compress.init_quantum_parts(student, data[:8, :8], route_share=0.0, candidates=8, log=lambda *_: None)
        for blk in student.blocks:
            self.assertEqual(blk.qout.weight.abs().sum().item(), 0.0)
        x = data[:16, :8]

        def kl():
            with torch.no_grad():
                student.eval()
                s, t = torch.log_softmax(student(x)[0], -1), torch.log_softmax(teacher(x)[0], -1)
                return (t.exp() * (t - s)).sum(-1).mean().item()
        before = kl()
        i = [0]

        def batches():
            i[0] = (i[0] + 8) % 56
            b = data[i[0]:i[0] + 8]
            return b[:, :8], b[:, 1:]
        log = compress.distill(student, lambda t: teacher(t)[0], batches, 30, lr=3e-3, warmup=5, eval_every=0,
                               log=lambda *_: None)
        self.assertEqual(log["steps_run"], 30)
        self.assertLess(kl(), before)


if __name__ == "__main__":
    unittest.main()


class TestTrim(unittest.TestCase):
    def test_trim_cuts_unselected_components_and_keeps_the_function(self):
        torch.manual_seed(5)
        # Q = 2: S in [0, 1), r = 1 + floor(3 S) in 1..3 (S = 1 exactly is never reached): stored component 4,
        # and in a layer whose tokens reach rank 2 at most 3..4 too, are never selected
        cfg = Config(vocab_size=11, d_model=16, n_layers=2, n_heads=2, d_ff=32, context=8, d_factors=[2, 2, 4],
                     ff_factors=[2, 4, 4], tt_rank=4, r_min=1, r_max=4, alpha=3.0, n_qubits=2, adaptive_rank=1,
                     quantum_attention=1, activation="gelu")
        m = QTensorFormer(cfg).to(D).eval()
        x = torch.randint(0, 11, (4, 8))
        with torch.no_grad():
            before, stats = m(x)
        hists = train.rank_histograms(stats)
        params = m.param_counts()[0]
        trimmed = trim_unused(m, hists)
        self.assertEqual(sorted(trimmed), [0, 1])
        for l, (stored, used) in trimmed.items():
            self.assertEqual(stored, 4)
            self.assertEqual(used, max(hists[l]))
            self.assertLess(used, 4)
            self.assertTrue(all(max(getattr(m.blocks[l], n).ranks) <= used for n in compress.LINEARS))
        self.assertLess(m.param_counts()[0], params)
        with torch.no_grad():
            after, _ = m(x)
        self.assertLess((after - before).abs().max().item(), 1e-12)
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "t.qtf")
            export_qtf(m, path, [chr(65 + i) for i in range(11)])
            back, _ = load_qtf(path)
            with torch.no_grad():
                self.assertLess((back(x)[0].double() - before).abs().max().item(), 1e-4)
        self.assertEqual(trim_unused(m, hists), {})  # nothing left to cut

    def test_fixed_rank_and_dense_models_are_left_alone(self):
        torch.manual_seed(6)
        fixed = compress.student_config(tiny_dense(), quantum=False)
        for cfg in (tiny_dense(), Config(**{**fixed.to_dict(), "tt_rank": 3, "r_max": 3})):
            m = QTensorFormer(cfg).to(D).eval()
            with torch.no_grad():
                _, stats = m(torch.randint(0, 11, (2, 8)))
            n = m.param_counts()[0]
            self.assertEqual(trim_unused(m, train.rank_histograms(stats)), {})
            self.assertEqual(m.param_counts()[0], n)
