"""llama2.c checkpoints (karpathy/llama2.c), numpy only (tools/convert/llama2c.py needs no torch).

read_llama2c() reads version 0 (legacy: 7 x int32 header, negative vocab size = separate classifier, then the
fp32 weights and two unused RoPE tables) and version 1 ("ak42" magic, 256-byte header, fp32); version 2 (Q8_0
groups) and anything else is refused with a clear error. read_llama2c_file() checks the file's size against
its header before reading the weights. write_llama2c() writes both versions (tests make tiny random
checkpoints with it). runc_forward() is the forward pass of llama2.c's run.c re-written in numpy straight
from the checkpoint arrays (independent of the .qtf conversion: the tests compare the two).
The C++ importer (engine/import/llama2c.cpp) implements the same checks and mapping.
"""
import hashlib
import os
import struct

import numpy as np

from llama_meta import LlamaConfig, model_meta


class CheckpointError(ValueError):
    pass


LLAMA2C_MAGIC = 0x616B3432  # "ak42"
LLAMA2C_FIELDS = ("dim", "hidden_dim", "n_layers", "n_heads", "n_kv_heads", "vocab_size", "seq_len")


def _llama2c_layout(h, version, shared):
    """[(name, shape)] of the fp32 arrays in file order (None name = skipped: v0's RoPE tables)."""
    d, f, L, H, KV, V, T = (h[k] for k in LLAMA2C_FIELDS)
    hs, kv = d // H, d // H * KV
    per = lambda n, *s: [("%s.%d" % (n, l), s) for l in range(L)]
    if version == 0:
        out = [("tok_emb", (V, d))] + per("rms_att", d) + per("wq", d, d) + per("wk", kv, d) + per("wv", kv, d) + \
            per("wo", d, d) + per("rms_ffn", d) + per("w1", f, d) + per("w2", d, f) + per("w3", f, d) + \
            [("rms_final", (d,)), ("freq_cos", (T, hs // 2)), ("freq_sin", (T, hs // 2))]
    else:
        out = per("rms_att", d) + per("rms_ffn", d) + [("rms_final", (d,)), ("tok_emb", (V, d))] + \
            per("wq", d, d) + per("wk", kv, d) + per("wv", kv, d) + per("wo", d, d) + \
            per("w1", f, d) + per("w2", d, f) + per("w3", f, d)
    if not shared:
        out.append(("wcls", (V, d)))
    return out


def _parse_header(head, n):
    """The header of a checkpoint of n bytes whose first bytes are head (at least min(n, 256) of them) ->
    (h, version, shared, offset, layout, floats); raises CheckpointError when it is not a supported header
    or n is not exactly the size it implies. Nothing past the header is needed: callers check the size
    before they read (or allocate for) the weights."""
    if n < 28:
        raise CheckpointError("not a llama2.c checkpoint: %d bytes, shorter than the 28-byte header" % n)
    if struct.unpack_from("<I", head, 0)[0] == LLAMA2C_MAGIC:
        if n < 256:
            raise CheckpointError("llama2.c checkpoint truncated: %d bytes, the versioned header has 256" % n)
        version = struct.unpack_from("<i", head, 4)[0]
        if version != 1:
            what = "Q8_0 (int8 groups); export it as version 1 (fp32)" if version == 2 else "unknown"
            raise CheckpointError("llama2.c checkpoint version %d is not supported: %s" % (version, what))
        vals = struct.unpack_from("<7i", head, 8)
        flag = head[36]
        if flag not in (0, 1):
            raise CheckpointError("llama2.c v1 header: shared-classifier flag is %d, not 0/1" % flag)
        shared, offset = flag == 1, 256
    else:
        version, vals, offset = 0, struct.unpack_from("<7i", head, 0), 28
        shared = vals[5] > 0
        vals = vals[:5] + (abs(vals[5]),) + vals[6:]
    h = dict(zip(LLAMA2C_FIELDS, vals))
    d, f, L, H, KV, V, T = vals
    problems = []
    # Vocabulary up to 2^20: the engine's limit, and what the stand-in tokenizer's characters can name.
    if not (1 <= d <= 65536 and 1 <= f <= 1 << 20 and 1 <= L <= 1024 and 1 <= H <= d and 1 <= V <= 1 << 20
            and 1 <= T <= 1 << 20):
        problems.append("sizes out of range")
    elif d % H or not (1 <= KV <= H) or H % KV or (d // H) % 2:
        problems.append("heads do not divide evenly (dim %% n_heads, n_heads %% n_kv_heads, even head size)")
    if problems:
        raise CheckpointError("not a llama2.c checkpoint (version %d header %s): %s" % (
            version, ", ".join("%s=%d" % kv for kv in zip(LLAMA2C_FIELDS, vals)), "; ".join(problems)))
    layout = _llama2c_layout(h, version, shared)
    floats = sum(int(np.prod(s)) for _, s in layout)
    want = offset + 4 * floats
    if n != want:
        raise CheckpointError(
            "llama2.c checkpoint size mismatch: the header (version %d, %s, %s classifier) needs %d bytes, the file "
            "has %d (%s)" % (version, ", ".join("%s=%d" % kv for kv in h.items()), "shared" if shared else "separate",
                             want, n, "truncated" if n < want else "trailing bytes"))
    h.update(version=version, shared=shared)
    return h, offset, layout, floats


def _split(arr, layout):
    out, pos = {}, 0
    for name, shape in layout:
        size = int(np.prod(shape))
        out[name] = arr[pos:pos + size].reshape(shape)
        pos += size
    return out


def read_llama2c(data):
    """bytes of a llama2.c checkpoint -> (header dict with version and shared, {name: float32 array})."""
    h, offset, layout, floats = _parse_header(data[:256], len(data))
    return h, _split(np.frombuffer(data, dtype="<f4", count=floats, offset=offset), layout)


def read_llama2c_file(path):
    """read_llama2c on a file, its size checked against the header before the weights are read."""
    n = os.path.getsize(path)
    with open(path, "rb") as f:
        head = f.read(256)
        h, offset, layout, floats = _parse_header(head, n)
        f.seek(offset)
        arr = np.fromfile(f, dtype="<f4", count=floats)
    if arr.size != floats:
        raise CheckpointError("llama2.c checkpoint changed while it was read: %d of %d values" % (arr.size, floats))
    return h, _split(arr, layout)


def write_llama2c(path, h, weights, version=0, shared=True):
    """Writes a llama2.c checkpoint (version 0 or 1) from a header dict and {name: array} (read_llama2c's
    names; wcls only when not shared, freq tables made here for v0)."""
    hh = dict(h)
    vals = [hh[k] for k in LLAMA2C_FIELDS]
    if version == 0:
        head = struct.pack("<7i", *(vals[:5] + [vals[5] if shared else -vals[5]] + vals[6:]))
    else:
        head = struct.pack("<Ii7iB", LLAMA2C_MAGIC, version, *vals, int(shared))
        head += b"\0" * (256 - len(head))
    w = dict(weights)
    hs = hh["dim"] // hh["n_heads"]
    freqs = 1.0 / (10000.0 ** (np.arange(0, hs, 2)[: hs // 2].astype(np.float32) / hs))
    ang = np.outer(np.arange(hh["seq_len"]), freqs).astype(np.float32)
    w.setdefault("freq_cos", np.cos(ang))
    w.setdefault("freq_sin", np.sin(ang))
    body = b"".join(np.ascontiguousarray(w[name], dtype="<f4").reshape(shape).tobytes()
                    for name, shape in _llama2c_layout(hh, version, shared))
    with open(path, "wb") as fh:
        fh.write(head + body)


def random_llama2c_weights(h, shared, seed, std=0.3):
    rng = np.random.default_rng(seed)
    w = {}
    for name, shape in _llama2c_layout(h, 1, shared):
        if name.startswith("rms"):
            w[name] = (1 + 0.2 * rng.standard_normal(shape)).astype(np.float32)
        else:
            w[name] = (std * rng.standard_normal(shape)).astype(np.float32)
    return w


def runc_forward(h, w, tokens, angles="exact", store="float64"):
    """llama2.c run.c's forward pass in numpy (float64), one token at a time with a KV cache: -> [T, V].
    angles="exact": the rotary angle pos * theta^(-i/hs) in float64; "float32": the angle as run.c (and
    llama2.c's model.py) form it, the float32 product pos * (1 / powf(theta, i / hs)); then cos/sin in float64.
    store="float32": an ideal float32 engine (docs/llama.md, Precision): every step still exact, its result
    rounded once to float32 wherever an engine keeps it in memory (the residual stream, norm outputs, every
    matvec output, q and k after the rotation, the rotary cos/sin table, attention outputs, the FFN hidden
    row, the logits); scores and softmax stay exact: the floor of any float32 engine, up to which roundings
    happen to cancel."""
    d, f, L, H, KV = (h[k] for k in LLAMA2C_FIELDS[:5])
    hs, kv_mul = d // H, H // KV
    kcache, vcache, out = [[] for _ in range(L)], [[] for _ in range(L)], []
    if store not in ("float64", "float32"):
        raise ValueError("store must be float64 or float32, not %r" % (store,))

    def r(a):  # a stored value
        return np.asarray(a, dtype=np.float32).astype(np.float64) if store == "float32" else a

    def rms(x, g):
        return r(g * (x / np.sqrt(np.mean(x * x) + 1e-5)))

    def angle(pos, i):
        if angles == "exact":
            return pos * 10000.0 ** (-i / hs)
        freq = np.float32(1.0) / np.float32(10000.0 ** float(np.float32(i) / np.float32(hs)))  # powf, rounded once
        return float(np.float32(pos) * freq)

    def rot(vec, pos):
        v = np.array(r(vec))  # a copy
        for i in range(0, len(v), 2):
            a = angle(pos, i % hs)
            c, s = r(np.cos(a)), r(np.sin(a))
            v[i], v[i + 1] = v[i] * c - v[i + 1] * s, v[i] * s + v[i + 1] * c
        return r(v)

    for pos, tok in enumerate(tokens):
        x = w["tok_emb"][tok].astype(np.float64)
        for l in range(L):
            xb = rms(x, w["rms_att.%d" % l])
            q, k, v = rot(w["wq.%d" % l] @ xb, pos), rot(w["wk.%d" % l] @ xb, pos), r(w["wv.%d" % l] @ xb)
            kcache[l].append(k)
            vcache[l].append(v)
            K, V = np.array(kcache[l]), np.array(vcache[l])
            att = np.zeros(d)
            for hh in range(H):
                g = hh // kv_mul
                sc = K[:, g * hs:(g + 1) * hs] @ q[hh * hs:(hh + 1) * hs] / np.sqrt(hs)
                p = np.exp(sc - sc.max())
                p /= p.sum()
                att[hh * hs:(hh + 1) * hs] = p @ V[:, g * hs:(g + 1) * hs]
            x = r(x + r(w["wo.%d" % l] @ r(att)))
            xb = rms(x, w["rms_ffn.%d" % l])
            h1, h3 = r(w["w1.%d" % l] @ xb), r(w["w3.%d" % l] @ xb)
            x = r(x + r(w["w2.%d" % l] @ r(h1 / (1 + np.exp(-h1)) * h3)))
        x = rms(x, w["rms_final"])
        out.append(r((w["tok_emb"] if "wcls" not in w else w["wcls"]) @ x))
    return np.array(out)


def stand_in_tokens(vocab):
    """The converted file's stand-in `char` tokenizer: token id i is the character U+0100+i (surrogates
    skipped). It is NOT the model's text tokenizer; it makes token ids typeable and printable."""
    out, cp = [], 0x100
    for _ in range(vocab):
        if 0xD800 <= cp <= 0xDFFF:
            cp = 0xE000
        out.append(chr(cp))
        cp += 1
    return out


def convert_llama2c(data, provenance=None):
    """llama2.c checkpoint bytes -> (meta, [(qtf name, float32 array)], header), header and size checked."""
    h, w = read_llama2c(data)
    return _convert(h, w, len(data), hashlib.sha256(data).hexdigest(), provenance)


def convert_llama2c_file(path, provenance=None):
    """convert_llama2c on a file: its size is checked against the header before anything else is read."""
    h, w = read_llama2c_file(path)
    sha = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            sha.update(chunk)
    return _convert(h, w, os.path.getsize(path), sha.hexdigest(), provenance)


def _convert(h, w, n_bytes, sha256, provenance):
    cfg = LlamaConfig(vocab_size=h["vocab_size"], d_model=h["dim"], n_layers=h["n_layers"], n_heads=h["n_heads"],
                      n_kv_heads=h["n_kv_heads"], d_ff=h["hidden_dim"], context=h["seq_len"], norm="rmsnorm",
                      positions="rotary", rope_theta=10000.0, activation="swiglu", linear_bias=0,
                      tied_embeddings=int(h["shared"]), ln_eps=1e-5)
    prov = {"source": "llama2.c checkpoint version %d" % h["version"], "source_bytes": n_bytes,
            "source_sha256": sha256, "created_by": "tools/convert/llama2c.py"}
    prov.update(provenance or {})
    tensors = [("tok_emb", w["tok_emb"])]
    for l in range(cfg.n_layers):
        p = "blk.%d." % l
        tensors += [(p + "ln1.w", w["rms_att.%d" % l]), (p + "ln2.w", w["rms_ffn.%d" % l]),
                    (p + "attn.q.w", w["wq.%d" % l]), (p + "attn.k.w", w["wk.%d" % l]),
                    (p + "attn.v.w", w["wv.%d" % l]), (p + "attn.o.w", w["wo.%d" % l]),
                    (p + "ffn.gate.w", w["w1.%d" % l]), (p + "ffn.up.w", w["w3.%d" % l]),
                    (p + "ffn.down.w", w["w2.%d" % l])]
    tensors.append(("lnf.w", w["rms_final"]))
    if not h["shared"]:
        tensors.append(("head.w", w["wcls"]))
    return model_meta(cfg, stand_in_tokens(cfg.vocab_size), prov), tensors, h
