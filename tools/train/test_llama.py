"""Block options and the llama2.c converter (docs/llama.md): /usr/bin/python3 -m unittest tools/train/test_llama.py

Tiny random llama2.c checkpoints are made here (never the real model): converted by tools/convert/llama2c.py,
the reference's logits must equal run.c's forward pass (re-written in numpy, llama.runc_forward) on the
checkpoint itself; malformed checkpoints must be refused with a message that says why.
"""
import os
import struct
import subprocess
import sys
import tempfile
import unittest

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import export  # noqa: E402
import llama2c_checkpoint  # noqa: E402
from llama import (CheckpointError, Llama, LlamaConfig, TINY_LLAMA2C, convert_llama2c, export_qtf,  # noqa: E402
                   load_qtf, random_llama2c_weights, read_llama2c, rope, runc_forward, stand_in_tokens,
                   tensor_map, write_llama2c)
from qtf_format import read_qtf  # noqa: E402

CONVERT = os.path.join(HERE, "..", "convert", "llama2c.py")
D = torch.float64


def checkpoint_bytes(tmp, version=0, shared=True, seed=1, **over):
    h = dict(TINY_LLAMA2C, **over)
    path = os.path.join(tmp, "ckpt.bin")
    write_llama2c(path, h, random_llama2c_weights(h, shared, seed), version=version, shared=shared)
    with open(path, "rb") as f:
        return path, f.read()


class TestConverter(unittest.TestCase):
    def test_converted_logits_equal_runc_forward(self):
        tokens = [1, 5, 39, 0, 12, 7, 7, 30]
        with tempfile.TemporaryDirectory() as tmp:
            for version in (0, 1):
                for shared in (True, False):
                    with self.subTest(version=version, shared=shared):
                        path, data = checkpoint_bytes(tmp, version, shared, seed=version * 2 + shared)
                        out = os.path.join(tmp, "m.qtf")
                        r = subprocess.run([sys.executable, CONVERT, path, out], capture_output=True, text=True)
                        self.assertEqual(r.returncode, 0, r.stderr)
                        h, w = read_llama2c(data)
                        self.assertEqual((h["version"], h["shared"]), (version, shared))
                        model, meta = export.load_qtf(out, dtype=D)  # export hands block options to llama.py
                        self.assertIsInstance(model, Llama)
                        self.assertEqual(meta["model.tied_embeddings"], int(shared))
                        self.assertEqual(meta["model.n_kv_heads"], 2)
                        self.assertEqual(meta["provenance.source_bytes"], len(data))
                        with torch.no_grad():
                            got = model(torch.tensor([tokens]))[0][0].numpy()
                        np.testing.assert_allclose(got, runc_forward(h, w, tokens), atol=1e-5)

    def test_ideal_float32_engine_rounds_what_it_stores(self):
        # store="float32" (the Precision section's ideal float32 engine): the same forward pass with every stored
        # value rounded once, so near float64 (errors of the order of float32 rounding) but not equal to it.
        with tempfile.TemporaryDirectory() as tmp:
            _, data = checkpoint_bytes(tmp, 1, True, seed=3)
        h, w = read_llama2c(data)
        tokens = [1, 5, 39, 0, 12]
        exact, ideal = runc_forward(h, w, tokens, angles="float32"), runc_forward(h, w, tokens, "float32", "float32")
        self.assertEqual(ideal.shape, exact.shape)
        err = np.abs(ideal - exact).max()
        self.assertGreater(err, 0.0)
        self.assertLess(err, 1e-4 * np.abs(exact).max())
        self.assertTrue(np.array_equal(ideal.astype(np.float32).astype(np.float64), ideal))  # logits stored too
        with self.assertRaisesRegex(ValueError, "store must be"):
            runc_forward(h, w, tokens, store="float16")

    def test_refuses_what_is_not_a_checkpoint(self):
        with tempfile.TemporaryDirectory() as tmp:
            _, v0 = checkpoint_bytes(tmp, 0)
            _, v1 = checkpoint_bytes(tmp, 1)
            v2 = v1[:4] + struct.pack("<i", 2) + v1[8:]
            bad_heads = struct.pack("<7i", 16, 24, 2, 3, 1, 40, 32) + v0[28:]  # 3 heads do not divide 16
            cases = {
                "truncated": (v0[:-4], "size mismatch"),
                "trailing": (v0 + b"\0" * 4, "trailing bytes"),
                "separate classifier missing": (v0[:20] + struct.pack("<i", -40) + v0[24:], "truncated"),
                "v2": (v2, "version 2 is not supported"),
                "v1 short": (v1[:200], "truncated"),
                "tiny": (b"abc", "shorter than the 28-byte header"),
                "text": (b"#!/bin/sh\necho this is not a model at all\n", "not a llama2.c checkpoint"),
                "heads": (bad_heads, "heads do not divide"),
            }
            for name, (data, msg) in cases.items():
                with self.subTest(name):
                    with self.assertRaises(CheckpointError) as cm:
                        convert_llama2c(data)
                    self.assertIn(msg, str(cm.exception))
            path = os.path.join(tmp, "bad.bin")
            with open(path, "wb") as f:
                f.write(v0[:-1])
            r = subprocess.run([sys.executable, CONVERT, path, os.path.join(tmp, "x.qtf")], capture_output=True,
                               text=True)
            self.assertEqual(r.returncode, 1)
            self.assertIn("size mismatch", r.stderr)
            self.assertFalse(os.path.exists(os.path.join(tmp, "x.qtf")))

    def test_converter_needs_no_torch_and_checks_the_size_before_reading(self):
        with tempfile.TemporaryDirectory() as tmp:
            path, data = checkpoint_bytes(tmp, 0, False)
            out = os.path.join(tmp, "m.qtf")
            # torch made unimportable: the converter imports numpy and the torch-free modules only.
            code = "import sys, runpy; sys.modules['torch'] = None; sys.argv = %r; runpy.run_path(%r, run_name='__main__')" % (
                [CONVERT, path, out], CONVERT)
            r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertEqual(read_qtf(out)[0]["provenance.source_bytes"], len(data))
            # A large file whose header claims a small model: refused from the header and the size alone.
            big = os.path.join(tmp, "big.bin")
            with open(big, "wb") as f:
                f.write(data[:28])
                f.truncate(1 << 30)  # sparse: no disk used
            real_fromfile = llama2c_checkpoint.np.fromfile
            llama2c_checkpoint.np.fromfile = lambda *a, **k: self.fail("read before the size check")
            try:
                with self.assertRaisesRegex(CheckpointError, "needs 21340 bytes, the file has 1073741824"):
                    llama2c_checkpoint.read_llama2c_file(big)
            finally:
                llama2c_checkpoint.np.fromfile = real_fromfile
            h, w = llama2c_checkpoint.read_llama2c_file(path)
            self.assertTrue(np.array_equal(w["wcls"], read_llama2c(data)[1]["wcls"]))
            # A vocabulary of 1.2M (it once passed the header check and died with a ValueError).
            huge_vocab = data[:20] + struct.pack("<i", 1200000) + data[24:]
            with self.assertRaisesRegex(CheckpointError, "sizes out of range"):
                convert_llama2c(huge_vocab)

    def test_refuses_non_finite_weights_and_f16_overflow(self):
        import importlib.util
        spec = importlib.util.spec_from_file_location("llama2c_convert", CONVERT)
        llama2c = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(llama2c)
        with tempfile.TemporaryDirectory() as tmp:
            path, data = checkpoint_bytes(tmp)
            out = os.path.join(tmp, "m.qtf")
            for value, dtype, want in ((float("nan"), "f32", "non-finite"), (float("-inf"), "f16", "non-finite"),
                                       (70000.0, "f16", "values beyond f16"), (70000.0, "f32", None)):
                with self.subTest(value=value, dtype=dtype):
                    with open(path, "wb") as f:  # the first weight (token embedding 0) after the 28-byte header
                        f.write(data[:28] + struct.pack("<f", value) + data[32:])
                    if want is None:
                        llama2c.convert(path, out, dtype)
                    else:
                        with self.assertRaisesRegex(CheckpointError, "tensor 'tok_emb' has 1 " + want):
                            llama2c.convert(path, out, dtype)

    def test_stand_in_tokenizer_is_one_character_per_id(self):
        toks = stand_in_tokens(60000)
        self.assertEqual(len(set(toks)), 60000)
        self.assertTrue(all(len(t) == 1 and not 0xD800 <= ord(t) <= 0xDFFF for t in toks))
        self.assertEqual(toks[1], "\u0101")


class TestBlockOptions(unittest.TestCase):
    def test_rope_turns_adjacent_pairs(self):
        x = torch.randn(1, 2, 5, 6, dtype=D)
        r = rope(x, 100.0)
        for t in range(5):
            for i in range(0, 6, 2):
                a = t * 100.0 ** (-i / 6)
                z = complex(x[0, 1, t, i], x[0, 1, t, i + 1]) * complex(np.cos(a), np.sin(a))
                self.assertAlmostEqual(r[0, 1, t, i].item(), z.real, places=12)
                self.assertAlmostEqual(r[0, 1, t, i + 1].item(), z.imag, places=12)

    def test_export_round_trip_and_names(self):
        cfg = LlamaConfig(vocab_size=20, d_model=16, n_layers=1, n_heads=4, n_kv_heads=1, d_ff=8, context=8,
                          linear_bias=0, tied_embeddings=0, tensorized=1, d_factors=[4, 4], ff_factors=[2, 4],
                          kv_factors=[2, 2], tt_rank=3)
        torch.manual_seed(0)
        model = Llama(cfg).to(D).eval()
        names = [n for n, _ in tensor_map(model)]
        self.assertIn("blk.0.ffn.gate.core.1", names)
        self.assertNotIn("pos_emb", names)
        self.assertFalse(any(n.endswith(".b") for n in names))  # rmsnorm and no linear biases
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "m.qtf")
            export_qtf(model, path, stand_in_tokens(20))
            back, meta = load_qtf(path, dtype=D)
            self.assertEqual(meta["model.tt.kv_factors"], [2, 2])
            x = torch.tensor([[3, 1, 4, 1, 5]])
            with torch.no_grad():
                np.testing.assert_allclose(back(x)[0].numpy(), model(x)[0].numpy(), atol=1e-5)

    def test_per_matrix_ranks_round_trip(self):
        """A compressed model stores every matrix at its own bond rank; load_qtf rebuilds them from the cores."""
        from compress import tt_svd_linear
        cfg = LlamaConfig(vocab_size=20, d_model=16, n_layers=1, n_heads=4, n_kv_heads=2, d_ff=8, context=8,
                          tensorized=1, d_factors=[4, 4], ff_factors=[2, 4], kv_factors=[2, 4], tt_rank=6)
        torch.manual_seed(2)
        model = Llama(cfg).to(D).eval()
        blk = model.blocks[0]
        lin = tt_svd_linear(blk.up.dense_weight().detach(), ([2, 4], [4, 4]), 2).to(D)
        del lin.bias
        lin.register_buffer("bias", torch.zeros(8, dtype=D), persistent=False)
        blk.up = lin
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "m.qtf")
            export_qtf(model, path, stand_in_tokens(20))
            back, _ = load_qtf(path, dtype=D)
            self.assertEqual(back.blocks[0].up.ranks, [1, 2, 1])
            self.assertEqual(back.blocks[0].q.ranks, [1, 6, 1])
            x = torch.tensor([[3, 1, 4, 1, 5]])
            with torch.no_grad():
                np.testing.assert_allclose(back(x)[0].numpy(), model(x)[0].numpy(), atol=1e-5)

    def test_gqa_with_all_kv_heads_equal_is_multi_head(self):
        """n_kv_heads = H/2 with each kv head's projection duplicated equals n_kv_heads = H."""
        base = dict(vocab_size=10, d_model=8, n_layers=1, n_heads=2, d_ff=8, context=8)
        torch.manual_seed(1)
        gqa = Llama(LlamaConfig(n_kv_heads=1, **base)).to(D)
        mha = Llama(LlamaConfig(n_kv_heads=2, **base)).to(D)
        mha.load_state_dict({k: (v.repeat(2, 1) if k.endswith(("k.weight", "v.weight")) else v)
                             for k, v in gqa.state_dict().items()})
        x = torch.tensor([[1, 2, 3, 4]])
        with torch.no_grad():
            np.testing.assert_allclose(gqa(x)[0].numpy(), mha(x)[0].numpy(), atol=1e-12)


if __name__ == "__main__":
    unittest.main()
