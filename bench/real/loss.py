#!/usr/bin/env python3
"""Loss of real models on TinyStories validation text: `qtf eval` next to a reference computed here, on the
same token ids (docs/llama.md, "Real models: proof").

Protocol (llama2.c's pretokenize.py): the text is split at `<|endoftext|>`; each story is stripped of
leading and trailing whitespace, encoded with the model's own tokenizer, and preceded by BOS; the stories'
ids are concatenated. Windows: non-overlapping windows of the model's context length over those ids; each
window starts with an empty KV cache and scores its own T-1 next-token targets (its first token is
context only). Loss = mean -log p(target) in nats/token over every scored target.

The reference is independent of qtf:
  - ids: SentencePiece itself (Debian's python3-sentencepiece) with the model's .model file for the
    llama2.c models; for TinyStories-656K the HF tokenizer.json BPE re-implemented below (Prepend "▁" +
    Replace " " -> "▁" normaliser, merges by rank over the whole normalised text, byte fallback to <0xNN>
    where such tokens exist, else <unk> with fuse_unk);
  - logits: the forward pass of each model family in float64 numpy (llama2.c's run.c formulas with
    interleaved rotary pairs; Hugging Face LlamaForCausalLM with rotate-half rotary), whole windows at once.

    python3 bench/real/loss.py --qtf build/qtf [--models stories260K,TinyStories-656K,babyllama] [--json out.json]
    python3 bench/real/loss.py --ids-only stories260K --dump ids.txt    (the reference ids, one per line)

Needs numpy and sentencepiece (/usr/bin/python3 on Debian with python3-numpy python3-sentencepiece).
"""
import argparse
import hashlib
import heapq
import json
import os
import struct
import subprocess
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
SEP = "<|endoftext|>"


def stories(path):
    with open(path, encoding="utf-8") as f:
        text = f.read()
    return [s.strip() for s in text.split(SEP) if s.strip()]


# ------------------------------------------------------------------------------------------- tokenizers
def sp_encoder(model_path):
    import sentencepiece as spm
    sp = spm.SentencePieceProcessor(model_file=model_path)
    return lambda s: [sp.bos_id()] + sp.encode(s)


def write_llama2c_tokenizer(model_path, out):
    """A SentencePiece .model as llama2.c's tokenizer.bin (the layout tokenizer.py's export() writes: the
    longest piece's length, then per id its score, length and bytes; "▁" as a space, BOS/EOS as
    "\n<s>\n" / "\n</s>\n")."""
    import sentencepiece as spm
    sp = spm.SentencePieceProcessor(model_file=model_path)
    toks = []
    for i in range(sp.vocab_size()):
        t = sp.id_to_piece(i)
        t = "\n<s>\n" if i == sp.bos_id() else "\n</s>\n" if i == sp.eos_id() else t
        toks.append((t.replace("\u2581", " ").encode("utf-8"), sp.get_score(i)))
    with open(out, "wb") as f:
        f.write(struct.pack("I", max(len(b) for b, _ in toks)))
        for b, score in toks:
            f.write(struct.pack("fI", score, len(b)) + b)


class HfBpe:
    """The subset of a Hugging Face tokenizer.json BPE that TinyStories-656K uses: a Sequence normaliser of
    Prepend and Replace, no pre-tokenizer (the whole normalised text is one word), merges applied by rank
    (lowest first, leftmost first among equal ranks), unknown characters to <0xNN> byte tokens when
    byte_fallback finds them, else to unk_token (consecutive unknowns fused into one when fuse_unk)."""

    def __init__(self, path):
        with open(path, encoding="utf-8") as f:
            tj = json.load(f)
        m = tj["model"]
        assert m["type"] == "BPE" and tj.get("pre_tokenizer") is None
        self.vocab = m["vocab"]
        self.rank = {}
        for i, mg in enumerate(m["merges"]):
            a, b = mg.split(" ") if isinstance(mg, str) else mg
            self.rank[(a, b)] = i
        self.unk = self.vocab[m["unk_token"]]
        self.fuse_unk = m.get("fuse_unk", False)
        self.byte_fallback = m.get("byte_fallback", False)
        self.norm = tj["normalizer"]["normalizers"] if tj["normalizer"]["type"] == "Sequence" else [tj["normalizer"]]

    def normalize(self, s):
        for n in self.norm:
            if n["type"] == "Prepend":
                s = n["prepend"] + s if s else s
            elif n["type"] == "Replace":
                s = s.replace(n["pattern"]["String"], n["content"])
            else:
                raise ValueError("normaliser %s" % n["type"])
        return s

    def encode(self, s):
        # Merges by (rank, position) from a heap over a linked list of symbols, as the tokenizers library
        # does: O(n log n) in the text.
        sym = list(self.normalize(s))
        n = len(sym)
        nxt, prv = list(range(1, n + 1)), list(range(-1, n - 1))
        heap = []

        def push(i):
            j = nxt[i] if 0 <= i < n else n
            if 0 <= i and j < n:
                r = self.rank.get((sym[i], sym[j]))
                if r is not None:
                    heapq.heappush(heap, (r, i, sym[i], sym[j]))

        for i in range(n - 1):
            push(i)
        while heap:
            r, i, a, b = heapq.heappop(heap)
            j = nxt[i] if sym[i] is not None else n
            if j >= n or sym[i] != a or sym[j] != b:
                continue  # stale: one side was merged since
            sym[i], sym[j] = a + b, None
            nxt[i] = nxt[j]
            if nxt[j] < n:
                prv[nxt[j]] = i
            if prv[i] >= 0:
                push(prv[i])
            push(i)
        parts = [t for t in sym if t is not None]
        ids = []
        for p in parts:
            if p in self.vocab:
                ids.append(self.vocab[p])
                continue
            byte_ids = ["<0x%02X>" % b for b in p.encode("utf-8")]
            if self.byte_fallback and all(b in self.vocab for b in byte_ids):
                ids.extend(self.vocab[b] for b in byte_ids)
            elif not (self.fuse_unk and ids and ids[-1] == self.unk):
                ids.append(self.unk)
        return ids


# ------------------------------------------------------------------------------------------------ models
def load_llama2c(path):
    with open(path, "rb") as f:
        data = f.read()
    d, hidden, L, H, KV, vocab, seq = struct.unpack("7i", data[:28])
    shared = vocab > 0
    vocab = abs(vocab)
    a = np.frombuffer(data, dtype=np.float32, offset=28)
    hs = d // H
    w, o = {}, 0

    def take(name, *shape):
        nonlocal o
        n = int(np.prod(shape))
        w[name] = a[o:o + n].reshape(shape).astype(np.float64)
        o += n

    take("emb", vocab, d)
    take("rms_att", L, d)
    take("wq", L, d, d)
    take("wk", L, KV * hs, d)
    take("wv", L, KV * hs, d)
    take("wo", L, d, d)
    take("rms_ffn", L, d)
    take("w1", L, hidden, d)
    take("w2", L, d, hidden)
    take("w3", L, hidden, d)
    take("rms_final", d)
    o += seq * hs  # freq_cis_real, freq_cis_imag (run.c skips them)
    if shared:
        w["cls"] = w["emb"]
    else:
        take("cls", vocab, d)
    cfg = dict(d=d, L=L, H=H, KV=KV, vocab=vocab, ctx=seq, eps=1e-5, theta=10000.0, rotary="interleaved")
    return cfg, w


def load_hf(dirpath):
    with open(os.path.join(dirpath, "config.json")) as f:
        c = json.load(f)
    with open(os.path.join(dirpath, "model.safetensors"), "rb") as f:
        data = f.read()
    n = struct.unpack("<Q", data[:8])[0]
    header = json.loads(data[8:8 + n])
    base = 8 + n
    t = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        dt = {"F32": np.float32, "F16": np.float16}[info["dtype"]]
        s, e = info["data_offsets"]
        t[name] = np.frombuffer(data[base + s:base + e], dtype=dt).reshape(info["shape"]).astype(np.float64)
    L, d = c["num_hidden_layers"], c["hidden_size"]
    g = lambda k: np.stack([t["model.layers.%d.%s" % (l, k)] for l in range(L)])  # noqa: E731
    w = {"rms_att": g("input_layernorm.weight"), "wq": g("self_attn.q_proj.weight"),
         "wk": g("self_attn.k_proj.weight"), "wv": g("self_attn.v_proj.weight"), "wo": g("self_attn.o_proj.weight"),
         "rms_ffn": g("post_attention_layernorm.weight"), "w1": g("mlp.gate_proj.weight"),
         "w2": g("mlp.down_proj.weight"), "w3": g("mlp.up_proj.weight"), "rms_final": t["model.norm.weight"]}
    w["cls"] = t.get("lm_head.weight", t.get("model.embed_tokens.weight"))
    w["emb"] = t.get("model.embed_tokens.weight", w["cls"]) if c.get("tie_word_embeddings") else \
        t["model.embed_tokens.weight"]
    cfg = dict(d=d, L=L, H=c["num_attention_heads"], KV=c.get("num_key_value_heads", c["num_attention_heads"]),
               vocab=c["vocab_size"], ctx=c["max_position_embeddings"], eps=c["rms_norm_eps"],
               theta=c.get("rope_theta", 10000.0), rotary="half")
    return cfg, w


def forward(cfg, w, ids):
    """Logits [T, vocab] in float64 for one window that starts at position 0."""
    T, d, H, KV = len(ids), cfg["d"], cfg["H"], cfg["KV"]
    hs = d // H
    pos = np.arange(T, dtype=np.float64)[:, None]
    if cfg["rotary"] == "interleaved":  # run.c: pairs (2i, 2i+1), angle pos * theta^(-2i/hs)
        ang = pos * cfg["theta"] ** (-np.arange(0, hs, 2, dtype=np.float64) / hs)
    else:  # HF rotate-half: pairs (i, i + hs/2), same frequencies
        ang = pos * cfg["theta"] ** (-np.arange(0, hs, 2, dtype=np.float64) / hs)
    cos, sin = np.cos(ang)[:, None, :], np.sin(ang)[:, None, :]

    def rope(x, nh):  # x [T, nh*hs]
        x = x.reshape(T, nh, hs)
        if cfg["rotary"] == "interleaved":
            a, b = x[..., 0::2], x[..., 1::2]
            out = np.empty_like(x)
            out[..., 0::2], out[..., 1::2] = a * cos - b * sin, a * sin + b * cos
        else:
            a, b = x[..., :hs // 2], x[..., hs // 2:]
            out = np.concatenate([a * cos - b * sin, a * sin + b * cos], axis=-1)
        return out

    def rms(x, g):
        return g * x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + cfg["eps"])

    mask = np.triu(np.full((T, T), -np.inf), 1)
    x = w["emb"][ids]
    for l in range(cfg["L"]):
        xb = rms(x, w["rms_att"][l])
        q, k = rope(xb @ w["wq"][l].T, H), rope(xb @ w["wk"][l].T, KV)
        v = (xb @ w["wv"][l].T).reshape(T, KV, hs)
        rep = H // KV
        k, v = np.repeat(k, rep, axis=1), np.repeat(v, rep, axis=1)  # head h uses kv head h // rep
        sc = np.matmul(q.transpose(1, 0, 2), k.transpose(1, 2, 0)) / np.sqrt(hs) + mask  # [H, T, T]
        sc = np.exp(sc - sc.max(-1, keepdims=True))
        sc /= sc.sum(-1, keepdims=True)
        att = np.matmul(sc, v.transpose(1, 0, 2)).transpose(1, 0, 2).reshape(T, d)
        x = x + att @ w["wo"][l].T
        xb = rms(x, w["rms_ffn"][l])
        h1, h3 = xb @ w["w1"][l].T, xb @ w["w3"][l].T
        x = x + (h1 / (1 + np.exp(-h1)) * h3) @ w["w2"][l].T
    return rms(x, w["rms_final"]) @ w["cls"].T


def reference_loss(cfg, w, ids, ctx):
    nll, n = 0.0, 0
    for b in range(0, len(ids) - 1, ctx):
        win = ids[b:b + ctx]
        if len(win) < 2:
            break
        lg = forward(cfg, w, win)[:-1]
        mx = lg.max(-1, keepdims=True)
        lse = np.log(np.exp(lg - mx).sum(-1)) + mx[:, 0]
        nll += float((lse - lg[np.arange(len(win) - 1), win[1:]]).sum())
        n += len(win) - 1
    return nll / n, n


# ------------------------------------------------------------------------------------------------ driver
def models(real, work):
    r = lambda *p: os.path.join(real, *p)  # noqa: E731
    tok105_bin = os.path.join(work, "tok105.bin")  # babyllama's tokenizer has no llama2.c .bin: made here
    if not os.path.exists(tok105_bin):
        os.makedirs(work, exist_ok=True)
        write_llama2c_tokenizer(r("babyllama", "tok105.model"), tok105_bin)
    return {
        "stories260K": dict(qtf=[r("stories260K", "stories260K.bin"), "--tokenizer", r("stories260K", "tok512.bin")],
                            load=lambda: load_llama2c(r("stories260K", "stories260K.bin")),
                            enc=lambda: sp_encoder(r("stories260K", "tok512.model"))),
        "TinyStories-656K": dict(qtf=[r("TinyStories-656K")],
                                 load=lambda: load_hf(r("TinyStories-656K")),
                                 enc=lambda: (lambda t: (lambda s: [1] + t.encode(s)))(
                                     HfBpe(r("TinyStories-656K", "tokenizer.json")))),
        "babyllama": dict(qtf=[r("babyllama", "model5000.bin"), "--tokenizer", tok105_bin],
                          load=lambda: load_llama2c(r("babyllama", "model5000.bin")),
                          enc=lambda: sp_encoder(r("babyllama", "tok105.model"))),
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--qtf", help="qtf CLI; without it only the reference is computed")
    ap.add_argument("--real", default=os.environ.get("QTF_REAL_DATA", os.path.join(HERE, "..", "..", "..",
                                                                                    "shared", "data", "real")))
    ap.add_argument("--work", default="/tmp/qtf-proof", help="where tok105.bin is written")
    ap.add_argument("--models", default="stories260K,TinyStories-656K,babyllama")
    ap.add_argument("--model-path", action="append", default=[],
                    help="NAME=PATH: let qtf eval read another file for NAME (e.g. the GGUF or a converted .qtf)")
    ap.add_argument("--stories", type=int, default=0, help="only the first N stories (0 = all)")
    ap.add_argument("--ids-only", help="print/dump the reference ids of this model and stop")
    ap.add_argument("--dump", help="with --ids-only: write the ids here, one per line")
    ap.add_argument("--json")
    args = ap.parse_args()
    M = models(args.real, args.work)
    texts = stories(os.path.join(args.real, "tinystories-valid-1-500.txt"))
    if args.stories:
        texts = texts[:args.stories]
    if args.ids_only:
        enc = M[args.ids_only]["enc"]()
        ids = [i for s in texts for i in enc(s)]
        if args.dump:
            with open(args.dump, "w") as f:
                f.write("\n".join(map(str, ids)) + "\n")
        print("%s: %d stories, %d ids" % (args.ids_only, len(texts), len(ids)))
        return
    overrides = dict(kv.split("=", 1) for kv in args.model_path)
    rows = []
    for name in args.models.split(","):
        m = M[name]
        cfg, w = m["load"]()
        enc = m["enc"]()
        ids = np.array([i for s in texts for i in enc(s)], dtype=np.int64)
        # The float64 reference takes minutes on a shared 2-core machine: kept in --work, keyed by the ids.
        key = hashlib.sha256(ids.tobytes() + str(cfg["ctx"]).encode()).hexdigest()[:16]
        cache = os.path.join(args.work, "loss-reference-%s-%s.json" % (name, key))
        if os.path.exists(cache):
            with open(cache) as f:
                ref, n = json.load(f)
        else:
            ref, n = reference_loss(cfg, w, ids, cfg["ctx"])
            with open(cache, "w") as f:
                json.dump([ref, n], f)
        row = {"model": name, "stories": len(texts), "ids": int(len(ids)), "ctx": cfg["ctx"], "scored": n,
               "reference_loss": ref}
        if args.qtf:
            with open(os.path.join(args.real, "tinystories-valid-1-500.txt"), encoding="utf-8") as f:
                text = f.read()
            path = os.path.join("/tmp", "qtf-loss-%d.txt" % os.getpid())
            if args.stories:  # the same first N stories, separators kept
                text = SEP.join(text.split(SEP)[:args.stories]) + SEP
            with open(path, "w", encoding="utf-8") as f:
                f.write(text)
            margs = [overrides[name]] if name in overrides else m["qtf"][:1]
            extra = m["qtf"][1:] if name not in overrides or not overrides[name].endswith((".qtf", ".gguf")) else []
            cmd = [args.qtf, "eval", "-m"] + margs + extra + ["-f", path, "--doc-sep", SEP, "--max-tokens", "0",
                                                             "--json"]
            r = subprocess.run(cmd, capture_output=True, text=True)
            os.unlink(path)
            if r.returncode != 0:
                row["qtf_error"] = r.stderr.strip().splitlines()[-1] if r.stderr.strip() else "exit %d" % r.returncode
            else:
                j = json.loads(r.stdout.strip().splitlines()[-1])
                row.update(qtf_loss=j["loss"], qtf_tokens=j["tokens"], qtf_scored=j["scored"], qtf_cmd=" ".join(cmd))
        rows.append(row)
        print(json.dumps(row), file=sys.stderr)
    print("| model | stories | reference ids | windows of | scored | reference loss | qtf eval loss (its ids) | qtf - reference |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        q = r.get("qtf_loss")
        print("| %s | %d | %d | %d | %d | %.6f | %s | %s |" % (
            r["model"], r["stories"], r["ids"], r["ctx"], r["scored"], r["reference_loss"],
            "%.6f" % q if q is not None else r.get("qtf_error", "-"),
            "%+.1e" % (q - r["reference_loss"]) if q is not None else "-"))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
