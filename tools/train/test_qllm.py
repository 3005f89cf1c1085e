"""QLLM / sampled-attention options of the reference (docs/qllm.md): /usr/bin/python3 -m unittest tools/train/test_qllm.py

LoRA merged equals LoRA kept apart; a new adapter (B = 0) and a zero phase change nothing; memory slots
change the logits but never see the tokens after them; a file round-trips every option; the sampled
estimator is unbiased-looking and its draws follow the documented SplitMix64 stream.
"""
import os
import sys
import tempfile
import unittest

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from llama import (Llama, LlamaConfig, attention_draws, byte_tokens, export_adapter, export_qtf, load_qtf,  # noqa: E402
                   merge_lora, mix64, randomize_qllm)

D = torch.float64
CFG = dict(vocab_size=256, d_model=16, n_layers=2, n_heads=2, n_kv_heads=2, d_ff=32, context=24, norm="layernorm",
           positions="learned", activation="gelu", linear_bias=1, tied_embeddings=0)
TOKENS = torch.tensor([list(b"Hello, world")])


def model(**over):
    torch.manual_seed(3)
    m = Llama(LlamaConfig(**{**CFG, **over})).to(D).eval()
    return m


class TestQllmReference(unittest.TestCase):
    def test_new_adapter_and_zero_phase_change_nothing(self):
        plain = model()
        with_parts = model(lora_rank=2, lora_alpha=4.0, phase_rotation=1)
        sd = {}
        for k, v in plain.state_dict().items():  # a wrapped linear's weights live under .base
            parts = k.split(".")
            if parts[0] == "blocks" and parts[2] in ("q", "k", "v", "o"):
                k = ".".join(parts[:3] + ["base"] + parts[3:])
            sd[k] = v
        missing = with_parts.load_state_dict(sd, strict=False).missing_keys
        self.assertTrue(all(k.endswith(".A") or k.endswith(".B") or k == "phase" for k in missing), missing)
        with torch.no_grad():
            self.assertTrue(torch.allclose(plain(TOKENS)[0], with_parts(TOKENS)[0], atol=1e-12))

    def test_merged_equals_separate(self):
        m = model(lora_rank=3, lora_alpha=8.0, lora_targets=["q", "o", "up", "down"])
        randomize_qllm(m, torch.Generator().manual_seed(1))
        with torch.no_grad():
            before = m(TOKENS)[0]
            after = merge_lora(m)(TOKENS)[0]
        self.assertTrue(torch.allclose(before, after, atol=1e-10))
        self.assertFalse(any(n.endswith(".A") for n, _ in m.named_parameters()))

    def test_memory_slots_are_a_causal_prefix(self):
        m = model(memory_tokens=3)
        randomize_qllm(m, torch.Generator().manual_seed(2))
        with torch.no_grad():
            full = m(TOKENS)[0]
            part = m(TOKENS[:, :5])[0]
            self.assertTrue(torch.allclose(full[:, :5], part, atol=1e-12))  # no slot sees a later token
            m2 = model(memory_tokens=3)
            m2.load_state_dict(m.state_dict())
            m2.memory.add_(torch.randn(m2.memory.shape, dtype=D))  # (a constant shift would vanish in LayerNorm)
            self.assertGreater((m2(TOKENS)[0] - full).abs().max().item(), 1e-3)  # memory matters

    def test_file_round_trip_and_adapter_file(self):
        m = model(lora_rank=2, lora_alpha=4.0, phase_rotation=1, memory_tokens=2, attention="sampled",
                  attention_samples=16, attention_seed=9)
        randomize_qllm(m, torch.Generator().manual_seed(4))
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "m.qtf")
            export_qtf(m, path, byte_tokens(), tokenizer_type="byte")
            back, meta = load_qtf(path, D)
            self.assertEqual(meta["model.attention"], "sampled")
            self.assertEqual(meta["tokenizer.type"], "byte")
            with torch.no_grad():
                self.assertTrue(torch.allclose(m(TOKENS)[0], back(TOKENS)[0], atol=1e-6))
            adapter = os.path.join(tmp, "a.qtf")
            export_adapter(m, adapter)
            from qtf_format import read_qtf
            ameta, tensors = read_qtf(adapter)
            self.assertEqual(ameta["qtf.arch"], "lora")
            self.assertEqual(sorted(tensors)[0], "blk.0.attn.k.lora_a")
            self.assertEqual(len(tensors), 2 * 4 * 2)

    def test_draws_follow_splitmix64(self):
        # The stream docs/qllm.md defines, computed here with Python integers.
        M = (1 << 64) - 1

        def mix(z):
            z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & M
            z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M
            return z ^ (z >> 31)
        seed, l, h, t = 12345, 1, 1, 5
        state = mix(seed ^ mix((l << 48) + (h << 32) + t))
        want = []
        for _ in range(4):
            state = (state + 0x9E3779B97F4A7C15) & M
            want.append((mix(state) >> 40) / float(1 << 24))
        u = attention_draws(seed, l, 2, 8, 4)
        self.assertEqual(list(u[h, t]), want)
        self.assertEqual(int(mix64(np.uint64(0))), 0)

    def test_sampled_estimator_converges(self):
        m = model(attention="sampled", attention_samples=4)
        randomize_qllm(m, torch.Generator().manual_seed(5))
        with torch.no_grad():
            m.cfg.attention = "softmax"
            exact = m(TOKENS)[0]
            errs = []
            for S in (4, 256, 16384):
                m.cfg.attention, m.cfg.attention_samples = "sampled", S
                errs.append((m(TOKENS)[0] - exact).abs().mean().item())
        self.assertLess(errs[1], errs[0])
        self.assertLess(errs[2], errs[1])


if __name__ == "__main__":
    unittest.main()
