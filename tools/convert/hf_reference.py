#!/usr/bin/env python3
"""Reference forward pass of a Hugging Face Llama / Qwen2 directory in numpy, float64, with HF's own
conventions (docs/llama.md, "Hugging Face directories"): the weights as model.safetensors holds them
(q and k rows NOT permuted) and rotate-half rotary positions, as transformers' modeling_llama.py runs
them. The engine imports the same directory (engine/import/hf.cpp, q/k rows permuted to adjacent
pairs) and must give the same logits; this module is the outside check. numpy only.

    python3 tools/convert/hf_reference.py fixture [--dir tests/fixtures/tinystories-656k]
        writes DIR/reference.json: the reference logits of the first --tokens ids of hf_ids.json's
        stories (BOS + story, one after another: the text's first tokens) at a few positions (what
        tests/import/test_hf.cpp reads)
    python3 tools/convert/hf_reference.py compare --model MODEL [--dir DIR] [--ids IDS.json] [--tokens N] [--stories K]
        runs the engine (libqtf through python/qtf: MODEL is an HF directory or the converted .qtf) on
        the first K stories of hf_ids.json (or IDS.json), N tokens each, one context per story, and
        prints max |logit difference| per story
    python3 tools/convert/hf_reference.py qwen2-fixture [--out tests/fixtures/hf-qwen2-tiny]
        a tiny random Qwen2ForCausalLM directory (q/k/v biases, GQA, untied, F32/F16/BF16, ByteLevel
        tokenizer) with reference.json: its logits at every position of 24 random ids
    python3 tools/convert/hf_reference.py tokens --model MODEL [--ids IDS.json] [--qtf build/qtf]
        the engine's token ids against IDS.json (tools/convert/hf_tokenize.js, Hugging Face's tokenizers
        library), story by story: from `qtf tokenize --ids` (BOS included) with --qtf, else from
        python/qtf's tokenize (no BOS; compared without the leading one)

Conventions (transformers 4.41 LlamaForCausalLM): RMSNorm y = w * x / sqrt(mean(x^2) + eps); rotary
inv_freq = 1 / theta^(2i/hd) as float32, angle = float32(t * inv_freq) (HF forms both in float32), then
cos/sin and everything after them in float64; q' = q cos + rotate_half(q) sin with
rotate_half([x1, x2]) = [-x2, x1] (halves of the head); grouped-query head n reads kv head n // (H/G);
softmax(q.k / sqrt(hd)) causal; MLP down(silu(gate x) * up x); tied classifier = the embedding.
"""
import argparse
import json
import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
DEFAULT_DIR = os.path.join(ROOT, "tests", "fixtures", "tinystories-656k")


# ---------------------------------------------------------------------------------------------------
# Reading

def read_safetensors(path):
    """{name: float32 array} of an F32/F16/BF16 safetensors file (header length and ranges checked)."""
    with open(path, "rb") as f:
        data = f.read()
    if len(data) < 8:
        raise ValueError("%s: too short" % path)
    n = int.from_bytes(data[:8], "little")
    if n > min(100 << 20, len(data) - 8):
        raise ValueError("%s: header length %d does not fit" % (path, n))
    header = json.loads(data[8:8 + n])
    base, out = 8 + n, {}
    for name, e in header.items():
        if name == "__metadata__":
            continue
        b, end = e["data_offsets"]
        raw = data[base + b:base + end]
        shape = tuple(e["shape"])
        if e["dtype"] == "F32":
            a = np.frombuffer(raw, "<f4")
        elif e["dtype"] == "F16":
            a = np.frombuffer(raw, "<f2").astype(np.float32)
        elif e["dtype"] == "BF16":
            a = (np.frombuffer(raw, "<u2").astype(np.uint32) << 16).view(np.float32)
        else:
            raise ValueError("%s: tensor %s has dtype %s" % (path, name, e["dtype"]))
        out[name] = a.reshape(shape)
    return out


def load_dir(d):
    """(config dict, {name: float32 array}) of an HF directory (single file or sharded)."""
    with open(os.path.join(d, "config.json")) as f:
        cfg = json.load(f)
    index = os.path.join(d, "model.safetensors.index.json")
    if os.path.exists(index):
        with open(index) as f:
            files = sorted(set(json.load(f)["weight_map"].values()))
    else:
        files = ["model.safetensors"]
    w = {}
    for name in files:
        w.update(read_safetensors(os.path.join(d, name)))
    return cfg, w


def stories(text):
    """The stories of the validation text: split at <|endoftext|>, newlines stripped at both ends."""
    return [s.strip("\n") for s in text.split("<|endoftext|>") if s.strip("\n")]


# ---------------------------------------------------------------------------------------------------
# Forward pass

def forward(cfg, w, tokens):
    """Logits [len(tokens), V] (float64) of one sequence from position 0, HF conventions."""
    d, H = cfg["hidden_size"], cfg["num_attention_heads"]
    G = cfg.get("num_key_value_heads", H)
    hd, L, eps = d // H, cfg["num_hidden_layers"], cfg["rms_norm_eps"]
    theta = cfg.get("rope_theta", 10000.0)
    qwen2 = cfg["architectures"][0] == "Qwen2ForCausalLM"
    bias_attn = qwen2 or cfg.get("attention_bias", False)
    f64 = lambda name: w[name].astype(np.float64)  # noqa: E731
    emb = w.get("model.embed_tokens.weight", w.get("lm_head.weight")).astype(np.float64)
    head = emb if cfg.get("tie_word_embeddings", False) else f64("lm_head.weight")

    def rms(x, g):
        return g * x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps)

    def lin(x, name, bias=False):
        y = x @ f64(name + ".weight").T
        return y + f64(name + ".bias") if bias else y

    T = len(tokens)
    inv_freq = (1.0 / (np.float32(theta) ** (np.arange(0, hd, 2, dtype=np.float32) / np.float32(hd)))).astype(np.float32)
    ang = (np.arange(T, dtype=np.float32)[:, None] * inv_freq[None, :]).astype(np.float64)  # float32 product
    cos = np.concatenate([np.cos(ang), np.cos(ang)], axis=-1)[:, None, :]  # [T, 1, hd]
    sin = np.concatenate([np.sin(ang), np.sin(ang)], axis=-1)[:, None, :]

    def rotate_half(x):
        return np.concatenate([-x[..., hd // 2:], x[..., :hd // 2]], axis=-1)

    x = emb[np.asarray(tokens)]
    mask = np.triu(np.full((T, T), -np.inf), 1)
    for l in range(L):
        p = "model.layers.%d." % l
        h = rms(x, f64(p + "input_layernorm.weight"))
        q = lin(h, p + "self_attn.q_proj", bias_attn).reshape(T, H, hd)
        k = lin(h, p + "self_attn.k_proj", bias_attn).reshape(T, G, hd)
        v = lin(h, p + "self_attn.v_proj", bias_attn).reshape(T, G, hd)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        att = np.empty((T, H, hd))
        for n in range(H):
            g = n // (H // G)
            s = q[:, n, :] @ k[:, g, :].T / np.sqrt(hd) + mask
            s = np.exp(s - s.max(axis=-1, keepdims=True))
            att[:, n, :] = (s / s.sum(axis=-1, keepdims=True)) @ v[:, g, :]
        x = x + lin(att.reshape(T, d), p + "self_attn.o_proj", not qwen2 and bias_attn)
        h = rms(x, f64(p + "post_attention_layernorm.weight"))
        mlp_bias = cfg.get("mlp_bias", False)
        gate = lin(h, p + "mlp.gate_proj", mlp_bias)
        x = x + lin(gate / (1.0 + np.exp(-gate)) * lin(h, p + "mlp.up_proj", mlp_bias), p + "mlp.down_proj", mlp_bias)
    return rms(x, f64("model.norm.weight")) @ head.T


# ---------------------------------------------------------------------------------------------------
# Commands

def load_ids(d, path=None):
    with open(path or os.path.join(d, "hf_ids.json")) as f:
        return json.load(f)


def cmd_fixture(args):
    cfg, w = load_dir(args.dir)
    ids = load_ids(args.dir)
    tokens = [t for story in ids["ids"] for t in story][:args.tokens]  # BOS + story, BOS + story, ...
    logits = forward(cfg, w, tokens)
    positions = [p for p in (0, 1, 2, 5, 17, 63, args.tokens - 1) if p < len(tokens)]
    out = {"about": "tools/convert/hf_reference.py fixture: float64 HF-convention logits of the first ids of "
                    "hf_ids.json's stories (BOS + story, one after another) at these positions; the engine runs "
                    "all the tokens in one context",
           "atol": 1e-4, "tokens": tokens, "positions": positions,
           "logits": [[float("%.9g" % v) for v in logits[p]] for p in positions]}
    path = os.path.join(args.dir, "reference.json")
    with open(path, "w") as f:
        json.dump(out, f, separators=(",", ":"))
        f.write("\n")
    print("%s: %d tokens, logits at positions %s" % (path, len(tokens), positions))


def engine_model(path):
    sys.path.insert(0, os.path.join(ROOT, "python"))
    import qtf  # noqa: E402  (python/qtf: libqtf through ctypes)
    return qtf.Model(path)


def cmd_compare(args):
    cfg, w = load_dir(args.dir)
    ids = load_ids(args.dir, args.ids)
    model = engine_model(args.model)
    worst, n_pos = 0.0, 0
    for i, toks in enumerate(ids["ids"][:args.stories]):
        toks = toks[:args.tokens]
        ref = forward(cfg, w, toks)
        ctx = model.context()
        got = []
        for t in toks:
            ctx.decode([t])
            got.append(np.array(ctx.logits, dtype=np.float64))
        diff = np.abs(np.array(got) - ref).max(axis=-1)
        worst, n_pos = max(worst, float(diff.max())), n_pos + len(toks)
        print("story %d: %d tokens, max |logit diff| %.3g (position %d), logits up to |%.1f|"
              % (ids["index"][i], len(toks), diff.max(), int(diff.argmax()), np.abs(ref).max()))
    print("all: %d positions, max |logit diff| %.3g -> %s (atol %g)"
          % (n_pos, worst, "OK" if worst <= args.atol else "MISMATCH", args.atol))
    return 0 if worst <= args.atol else 1


def qtf_tokenize_ids(qtf_bin, model, text):
    """The ids `qtf tokenize --ids` gives for text (BOS first when the model adds it)."""
    import subprocess
    import tempfile
    with tempfile.NamedTemporaryFile("wb", suffix=".txt") as f:
        f.write(text.encode("utf-8"))
        f.flush()
        out = subprocess.run([qtf_bin, "tokenize", "-m", model, "--ids", "-f", f.name], capture_output=True,
                             text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def cmd_tokens(args):
    ids = load_ids(args.dir, args.ids)
    model = None if args.qtf else engine_model(args.model)
    bad = 0
    for i, (text, want) in enumerate(zip(ids["stories"], ids["ids"])):
        if args.qtf:
            got = qtf_tokenize_ids(args.qtf, args.model, text)
        else:  # python/qtf's tokenize adds no BOS: compare without the leading one
            got, want = list(model.tokenize(text)), want[1:]
        if list(got) != list(want):
            bad += 1
            k = next((j for j, (a, b) in enumerate(zip(got, want)) if a != b), min(len(got), len(want)))
            print("story %d: first difference at id %d: qtf %s, HF %s" % (ids["index"][i], k, got[k:k + 8], want[k:k + 8]))
    n = sum(len(x) for x in ids["ids"])
    print("%d stories, %d HF ids: %d stories differ" % (len(ids["ids"]), n, bad))
    return 0 if bad == 0 else 1


def bytes_to_unicode():
    """GPT-2's byte -> character map (the ByteLevel alphabet)."""
    keep = list(range(33, 127)) + list(range(161, 173)) + list(range(174, 256))
    out, n = {}, 0
    for b in range(256):
        if b in keep:
            out[b] = chr(b)
        else:
            out[b] = chr(256 + n)
            n += 1
    return out


def write_safetensors(path, tensors):
    """[(name, array, dtype "F32"|"F16"|"BF16")] -> a safetensors file (BF16 rounded to nearest even)."""
    header, blobs, off = {"__metadata__": {"format": "pt"}}, [], 0
    for name, a, dt in tensors:
        a = np.ascontiguousarray(a, dtype=np.float32)
        if dt == "F32":
            raw = a.astype("<f4").tobytes()
        elif dt == "F16":
            raw = a.astype("<f2").tobytes()
        else:
            u = a.view(np.uint32).astype(np.uint64)
            raw = ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype("<u2").tobytes()
        header[name] = {"dtype": dt, "shape": list(a.shape), "data_offsets": [off, off + len(raw)]}
        blobs.append(raw)
        off += len(raw)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(len(h).to_bytes(8, "little") + h + b"".join(blobs))


def cmd_qwen2_fixture(args):
    """A tiny random Qwen2ForCausalLM directory (q/k/v biases, GQA, separate classifier, F32/F16/BF16
    weights, a GPT-2 ByteLevel tokenizer with fewer tokens than vocab_size) and its reference logits."""
    d = args.out
    os.makedirs(d, exist_ok=True)
    rng = np.random.default_rng(20261206)
    cfg = {"architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2", "hidden_act": "silu", "hidden_size": 32,
           "intermediate_size": 48, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
           "vocab_size": 300, "max_position_embeddings": 64, "rms_norm_eps": 1e-6, "rope_theta": 1000000.0,
           "tie_word_embeddings": False, "use_sliding_window": False, "sliding_window": 64, "max_window_layers": 2,
           "bos_token_id": None, "eos_token_id": 262, "torch_dtype": "bfloat16"}
    V, D, F, H, G = 300, 32, 48, 4, 2
    hd = D // H
    r = lambda *shape, s=0.3: rng.normal(0.0, s, shape).astype(np.float32)  # noqa: E731
    t = [("model.embed_tokens.weight", r(V, D, s=1.0), "BF16")]
    for l in range(2):
        p = "model.layers.%d." % l
        t += [(p + "input_layernorm.weight", 1.0 + r(D, s=0.1), "F32"),
              (p + "post_attention_layernorm.weight", 1.0 + r(D, s=0.1), "BF16"),
              (p + "self_attn.q_proj.weight", r(H * hd, D), "F16"), (p + "self_attn.q_proj.bias", r(H * hd), "F32"),
              (p + "self_attn.k_proj.weight", r(G * hd, D), "BF16"), (p + "self_attn.k_proj.bias", r(G * hd), "BF16"),
              (p + "self_attn.v_proj.weight", r(G * hd, D), "F32"), (p + "self_attn.v_proj.bias", r(G * hd), "F16"),
              (p + "self_attn.o_proj.weight", r(D, H * hd), "F32"),
              (p + "mlp.gate_proj.weight", r(F, D), "F16"), (p + "mlp.up_proj.weight", r(F, D), "BF16"),
              (p + "mlp.down_proj.weight", r(D, F), "F32")]
    t += [("model.norm.weight", 1.0 + r(D, s=0.1), "F32"), ("lm_head.weight", r(V, D, s=0.5), "F32")]
    write_safetensors(os.path.join(d, "model.safetensors"), t)
    with open(os.path.join(d, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
    # ByteLevel BPE: the 256 bytes in GPT-2's alphabet, a few merges, then two special tokens (ids < 300).
    b2u = bytes_to_unicode()
    vocab = {b2u[b]: b for b in range(256)}
    merges = [("\u0120", "t"), ("h", "e"), ("\u0120t", "he"), ("\u0120", "a"), ("\u00c3", "\u00a9")]
    for a, b in merges:
        vocab[a + b] = len(vocab)
    added = [{"id": 261, "content": "<|im_start|>", "special": True}, {"id": 262, "content": "<|endoftext|>", "special": True}]
    tok = {"version": "1.0", "added_tokens": added, "normalizer": None,
           "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False, "use_regex": True},
           "post_processor": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False, "use_regex": True},
           "decoder": {"type": "ByteLevel"},
           "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": "",
                     "end_of_word_suffix": "", "fuse_unk": False, "byte_fallback": False, "ignore_merges": False,
                     "vocab": vocab, "merges": [[a, b] for a, b in merges]}}
    with open(os.path.join(d, "tokenizer.json"), "w") as f:
        json.dump(tok, f, ensure_ascii=False)
    with open(os.path.join(d, "tokenizer_config.json"), "w") as f:
        json.dump({"bos_token": None, "eos_token": "<|endoftext|>", "pad_token": "<|endoftext|>",
                   "chat_template": "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
                                    "{% endfor %}"}, f, indent=2)
    _, w = load_dir(d)  # the stored (rounded) values
    tokens = [int(x) for x in rng.integers(0, 263, 24)]
    logits = forward(cfg, w, tokens)
    with open(os.path.join(d, "reference.json"), "w") as f:
        json.dump({"about": "tools/convert/hf_reference.py qwen2-fixture: float64 HF-convention logits at every position",
                   "atol": 1e-4, "tokens": tokens, "positions": list(range(len(tokens))),
                   "logits": [[float("%.9g" % v) for v in row] for row in logits]}, f, separators=(",", ":"))
        f.write("\n")
    print("%s: Qwen2 tiny model, %d tokens, logits up to |%.1f|" % (d, len(tokens), np.abs(logits).max()))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    f = sub.add_parser("fixture")
    f.add_argument("--dir", default=DEFAULT_DIR)
    f.add_argument("--tokens", type=int, default=128)
    c = sub.add_parser("compare")
    c.add_argument("--model", required=True)
    c.add_argument("--dir", default=DEFAULT_DIR)
    c.add_argument("--tokens", type=int, default=512)
    c.add_argument("--stories", type=int, default=1000)
    c.add_argument("--atol", type=float, default=1e-4)
    c.add_argument("--ids", default=None, help="ids of other stories (hf_tokenize.js), default DIR/hf_ids.json")
    t = sub.add_parser("tokens")
    t.add_argument("--model", required=True)
    t.add_argument("--dir", default=DEFAULT_DIR)
    t.add_argument("--ids", default=None)
    t.add_argument("--qtf", default=None, help="the qtf binary: ids from `qtf tokenize --ids` (BOS included)")
    q = sub.add_parser("qwen2-fixture")
    q.add_argument("--out", default=os.path.join(ROOT, "tests", "fixtures", "hf-qwen2-tiny"))
    args = ap.parse_args(argv)
    cmds = {"fixture": cmd_fixture, "compare": cmd_compare, "tokens": cmd_tokens, "qwen2-fixture": cmd_qwen2_fixture}
    return cmds[args.cmd](args) or 0


if __name__ == "__main__":
    sys.exit(main())
