"""The Python package against the shipped models: the same greedy text as `qtf run`, the same loss as
`qtf eval`, numpy arrays of the right shapes, errors as exceptions, contexts on threads over one model.
Run by ctest (python_qtf) with QTF_LIBRARY and QTF_BIN set; by hand:
  QTF_LIBRARY=build/libqtf.so QTF_BIN=build/qtf PYTHONPATH=python /usr/bin/python3 -m unittest discover -s python/tests
"""
import json
import os
import subprocess
import sys
import tempfile
import threading
import unittest

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "python"))
import qtf  # noqa: E402

QTF_BIN = os.environ.get("QTF_BIN", os.path.join(ROOT, "build", "qtf"))
MODELS = os.path.join(ROOT, "models")
TEXT = ("First Citizen:\nBefore we proceed any further, hear me speak.\n\nAll:\nSpeak, speak.\n\n"
        "First Citizen:\nYou are all resolved rather to die than to famish?\n\nAll:\nResolved. resolved.\n")


def qtf_cli(*args):
    return subprocess.run([QTF_BIN, *args], check=True, capture_output=True).stdout


class ShippedModels(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.models = {name: qtf.Model(os.path.join(MODELS, name + ".qtf"))
                      for name in ("shakespeare-qtf", "shakespeare-dense")}

    def test_greedy_text_equals_the_cli(self):
        for name, m in self.models.items():
            with self.subTest(model=name):
                cli = qtf_cli("run", "-m", m.path, "-p", "ROMEO:", "-n", "40", "--temp", "0")
                gen = m.generate("ROMEO:", max_tokens=40, temperature=0)
                toks = list(gen)
                self.assertEqual(len(toks), 40)
                self.assertEqual(gen.stop_reason, "length")
                self.assertEqual(b"ROMEO:" + b"".join(t.bytes for t in toks), cli.rstrip(b"\n"))

    def test_eval_equals_the_cli(self):
        with tempfile.NamedTemporaryFile("w", suffix=".txt") as f:
            f.write(TEXT)
            f.flush()
            for name, m in self.models.items():
                for stride in (None, 40):
                    with self.subTest(model=name, stride=stride):
                        args = ["eval", "-m", m.path, "-f", f.name, "--json", "--ctx-size", "64"]
                        if stride:
                            args += ["--stride", str(stride)]
                        cli = json.loads(qtf_cli(*args))
                        r = m.eval(TEXT, stride=stride, n_ctx=64)
                        self.assertEqual(r.scored, cli["scored"])
                        self.assertAlmostEqual(r.loss, cli["loss"], places=5)
                        self.assertAlmostEqual(r.perplexity, cli["perplexity"], places=3)
                        self.assertAlmostEqual(r.report.mean_rank, cli["mean_rank"], places=3)
                        self.assertAlmostEqual(r.report.quantum_share, cli["quantum_share"], places=4)
                        self.assertEqual(r.nll.shape, (r.scored,))
                        self.assertTrue(np.all(r.nll > 0))

    def test_numpy_logits_and_report(self):
        m = self.models["shakespeare-qtf"]
        ids = m.tokenize("ROMEO:")
        self.assertEqual(ids.dtype, np.int32)
        self.assertEqual(m.detokenize(ids), "ROMEO:")
        with m.context() as ctx:
            ctx.decode(ids)
            self.assertEqual(ctx.n_past, len(ids))
            z = ctx.logits
            self.assertEqual((z.shape, z.dtype), ((m.vocab_size,), np.float32))
            self.assertAlmostEqual(float(np.exp(ctx.log_softmax()).sum()), 1.0, places=6)
            st = ctx.stats()
            self.assertEqual(st["rank"].shape, (m.n_layers,))
            self.assertEqual(st["pos"], len(ids) - 1)
        gen = m.generate("ROMEO:", max_tokens=12, temperature=0, logits=True)
        toks = list(gen)
        for t in toks:  # greedy: each token is its pass's argmax, and its logprob is that of the logits
            self.assertEqual(t.id, int(np.argmax(t.logits)))
            self.assertLess(t.logprob, 0)
            self.assertTrue(np.all(t.rank >= 1))
        rep = gen.report()
        self.assertEqual(len(rep), 12)
        self.assertEqual(rep.rank.shape, (12, m.n_layers))
        self.assertEqual(rep.quantum.dtype, bool)
        self.assertEqual(list(rep.pos), list(range(len(ids) - 1, len(ids) + 11)))
        self.assertTrue(np.all(rep.flops > 0))

    def test_sampling_is_seeded_and_stops(self):
        m = self.models["shakespeare-qtf"]
        a = m.generate("ROMEO:", max_tokens=30, temperature=0.9, seed=7).text
        b = m.generate("ROMEO:", max_tokens=30, temperature=0.9, seed=7).text
        self.assertEqual(a, b)
        g = m.generate("ROMEO:", max_tokens=200, temperature=0, stop=["the"])
        self.assertTrue(g.text.endswith("the"))
        self.assertEqual(g.stop_reason, "stop")
        g = m.generate("ROMEO:", max_tokens=100, temperature=0, n_ctx=16)
        self.assertEqual(len(list(g)), 16 - 6 + 1)
        self.assertEqual(g.stop_reason, "context_full")

    def test_simd_variants_give_the_same_greedy_text(self):
        m = self.models["shakespeare-qtf"]
        best = qtf.simd()
        texts = {}
        try:
            for name in ("scalar", "sse2", "avx2", "avxvnni", "avx512", "avx512vnni", "neon", "neondot"):
                try:
                    qtf.set_simd(name)
                except qtf.QtfError as e:
                    self.assertIn(name, str(e))  # not in this build or not on this CPU: says which
                    continue
                self.assertEqual(qtf.simd(), name)
                texts[name] = m.generate("ROMEO:", max_tokens=40, temperature=0).text
        finally:
            qtf.set_simd("auto")
        self.assertEqual(qtf.simd(), best)
        self.assertIn("scalar", texts)
        self.assertGreaterEqual(len(texts), 2 if best != "scalar" else 1)
        self.assertEqual(len(set(texts.values())), 1, texts)
        with self.assertRaises(qtf.QtfError):
            qtf.set_simd("mmx")

    def test_errors_are_exceptions(self):
        m = self.models["shakespeare-qtf"]
        with self.assertRaises(qtf.QtfError) as e:
            qtf.Model(os.path.join(MODELS, "no-such-model.qtf"))
        self.assertIn("no-such-model", str(e.exception))
        with self.assertRaises(qtf.QtfError) as e:
            qtf.Model(os.path.join(ROOT, "README.md"))
        self.assertEqual(e.exception.code, 2)  # QTF_ERR_BAD_MODEL
        with self.assertRaises(qtf.QtfError) as e:  # the two GGUF import modes together: one line, nothing loaded
            qtf.Model(os.path.join(MODELS, "shakespeare-qtf.qtf"), gguf_f32=True, gguf_q4=True)
        self.assertIn("not both", str(e.exception))
        ctx = m.context(n_ctx=8)
        with self.assertRaises(qtf.QtfError) as e:
            ctx.decode([m.vocab_size + 3])
        self.assertIn("outside the vocabulary", str(e.exception))
        with self.assertRaises(qtf.QtfError):
            ctx.logits
        with self.assertRaises(qtf.ContextFullError):
            ctx.decode(list(range(9)))
        with self.assertRaises(ValueError):
            m.context(route="sideways")
        with self.assertRaises(ValueError):
            m.generate("", max_tokens=3)

    def test_contexts_on_threads_share_one_model(self):
        m = self.models["shakespeare-qtf"]
        want = m.generate("JULIET:", max_tokens=40, temperature=0).text
        got = [None] * 4

        def work(i):
            got[i] = m.generate("JULIET:", max_tokens=40, temperature=0).text

        threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        self.assertEqual(got, [want] * 4)


class Options(unittest.TestCase):
    def test_act_quant(self):
        # A q8 model: "off" runs the float path (the CLI's --act-quant off greedy text), "q8" the int8 x int8
        # dot products (other logits, close), "auto" one of the two; other names are refused.
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "dense-q8.qtf")
            qtf_cli("quantize", os.path.join(MODELS, "shakespeare-dense.qtf"), path, "--type", "q8")
            m = qtf.Model(path)
            tokens = m.tokenize("ROMEO: Wherefore")
            logits = {}
            for aq in ("off", "q8", "auto"):
                with m.context(act_quant=aq) as c:
                    c.decode(tokens)
                    logits[aq] = list(c.logits)
            self.assertNotEqual(logits["off"], logits["q8"])
            self.assertLess(max(abs(x - y) for x, y in zip(logits["off"], logits["q8"])),
                            0.1 * max(abs(x) for x in logits["off"]))
            self.assertIn(logits["auto"], (logits["off"], logits["q8"]))
            for aq in ("off", "q8"):
                cli = qtf_cli("run", "-m", path, "-p", "ROMEO:", "-n", "30", "--temp", "0", "--act-quant", aq)
                self.assertEqual(("ROMEO:" + m.generate("ROMEO:", max_tokens=30, temperature=0, act_quant=aq).text).encode(),
                                 cli.rstrip(b"\n"))
            with self.assertRaises(ValueError):
                m.context(act_quant="q4")

    def test_adapter_memory_slots_and_context_options(self):
        fx = os.path.join(ROOT, "tests", "fixtures")
        separate = qtf.Model(os.path.join(fx, "qllm_byte_phase_memory_lora.qtf"))
        adapted = qtf.Model(os.path.join(fx, "lora", "base.qtf"), adapter=os.path.join(fx, "lora", "adapter.qtf"))
        tokens = [5, 17, 33, 2, 40]
        with separate.context() as a, adapted.context() as b:
            self.assertEqual(b.n_prefix, 4)
            self.assertEqual(b.n_past, 4)
            a.decode(tokens)
            b.decode(tokens)
            self.assertEqual(list(a.logits), list(b.logits))
        with self.assertRaises(qtf.QtfError):
            qtf.Model(os.path.join(fx, "lora", "base.qtf"), adapter=os.path.join(fx, "lora", "merged.qtf"))
        tt = qtf.Model(os.path.join(fx, "qllm_tt_lora_rope_memory.qtf"))
        with tt.context(mem_budget=0) as packed, tt.context(pack_tt=False, mem_budget=0) as in_place:
            self.assertLess(in_place.arena_bytes, packed.arena_bytes)
            packed.decode(tokens)
            in_place.decode(tokens)
            # the packed kernels sum the same products in another float32 order
            self.assertLess(max(abs(x - y) for x, y in zip(packed.logits, in_place.logits)), 5e-5)
        with tt.context(n_batch=3) as small:  # three blocks instead of one
            small.decode(tokens)
            self.assertEqual(small.n_past, 4 + len(tokens))
        with self.assertRaises(qtf.QtfError):
            tt.context(n_batch=5000)


class Hostile(unittest.TestCase):
    """What a careless or hostile caller may do: each ends in a clear exception, never a crash or a silently
    wrong value."""
    PATH = os.path.join(MODELS, "shakespeare-qtf.qtf")

    def test_a_context_outlives_its_closed_model(self):
        ids = [18, 27, 25, 17, 25, 10]
        with qtf.Model(self.PATH) as ref, ref.context() as c:
            c.decode(ids)
            want = c.logits
        for mmap in (False, True):
            with self.subTest(mmap=mmap):
                with qtf.Model(self.PATH, mmap=mmap) as m:
                    c = m.context()
                    g = m.generate("ROMEO:", max_tokens=5, temperature=0)
                c.decode(ids)  # this once used the freed model (a segfault with mmap)
                self.assertEqual(list(c.logits), list(want))
                self.assertEqual(len(list(g)), 5)
                c.close()
                with self.assertRaisesRegex(qtf.QtfError, "Model is closed"):
                    m.tokenize("ROMEO:")
                with self.assertRaisesRegex(qtf.QtfError, "Model is closed"):
                    m.context()
                with self.assertRaisesRegex(qtf.QtfError, "Context is closed"):
                    c.decode(ids)

    def test_integers_are_range_checked_before_ctypes(self):
        m = qtf.Model(self.PATH)
        for kw, exc in ((dict(n_ctx=2**32 + 16), ValueError), (dict(n_ctx=-1), ValueError),
                        (dict(n_ctx=True), TypeError), (dict(n_ctx=16.0), TypeError),
                        (dict(n_batch=2**31), ValueError), (dict(fixed_rank=-2**40), ValueError),
                        (dict(n_threads=2**32 + 1), ValueError), (dict(attention_seed=2**64), ValueError),
                        (dict(attention_seed=-1), ValueError), (dict(attention_samples=-2), ValueError),
                        (dict(theta=float("nan")), ValueError), (dict(alpha=1e39), ValueError)):
            with self.subTest(**{k: repr(v) for k, v in kw.items()}):
                with self.assertRaises(exc) as e:
                    m.context(**kw)
                self.assertIn(next(iter(kw)), str(e.exception))
        c = m.context(n_ctx=np.int64(16))  # numpy integers are integers
        self.assertEqual(c.n_ctx, 16)
        for bad in ([2**32 + 30], np.array([2**32 + 30]), [-1], [m.vocab_size], np.array([5], np.uint64) * 2**40):
            with self.subTest(tokens=repr(bad)):
                with self.assertRaisesRegex(qtf.QtfError, "outside the vocabulary"):
                    c.decode(bad)  # 2**32 + 30 once became token 30
        with self.assertRaisesRegex(ValueError, "outside"):
            c.decode([2**70])
        for bad in ([True], [1.5], ["7"], [[1, 2]]):
            with self.subTest(tokens=repr(bad)):
                with self.assertRaises((TypeError, ValueError)):
                    c.decode(bad)
        self.assertEqual(c.n_past, 0)  # nothing was decoded by any of them
        c.decode(np.array([18, 27], dtype=np.int64))
        self.assertEqual(c.n_past, 2)
        for kw in (dict(seed=2**64), dict(seed=-1), dict(top_k=2**31), dict(repeat_last_n=-2**31 - 1),
                   dict(temperature=float("inf")), dict(max_tokens=True)):
            with self.subTest(**{k: repr(v) for k, v in kw.items()}):
                with self.assertRaises((TypeError, ValueError)):
                    m.generate("ROMEO:", **kw)
        with self.assertRaises(TypeError):
            m.token_bytes(True)
        with self.assertRaisesRegex(qtf.QtfError, "outside the vocabulary"):
            m.generate([2**32 + 18], max_tokens=2)

    def test_paths_as_str_bytes_pathlike_and_never_cut_at_nul(self):
        import pathlib
        for p in (self.PATH, os.fsencode(self.PATH), pathlib.Path(self.PATH)):
            with self.subTest(path=repr(p)):
                with qtf.Model(p) as m:
                    self.assertEqual(m.path, self.PATH)
        with self.assertRaisesRegex(ValueError, "NUL"):
            qtf.Model(self.PATH + "\0.ignored")  # C would have opened the path before the NUL
        with self.assertRaisesRegex(ValueError, "NUL"):
            qtf.Model(os.fsencode(self.PATH) + b"\0x")
        with self.assertRaisesRegex(ValueError, "NUL"):
            qtf.Model(self.PATH, adapter=self.PATH + "\0")
        with self.assertRaisesRegex(ValueError, "NUL"):
            qtf.Model(self.PATH, tokenizer=self.PATH + "\0")
        with self.assertRaises(TypeError):
            qtf.Model(42)
        with self.assertRaises(TypeError):
            qtf.Model(self.PATH, tokenizer=42)

    def test_a_fifo_model_path_is_refused_without_waiting(self):
        with tempfile.TemporaryDirectory() as d:
            fifo = os.path.join(d, "model.qtf")
            os.mkfifo(fifo)
            result = []

            def load():
                try:
                    qtf.Model(fifo)
                except qtf.QtfError as e:
                    result.append(str(e))

            t = threading.Thread(target=load, daemon=True)
            t.start()
            t.join(10)
            if t.is_alive():  # free the blocked open() so that the process can end
                os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
                self.fail("qtf.Model waited on a FIFO")
            self.assertEqual(len(result), 1)
            self.assertIn("not a regular file", result[0])

    def test_a_context_used_from_two_threads_at_once_is_refused(self):
        m = qtf.Model(self.PATH)
        c = m.context()
        with c._use():  # as if another thread were inside a call on it
            with self.assertRaisesRegex(qtf.QtfError, "in use by another thread"):
                c.decode([18])
            with self.assertRaisesRegex(qtf.QtfError, "in use by another thread"):
                c.logits
        # Four threads on one context: each call runs whole or is refused (this once gave NaN logits).
        refused, errors = [0], []

        def work():
            for _ in range(200):
                try:
                    c.reset()
                    c.decode([18, 27, 25, 17, 25, 10, 1, 2])
                    z = c.logits
                    if not np.all(np.isfinite(z)):
                        errors.append("non-finite logits")
                except qtf.QtfError as e:
                    if "in use by another thread" not in str(e):
                        errors.append(str(e))
                    refused[0] += 1
                if refused[0] >= 20:
                    return

        threads = [threading.Thread(target=work) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        self.assertEqual(errors, [])
        self.assertGreater(refused[0], 0)
        c.reset()
        c.decode([18, 27])  # still usable by one thread
        self.assertTrue(np.all(np.isfinite(c.logits)))


class Bindings(unittest.TestCase):
    def test_ctypes_structs_match_qtf_h(self):
        """The ctypes structs (python/qtf/_capi.py) have qtf.h's fields, types and order: a change to the
        header that the bindings miss fails here instead of corrupting memory."""
        import re
        from qtf import _capi
        header = open(os.path.join(ROOT, "engine", "capi", "qtf.h")).read()
        header = re.sub(r"/\*.*?\*/", "", header, flags=re.S)
        ctype = {"int32_t": "c_int", "int64_t": "c_long", "uint64_t": "c_ulong", "uint32_t": "c_uint", "float": "c_float",
                 "qtf_route": "c_int", "qtf_act_path": "c_int", "const_char_p": "c_char_p"}
        for cname, struct in (("qtf_model_info", _capi.ModelInfo), ("qtf_context_params", _capi.ContextParams),
                              ("qtf_context_options", _capi.ContextOptions), ("qtf_load_options", _capi.LoadOptions),
                              ("qtf_layer_stats", _capi.LayerStats), ("qtf_token_stats", _capi.TokenStats),
                              ("qtf_sampler_params", _capi.SamplerParams)):
            body = re.search(r"typedef struct \{([^}]*)\} " + cname + ";", header)
            self.assertIsNotNone(body, cname)
            want = []
            for decl in body.group(1).split(";"):
                decl = decl.strip().replace("const char* ", "const_char_p ")
                if decl:
                    typ, names = decl.split(None, 1)
                    want += [(n.strip(), ctype[typ]) for n in names.split(",")]
            got = [(n, t.__name__.replace("c_int32", "c_int").replace("c_int64", "c_long")
                    .replace("c_uint64", "c_ulong").replace("c_uint32", "c_uint")) for n, t in struct._fields_]
            self.assertEqual(got, want, cname)


if __name__ == "__main__":
    unittest.main()
