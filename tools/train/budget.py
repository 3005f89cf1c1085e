"""A per-matrix compressor under a file-byte budget: measured sensitivity, an exact knapsack, healing by
distillation, a .qtf with mixed per-tensor types (issue 27, parts 1 and 3; docs/llama.md "Compression
under a byte budget").

    python3 tools/train/budget.py --model IN --budget BYTES|1/8 --text STORIES.txt --out OUT.qtf \
        [--stories 1-300] [--family mix|quant|tt] [--heal-seconds 60] [--device cpu|cuda] [--qtf build/qtf] \
        [--rounding best|rtn|imatrix|gptq] [--learn-scales] [--json R.json]

IN is anything the engine imports (a .qtf, a GGUF, a llama2.c checkpoint with --tokenizer, a Hugging Face
directory): anything not a .qtf goes through `qtf convert` first, then llama.load_qtf loads it into the
PyTorch Llama reference. --budget is the output file's size in bytes, or a fraction of the f32 file
(e.g. 1/8). --text holds stories separated by <|endoftext|>; --stories picks the ones this tool may use
(calibration and healing); keep the stories you report on out of it.

Two file kinds, because the engine's files are either dense (`model.tensorized` 0) or tensorized (every
linear a TT with one factorisation per width), never a mix:
  quant  dense file; every matrix (the linears and the embedding) f32, f16, q8 (int8, scale per row),
         q4 (GGUF Q4_0 blocks, the engine's scale search) or q3 (3-bit blocks of 32, the same search; or
         q3a: the same blocks with absmax scales, max / -4, which some matrices lose less to), or q4s / q3s
         (q4's / q3's codes, each block's scale a 6-bit multiple of an f16 scale per 8 blocks: 4.25 / 3.25
         bits a value instead of 4.5 / 3.5)
  tt     tensorized file with factors d = (1, d), d_ff = (d_ff, 1), kv = (kv, 1): then q and o are one
         [1, d, d, 1] core (dense, f32/f16/i8), and k, v, gate, up, down are TTs with m = (M, 1),
         n = (1, N) (or the transpose), i.e. a truncated SVD W = A B at a rank r of the ladder, the two
         cores i8 (one scale per core, bonds balanced first; the engine reads TT cores in place only as
         f32/f16/i8); the embedding as in quant
  mix    both, and the one whose healed model has the lower KL on the calibration stories set aside for it
Each option's cost: the KL(original || model with only this matrix changed) on calibration windows,
measured one matrix at a time; the choice minimises the sum of those KLs within the budget, exactly
(a multiple-choice knapsack by dynamic programming over 64-byte units, the file's alignment), then
healing: KL to the original on the calibration stories plus the original's own samples, the quantised
values through a straight-through estimator, the best step by the KL on the set-aside stories.

Rounding of the block kinds (q4, q3, q3a, q4s, q3s; --rounding): rtn, the writer's own (the engine's scale search,
nearest code); imatrix, the search weighted by each input's second moment on the calibration windows;
gptq, error-compensated rounding by X^T X of the calibration inputs (gptq.py; for the tied embedding the
final norm's outputs, its inputs as the classifier); best (the default), rtn and gptq both offered, the
knapsack picking per matrix. The sensitivities are measured with that rounding, and
healing keeps each block matrix's grid (GridQuant: its scales fixed, or trained with --learn-scales, the
codes round(w / d) straight through), the file written with exactly those scales and codes.

Bad input (a budget below the smallest file, a model the importer refuses, text with characters the
tokenizer lacks) stops with one line and leaves no output file.
"""
import argparse
import copy
import json
import math
import random
import os
import subprocess
import sys
import tempfile
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
import torch.nn.utils.parametrize as parametrize

import gptq
import llama
from engine_sample import sample_engine
from qtf_format import (SUPER_KINDS, QtfError, _block_codes, _blocks_of, _encode_blocks, _lround, meta_entry_bytes, read_qtf,
                        super_block_scales, super_scales, tensor_nbytes, write_qtf)

ALIGN = 64
LINEARS = (("q", "attn.q"), ("k", "attn.k"), ("v", "attn.v"), ("o", "attn.o"), ("gate", "ffn.gate"),
           ("up", "ffn.up"), ("down", "ffn.down"))
RANK_LADDER = (2, 4, 8, 16, 24, 32, 48, 64, 96, 128, 192, 256)
DOC_SEP = "<|endoftext|>"
ROUNDINGS = ("rtn", "imatrix", "gptq", "best")  # best: both rtn and gptq offered, the knapsack picks per matrix
QUANT_KINDS = ("f32", "f16", "q8", "q4", "q3", "q3a", "q4s", "q3s")  # what a matrix of the quant family may become
BLOCK_RANGE = {"q4": (-8, 7), "q3": (-4, 3), "q3a": (-4, 3), "q4s": (-8, 7), "q3s": (-4, 3)}  # the block kinds' codes


class BudgetError(Exception):
    """Bad input: printed as one line, nothing written."""


def aligned(n):
    return (n + ALIGN - 1) // ALIGN * ALIGN


# ---------------------------------------------------------------------------------------------------
# The knapsack

def choose(items, capacity):
    """Multiple-choice knapsack: items = [[(cost units >= 0, loss), ...] per item]; picks one option per item
    with sum(cost) <= capacity minimising sum(loss), exactly (dynamic programming). Returns (the option
    index per item, total loss), or None when even the cheapest options do not fit."""
    if sum(min(c for c, _ in opts) for opts in items) > capacity:
        return None
    cap = int(capacity)
    INF = float("inf")
    best = np.full(cap + 1, INF)
    best[0] = 0.0
    picks = []
    for opts in items:
        new = np.full(cap + 1, INF)
        arg = np.full(cap + 1, -1, dtype=np.int64)
        for j, (c, loss) in enumerate(opts):
            c = int(c)
            if c > cap:
                continue
            cand = np.full(cap + 1, INF)
            cand[c:] = best[:cap + 1 - c] + loss
            better = cand < new
            new[better] = cand[better]
            arg[better] = j
        picks.append(arg)
        best = new
    end = int(np.argmin(best))
    total = float(best[end])
    choice = []
    for opts, arg in zip(reversed(items), reversed(picks)):
        j = int(arg[end])
        choice.append(j)
        end -= int(opts[j][0])
    return choice[::-1], total


def greedy(items, capacity):
    """The dKL/dbytes greedy (for comparison): start at every item's lossiest... no: at every item's
    least-loss option, then take the step with the least added loss per unit saved until it fits."""
    choice = [min(range(len(o)), key=lambda j: (o[j][1], o[j][0])) for o in items]
    used = sum(items[i][j][0] for i, j in enumerate(choice))
    while used > capacity:
        step = None
        for i, opts in enumerate(items):
            c0, l0 = opts[choice[i]]
            for j, (c, l) in enumerate(opts):
                if c < c0:
                    rate = (l - l0) / (c0 - c)
                    if step is None or rate < step[0]:
                        step = (rate, i, j)
        if step is None:
            return None
        _, i, j = step
        used += items[i][j][0] - items[i][choice[i]][0]
        choice[i] = j
    return choice, sum(items[i][j][1] for i, j in enumerate(choice))


# ---------------------------------------------------------------------------------------------------
# Model, text and tokens

def find_qtf(explicit=None):
    here = os.path.dirname(os.path.abspath(__file__))
    root = os.path.join(here, "..", "..")
    cands = [explicit] if explicit else [os.environ.get("QTF_CLI")] + [
        os.path.join(root, b, "qtf") for b in (os.environ.get("QTF_BUILD_DIR") or "build", "build")]
    for c in cands:
        if c and os.path.isfile(c) and os.access(c, os.X_OK):
            return os.path.abspath(c)
    raise BudgetError("the qtf command-line tool was not found (--qtf PATH, or build it: cmake --build build --target qtf)")


def last_line(s):
    lines = [l.strip() for l in s.strip().splitlines() if l.strip()]
    return lines[-1] if lines else "(no message)"


def import_model(path, qtf, workdir, tokenizer=None):
    """-> the path of a .qtf of the model (converted by the engine when it is not one already)."""
    if not os.path.exists(path):
        raise BudgetError("model %s: no such file or directory" % path)
    if os.path.isfile(path):
        with open(path, "rb") as f:
            if f.read(8) == b"QTFMODEL":
                r = subprocess.run([qtf, "verify", "--deep", path], capture_output=True, text=True)
                if r.returncode != 0:
                    raise BudgetError("model %s: the engine refuses it: %s" % (path, last_line(r.stderr + r.stdout)))
                return path
    out = os.path.join(workdir, "imported.qtf")
    cmd = [qtf, "convert", path, out] + (["--tokenizer", tokenizer] if tokenizer else [])
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0 or not os.path.exists(out):
        raise BudgetError("model %s: the engine cannot import it: %s" % (path, last_line(r.stderr + r.stdout)))
    return out


def load_reference(qtf_path):
    meta, _ = read_qtf(qtf_path)
    if meta.get("model.tensorized", 0) or meta.get("model.n_qubits", 0):
        raise BudgetError("model %s: already tensorized or with quantum parts; give the dense original" % qtf_path)
    if any(k in meta for k in ("model.lora_alpha", "model.memory_tokens")):
        raise BudgetError("model %s: LoRA adapters or memory slots are not handled" % qtf_path)
    # the Llama reference also covers the base block (no block options: layernorm, learned positions, biases)
    model, meta = llama.load_qtf(qtf_path)
    return model.float().eval(), meta


def parse_range(spec, n):
    if not spec:
        return 0, n
    a, _, b = spec.partition("-")
    try:
        lo, hi = int(a), int(b or a)
    except ValueError:
        raise BudgetError("--stories %r: expected A-B (1-based, inclusive)" % spec)
    if not 1 <= lo <= hi <= n:
        raise BudgetError("--stories %s: the text has %d stories" % (spec, n))
    return lo - 1, hi


def read_stories(path, spec=None, plain=0):
    """The stories of a text (separated by <|endoftext|>, each stripped), those of spec (A-B, 1-based). plain:
    a text without separators (tiny Shakespeare) cut into pieces of that many characters, kept as they are
    (the last shorter one too), which spec numbers like stories; a tokenizer without BOS then reads the
    pieces back to back as the text itself."""
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as e:
        raise BudgetError("text %s: %s" % (path, e.strerror))
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise BudgetError("text %s: not UTF-8 (byte %d)" % (path, e.start))
    if plain:
        stories = [text[i:i + plain] for i in range(0, len(text), plain)]
    else:
        stories = [s.strip() for s in text.split(DOC_SEP)]
        stories = [s for s in stories if s]
    if not stories:
        raise BudgetError("text %s: no stories" % path)
    lo, hi = parse_range(spec, len(stories))
    return stories[lo:hi]


def tokenize(qtf, model_path, text, workdir):
    """Engine token ids of text (BOS first when the tokenizer adds one); (ids, skipped bytes)."""
    p = os.path.join(workdir, "tok.txt")
    with open(p, "w", encoding="utf-8") as f:
        f.write(text)
    r = subprocess.run([qtf, "tokenize", "-m", model_path, "-f", p, "--ids"], capture_output=True, text=True)
    if r.returncode != 0:
        raise BudgetError("tokenizer: %s" % last_line(r.stderr))
    skipped = "have no token" in r.stderr
    return json.loads(r.stdout.strip() or "[]"), skipped


def engine_binding(qtf):
    """The Python binding (python/qtf) over the libqtf.so built next to the qtf tool, or None."""
    lib = os.path.join(os.path.dirname(qtf), "libqtf.so")
    if not os.path.exists(lib):
        return None
    os.environ.setdefault("QTF_LIBRARY", lib)
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "python"))
    try:
        import qtf as binding
        return binding
    except Exception:  # noqa: BLE001 (no binding: the slower paths)
        return None


def lacks_token(meta, ids, skipped):
    """Whether `qtf tokenize` (ids, skipped) met a character the tokenizer has no token for: bytes it skipped,
    or an <unk> after the first id."""
    unk = meta.get("tokenizer.unk_id", -1)
    return skipped or (isinstance(unk, int) and unk >= 0 and unk in ids[1:])


def encode_stories(qtf, model_path, meta, stories, workdir, binding=None, drop_unknown=False, log=print):
    """Per story the ids (BOS first); a character the tokenizer has no token for (an <unk>, or bytes it
    skips) is an error naming it. The whole text is checked by one `qtf tokenize`; the stories' ids come
    from the binding (in process) when there is one, else one `qtf tokenize` per story."""
    lacks = lambda ids, skipped: lacks_token(meta, ids, skipped)  # noqa: E731

    def find_bad(texts):
        for i, s in enumerate(texts):
            ids, skipped = tokenize(qtf, model_path, s, workdir)
            if lacks(ids, skipped):
                for ch in sorted(set(s)):
                    if lacks(*tokenize(qtf, model_path, ch, workdir)):
                        raise BudgetError("text: story %d has the character %r (U+%04X), which the model's "
                                          "tokenizer has no token for (it would be <unk> or dropped)" % (i + 1, ch, ord(ch)))
                raise BudgetError("text: story %d tokenizes to <unk> (no single character does)" % (i + 1))

    if lacks(*tokenize(qtf, model_path, "\n".join(stories), workdir)):
        if drop_unknown:  # keep the stories every character of which has a token
            keep = [s for s in stories if not lacks(*tokenize(qtf, model_path, s, workdir))]
            log("text: %d of %d stories left out: characters the tokenizer has no token for" % (
                len(stories) - len(keep), len(stories)))
            stories = keep
            if not stories:
                raise BudgetError("text: every story has characters the model's tokenizer has no token for")
        else:
            find_bad(stories)
    if binding is None:
        return [tokenize(qtf, model_path, s, workdir)[0] for s in stories]
    m = binding.Model(model_path)
    out = [[int(t) for t in m.tokenize(s)] for s in stories]
    m.close()
    # the binding adds no special tokens: take qtf tokenize's (BOS when the tokenizer adds one) from story 1
    first = tokenize(qtf, model_path, stories[0], workdir)[0]
    k = len(first) - len(out[0])
    if k < 0 or first[k:] != out[0]:
        raise BudgetError("internal: the binding's ids differ from qtf tokenize's on story 1")
    return [first[:k] + ids for ids in out]


def windows(id_lists, T):
    """The stories' ids concatenated, cut into windows of T tokens (the last partial one dropped)."""
    flat = [t for ids in id_lists for t in ids]
    n = len(flat) // T
    if n == 0:
        raise BudgetError("text: %d tokens, fewer than one window of %d" % (len(flat), T))
    return torch.tensor(flat[:n * T], dtype=torch.long).view(n, T)


@torch.no_grad()
def sample(model, n, T, seed, bos, device=None, chunk=None):
    """n sequences of T tokens from the model (BOS, then temperature 1), drawn on device (default the CPU) in
    chunks of `chunk` sequences (default all at once). Returned on the CPU."""
    device = torch.device(device or "cpu")
    g = torch.Generator(device=device).manual_seed(seed)
    m = model if device.type == "cpu" else copy.deepcopy(model).to(device)
    out = []
    for i in range(0, n, chunk or n):
        x = torch.full((min(chunk or n, n - i), 1), bos, dtype=torch.long, device=device)
        for _ in range(T - 1):
            logits = m(x)[0][:, -1]
            nxt = torch.multinomial(torch.softmax(logits.double(), -1), 1, generator=g)
            x = torch.cat([x, nxt], 1)
        out.append(x.cpu())
    return torch.cat(out)


# ---------------------------------------------------------------------------------------------------
# Options: what each matrix may become, its bytes and its values

def roundtrip(a, kind):
    """The values a float array has once stored as kind (f32, f16, q8, q4, q3, i8) by the writer."""
    if kind == "f32":
        return np.asarray(a, dtype=np.float32)
    blob = write_qtf(None, {}, [("x", np.asarray(a, dtype=np.float32), kind)])
    return read_qtf(blob)[1]["x"].astype(np.float32)


def balance(A, B):
    """Scales bond a by d_a on A's column and 1/d_a on B's row so the two have the same largest value
    (W = A B unchanged; per-core int8 then wastes less range, as the engine's balance_bonds)."""
    la = np.abs(A).max(axis=0)
    rb = np.abs(B).max(axis=1)
    d = np.where((la > 0) & (rb > 0), np.sqrt(rb / np.where(la > 0, la, 1)), 1.0)
    return (A * d[None, :]).astype(np.float32), (B / d[:, None]).astype(np.float32)


class Matrix:
    """One matrix of the model and its options. name: the file's prefix ('tok_emb', 'blk.0.attn.q', ...);
    W: [M, N] float32 (out x in)."""

    def __init__(self, name, W, role, rounding="rtn", H=None):
        # a copy: W must not follow the parameter it came from while options are tried in it (measure)
        self.name, self.W, self.role = name, np.array(W, dtype=np.float32, copy=True), role  # role: emb, dense, lowrank
        self.options = []  # dicts: kind ('quant'/'tt'), dtype, rank, bytes, loss
        # rounding of the q4/q3/q3a options (ROUNDINGS); H: X^T X of the matrix's inputs on calibration text
        self.rounding, self.H = rounding, H
        self.grids = {}  # (dtype, rounding) -> (scales [M, nb], codes [M, nb * 32], master [M, N]): block_grid
        self.supers = {}  # (q4s/q3s, rounding) -> (group scales D [G], sub-scales s [G, 8]): super_grid

    def __repr__(self):
        return "Matrix(%s %s)" % (self.name, self.W.shape)


_SVD = {}


def lowrank_factors(W, r):
    """TT-SVD with factors m = (M, 1), n = (1, N) at rank r, which is one truncated SVD: W ~ A [M, r] B [r, N],
    the singular values split evenly between the two cores (the SVD of each matrix is computed once)."""
    key = (W.shape, W.tobytes()[:64], float(W.sum()))
    if key not in _SVD:
        _SVD.clear() if len(_SVD) > 64 else None
        _SVD[key] = np.linalg.svd(W.astype(np.float64), full_matrices=False)
    U, S, Vt = _SVD[key]
    s = np.sqrt(S[:r])
    return (U[:, :r] * s[None, :]).astype(np.float32), (s[:, None] * Vt[:r]).astype(np.float32)


def lowrank_values(W, r, dtype):
    A, B = lowrank_factors(W, r)
    if dtype == "i8":
        A, B = balance(A, B)
    A, B = roundtrip(A, dtype), roundtrip(B, dtype)
    return A @ B


def block_grid(m, dtype, rounding):
    """(scales [M, nb], codes [M, nb * 32], master [M, N]) of m as a q4/q3/q3a matrix by rounding: rtn the
    writer's own (qtf_format: the engine's search, absmax for q3a), imatrix the search weighted by the inputs'
    second moments, gptq error-compensated rounding (gptq.py). master: the float values healing starts from,
    which round to the codes at those scales (the matrix itself for rtn, GPTQ's updated columns for gptq)."""
    if dtype in SUPER_KINDS:
        return super_grid(m, dtype, rounding)
    if (dtype, rounding) not in m.grids:
        lo, hi = BLOCK_RANGE[dtype]
        M, N = m.W.shape
        nb = (N + 31) // 32
        if rounding == "rtn" or m.H is None:
            d, code = _encode_blocks(m.W, lo, hi, dtype != "q3a", dtype)
            d, q = d.reshape(M, nb), (code.astype(np.int16) + lo).reshape(M, nb * 32).astype(np.int8)
            master = m.W
        else:
            d, q, master = gptq.round_blocks(m.W, m.H, lo, hi, "absmax" if dtype == "q3a" else "search",
                                             propagate=rounding == "gptq")
            d, q, master = d.numpy(), q.numpy(), master.numpy()
        m.grids[dtype, rounding] = (d, q, np.asarray(master, dtype=np.float32))
    return m.grids[dtype, rounding]


def super_grid(m, dtype, rounding):
    """block_grid for q4s/q3s: the base kind's (q4/q3) scales set each group's D (qtf_format.super_scales); the
    blocks' scales are then the nearest s D, and the codes rounded at those (rtn: the values as they are; gptq:
    GPTQ with each block's searched scale snapped onto its group's grid). m.supers[dtype, rounding]: (D, s)."""
    if (dtype, rounding) not in m.grids:
        lo, hi = BLOCK_RANGE[dtype]
        d0, _, _ = block_grid(m, SUPER_KINDS[dtype][1], rounding)
        D, s, d = super_scales(d0)
        M, nb = d0.shape
        if rounding == "rtn" or m.H is None:
            v, n_valid = _blocks_of(m.W)
            code, _ = _block_codes(v, n_valid, d, lo, hi)
            q = (code.astype(np.int16) + lo).reshape(M, nb * 32).astype(np.int8)
            d, master = d.reshape(M, nb), m.W
        else:
            Dg = np.repeat(D.astype(np.float32), 8)[:M * nb].reshape(M, nb)  # each block's group scale
            S = np.zeros((M, nb), dtype=np.int8)

            def snap(b, db):
                live = Dg[:, b] > 0
                with np.errstate(divide="ignore", invalid="ignore"):
                    r = (db.astype(np.float32) / np.where(live, Dg[:, b], np.float32(1))).astype(np.float32)
                S[:, b] = np.where(live, np.clip(_lround(r), -31, 31), 0)
                return (S[:, b].astype(np.float32) * Dg[:, b]).astype(np.float16).astype(np.float32)

            d, q, master = gptq.round_blocks(m.W, m.H, lo, hi, "search", propagate=rounding == "gptq", snap=snap)
            d, q, master = d.numpy(), q.numpy(), master.numpy()
            s = np.zeros(D.size * 8, dtype=np.int8)
            s[:M * nb] = S.reshape(-1)
            s = s.reshape(-1, 8)
            assert np.array_equal(super_block_scales(D, s)[:M * nb], d.reshape(-1))
        m.grids[dtype, rounding] = (d, q, np.asarray(master, dtype=np.float32))
        m.supers[dtype, rounding] = (D.astype(np.float32), s)
    return m.grids[dtype, rounding]


def option_values(m, opt):
    if opt["kind"] == "quant" or m.role in ("emb", "dense"):
        if opt["dtype"] in BLOCK_RANGE:
            d, q, _ = block_grid(m, opt["dtype"], opt["rounding"])
            return gptq.dequantize(d, q, m.W.shape[1]).numpy()
        return roundtrip(m.W, opt["dtype"])
    return lowrank_values(m.W, opt["rank"], opt["dtype"])


def build_options(m, family, kinds=None):
    """m's options in family; kinds: the quantisation kinds offered (default QUANT_KINDS; f32 always)."""
    M, N = m.W.shape
    opts = []
    if family == "quant" or m.role == "emb":
        for dt in QUANT_KINDS:
            if kinds is not None and dt != "f32" and dt not in kinds:
                continue
            if dt not in BLOCK_RANGE:
                opts.append(dict(kind="quant", dtype=dt, bytes=aligned(tensor_nbytes((M, N), dt))))
                continue
            for r in ("rtn", "gptq") if m.rounding == "best" else (m.rounding,):
                opts.append(dict(kind="quant", dtype=dt, rounding=r, bytes=aligned(tensor_nbytes((M, N), dt))))
    elif m.role == "dense":  # q, o in the tt file: core 0 is [1,1,1,1], core 1 is [1, M, N, 1]
        for dt in ("f32", "f16", "i8"):
            opts.append(dict(kind="tt", dtype=dt, rank=1, bytes=aligned(tensor_nbytes((1, 1, 1, 1), dt)) +
                             aligned(tensor_nbytes((1, M, N, 1), dt))))
    else:
        top = min(M, N)
        for r in sorted(set(min(r, top) for r in RANK_LADDER)):
            for dt in ("i8",):  # f16 cores: twice the bytes for an error far below the rank's (not offered)
                b = aligned(tensor_nbytes((1, M, 1, r), dt)) + aligned(tensor_nbytes((r, 1, N, 1), dt))
                opts.append(dict(kind="tt", dtype=dt, rank=r, bytes=b))
    m.options = opts
    return opts


def matrices(model, family, rounding="rtn", H=None, kinds=None):
    """The model's matrices and their options; H: {name: X^T X of its inputs} (input_moments) for rounding
    imatrix/gptq; kinds: build_options'."""
    cfg = model.cfg
    H = H or {}
    out = [Matrix("tok_emb", model.tok_emb.weight.detach().numpy(), "emb", rounding, H.get("tok_emb"))]
    if not cfg.tied_embeddings:
        out.append(Matrix("head", model.head.detach().numpy(), "emb", rounding, H.get("head")))
    if cfg.positions == "learned":  # a table added to the input, read by no linear: plain rounding only
        out.append(Matrix("pos_emb", model.pos_emb.weight.detach().numpy(), "emb", "rtn"))
    for l, blk in enumerate(model.blocks):
        for n, p in LINEARS:
            lin = getattr(blk, n, None)
            if lin is None:
                continue
            role = "dense" if (family == "quant" or n in ("q", "o")) else "lowrank"
            name = "blk.%d.%s" % (l, p)
            out.append(Matrix(name, lin.weight.detach().numpy(), role, rounding, H.get(name)))
    for m in out:
        build_options(m, family, kinds)
    return out


def linear_module(model, name):
    """The module of matrix `name` ('tok_emb', 'pos_emb' or 'blk.L.a.b'; a separate head is a bare parameter,
    no module)."""
    if name in ("tok_emb", "pos_emb"):
        return getattr(model, name)
    _, l, a, b = name.split(".")
    return getattr(model.blocks[int(l)], dict((p, n) for n, p in LINEARS)[a + "." + b])


def weight_param(model, name):
    if name == "head":
        return model.head
    return linear_module(model, name).weight


@torch.no_grad()
def input_moments(model, x, batch=8):
    """{matrix name: X^T X (float64 numpy [N, N])} of each linear's inputs over windows x; for the tied
    embedding (and a separate head) the final norm's outputs, the classifier's inputs."""
    acc, hooks = {}, []

    def hook(name):
        def f(mod, inp, out):
            v = (out if name in ("tok_emb", "head") else inp[0]).detach().double()
            v = v.reshape(-1, v.shape[-1])
            acc[name] = acc.get(name, 0) + v.T @ v
        return f

    for l, blk in enumerate(model.blocks):
        for n, p in LINEARS:
            lin = getattr(blk, n, None)
            if lin is not None:
                hooks.append(lin.register_forward_hook(hook("blk.%d.%s" % (l, p))))
    hooks.append(model.lnf.register_forward_hook(hook("tok_emb" if model.cfg.tied_embeddings else "head")))
    try:
        for i in range(0, len(x), batch):
            model(x[i:i + batch])
    finally:
        for h in hooks:
            h.remove()
    return {k: v.numpy() for k, v in acc.items()}


# ---------------------------------------------------------------------------------------------------
# Sensitivity

@torch.no_grad()
def teacher_logprobs(model, x, batch=8):
    return torch.cat([F.log_softmax(model(x[i:i + batch])[0].float(), -1) for i in range(0, len(x), batch)])


@torch.no_grad()
def kl_to(model, x, t_lp, batch=8):
    """Mean KL(teacher || model) per position, and greedy agreement, on windows x."""
    kl, agree, n = 0.0, 0, 0
    for i in range(0, len(x), batch):
        lp = F.log_softmax(model(x[i:i + batch])[0].float(), -1)
        t = t_lp[i:i + batch]
        kl += (t.exp() * (t - lp)).sum().item()
        agree += (t.argmax(-1) == lp.argmax(-1)).sum().item()
        n += t.shape[0] * t.shape[1]
    return kl / n, agree / n


@torch.no_grad()
def text_loss(model, x, batch=8):
    """Mean next-token cross-entropy (nats) of model on windows x."""
    tot, n = 0.0, 0
    for i in range(0, len(x), batch):
        xb = x[i:i + batch]
        lp = F.log_softmax(model(xb)[0].float(), -1)
        tot += F.nll_loss(lp[:, :-1].reshape(-1, lp.shape[-1]), xb[:, 1:].reshape(-1), reduction="sum").item()
        n += xb.shape[0] * (xb.shape[1] - 1)
    return tot / n


@torch.no_grad()
def measure(model, mats, x, t_lp, log=print):
    """Each option's KL with only its matrix changed (the others as in the original)."""
    t0 = time.time()
    for m in mats:
        p = weight_param(model, m.name)
        orig = p.detach().clone()
        for opt in m.options:
            if "loss" in opt:  # measured before (Session's cache)
                continue
            if opt["dtype"] == "f32" and opt.get("rank", None) in (None, 1) and (opt["kind"] == "quant" or m.role != "lowrank"):
                opt["loss"] = 0.0
                continue
            p.copy_(torch.from_numpy(option_values(m, opt)).view_as(p))
            opt["loss"] = max(0.0, kl_to(model, x, t_lp)[0])
        p.copy_(orig)
    log("sensitivity: %d options of %d matrices on %d positions in %.1f s" % (
        sum(len(m.options) for m in mats), len(mats), x.numel(), time.time() - t0))


# ---------------------------------------------------------------------------------------------------
# The student: fake-quantised (straight-through) matrices over float masters

def fq(w, dtype):
    """Straight-through fake quantisation: the forward value as stored, the gradient of the identity (f16, i8,
    q8: the scale from the values as the writer derives it; the block kinds q4/q3/q3a are GridQuant's)."""
    if dtype == "f32":
        return w
    with torch.no_grad():
        if dtype == "f16":
            q = w.half().float()
        elif dtype == "i8":
            s = w.abs().max().clamp(min=1e-30) / 127
            q = (w / s).round().clamp(-127, 127) * s
        elif dtype == "q8":
            s = w.abs().amax(-1, keepdim=True).clamp(min=1e-30) / 127
            q = (w / s).round().clamp(-127, 127) * s
        else:
            raise ValueError(dtype)
    return w + (q - w).detach()


class FakeQuant(nn.Module):
    def __init__(self, dtype):
        super().__init__()
        self.dtype = dtype

    def forward(self, w):
        return fq(w, self.dtype)


class GridQuant(nn.Module):
    """Straight-through fake quantisation to blocks: scales d [M, nb] (f16 values), the codes round(w / d)
    clamped to [lo, hi], so the forward values are what the file stores with those scales (write_qtf's given
    grid), whatever rounding chose them. learn=False: d is kept through healing; learn=True: d is trained too
    (LSQ, arXiv 1902.08153: the gradient of d q with q = round(w / d) straight through), stored as its f16
    value (the forward uses that value, so what is healed is still what is written). sup = (D [G], s [G, 8]):
    q4s/q3s, d = f16(s D) per block; then learn trains D (s kept) as a multiple of its start, D = D0 u with
    the parameter u from 1: an optimizer's step on u is then relative, where one on D itself (31 times
    smaller than the block scales it makes) moved the scales 20x as far per step and healing diverged."""

    def __init__(self, d, lo, hi, learn=False, sup=None):
        super().__init__()
        self.shape = tuple(np.asarray(d).shape)
        if sup is None:
            p = torch.as_tensor(np.asarray(d), dtype=torch.float32).clone()
            self.register_buffer("s", None)
            self.register_buffer("D0", None)
        else:
            self.register_buffer("D0", torch.as_tensor(np.asarray(sup[0]), dtype=torch.float32).clone())
            self.register_buffer("s", torch.as_tensor(np.asarray(sup[1]), dtype=torch.float32).reshape(-1).clone())
            p = torch.ones_like(self.D0)
        if learn:
            self.d = nn.Parameter(p)  # the block scales, or (sup) the groups' scales' multipliers u
        else:
            self.register_buffer("d", p)
        self.lo, self.hi = lo, hi

    def _live(self):
        """The block scales [M, nb] with the gradient of d (or D) through straight-through f16 roundings; the
        forward value is exactly scales()."""
        def half(x):
            return x + (x.half().float() - x).detach()
        if self.s is None:
            return half(self.d)
        M, nb = self.shape
        return half(self.s.view(-1, 8) * half(self.D0 * self.d)[:, None]).reshape(-1)[:M * nb].view(M, nb)

    def scales(self):
        """The scales as stored: f16 values."""
        return self._live().detach()

    def sup(self):
        """(D as stored, s) of a q4s/q3s grid."""
        return (self.D0 * self.d.detach()).half().float(), self.s.view(-1, 8).to(torch.int8)

    def codes(self, w):
        M, N = w.shape
        nb = self.shape[1]
        v = F.pad(w.detach(), (0, nb * 32 - N)).view(M, nb, 32)
        d = self.scales()[:, :, None]
        q = (v / torch.where(d == 0, torch.ones_like(d), d)).round().clamp(self.lo, self.hi)
        return torch.where(d == 0, torch.zeros_like(q), q).view(M, nb * 32)

    def forward(self, w):
        M, N = w.shape
        nb = self.shape[1]
        with torch.no_grad():
            q = (self.codes(w).view(M, nb, 32) * self.scales()[:, :, None]).view(M, nb * 32)[:, :N]
        if not self.d.requires_grad:
            return w + (q - w).detach()
        # LSQ's gradients, added as a term whose value is exactly 0 (the forward stays q, bit for bit)
        d = self._live()[:, :, None]
        x = F.pad(w, (0, nb * 32 - N)).view(M, nb, 32) / torch.where(d == 0, torch.ones_like(d), d)
        lsq = ((x + (x.round().clamp(self.lo, self.hi) - x).detach()) * d).view(M, nb * 32)[:, :N]
        return q + (lsq - lsq.detach())


def grid_quant(m, dtype, rounding, learn=False):
    """(GridQuant, the master to start from) for matrix m as dtype (q4/q3/q3a/q4s/q3s): the master is block_grid's,
    moved onto its code's value wherever it would round otherwise here (ties, float32)."""
    d, q, master = block_grid(m, dtype, rounding)
    g = GridQuant(d, *BLOCK_RANGE[dtype], learn=learn, sup=m.supers.get((dtype, rounding)))
    w = torch.from_numpy(np.array(master, dtype=np.float32))
    want = torch.from_numpy(q.astype(np.float32))
    M, N = w.shape
    off = (g.codes(w) != want)[:, :N]
    exact = gptq.dequantize(d, q, N)
    return g, torch.where(off, exact, w)


class LowRank(nn.Module):
    """y = (A B) x + b with A, B fake-quantised (the two cores of a TT with factors (M, 1) and (1, N))."""

    def __init__(self, A, B, dtype, bias):
        super().__init__()
        self.A, self.B = nn.Parameter(torch.from_numpy(A)), nn.Parameter(torch.from_numpy(B))
        self.dtype = dtype
        self.register_buffer("bias", bias.detach().clone(), persistent=False)

    def forward(self, x):
        return F.linear(x, fq(self.A, self.dtype) @ fq(self.B, self.dtype), self.bias)


def make_student(model, mats, choice, learn_scales=False):
    student = llama.Llama(model.cfg)
    student.load_state_dict(model.state_dict())
    student.float()
    for m, j in zip(mats, choice):
        opt = m.options[j]
        if m.role == "lowrank" and opt["kind"] == "tt":
            A, B = lowrank_factors(m.W, opt["rank"])
            if opt["dtype"] == "i8":
                A, B = balance(A, B)
            _, l, a, b = m.name.split(".")
            blk = student.blocks[int(l)]
            n = dict((p, n) for n, p in LINEARS)[a + "." + b]
            setattr(blk, n, LowRank(A, B, opt["dtype"], getattr(blk, n).bias))
        elif opt["dtype"] != "f32":
            if m.name == "head":
                raise BudgetError("a separate classifier is not handled by the student yet")
            mod = linear_module(student, m.name)
            if opt["dtype"] in BLOCK_RANGE:  # fixed scales: healing keeps the chosen grid, the file is written with it
                g, master = grid_quant(m, opt["dtype"], opt["rounding"], learn_scales)
                with torch.no_grad():
                    mod.weight.copy_(master)
                parametrize.register_parametrization(mod, "weight", g)
            else:
                parametrize.register_parametrization(mod, "weight", FakeQuant(opt["dtype"]))
    return student


def add_heal_rate_args(ap):
    """--heal-lr, --heal-batch: the distillation's peak learning rate and windows per step (a GPU takes larger
    batches at no cost in time per step; the defaults suit a CPU's few steps)."""
    def rate(v):
        x = float(v)
        if not (0 <= x < float("inf")):
            raise argparse.ArgumentTypeError("a finite rate >= 0, not %r" % v)
        return x

    def count(v):
        n = int(v)
        if n < 1:
            raise argparse.ArgumentTypeError("at least 1, not %r" % v)
        return n
    ap.add_argument("--heal-lr", type=rate, default=5e-4, help="peak learning rate of healing (cosine over the time)")
    ap.add_argument("--heal-batch", type=count, default=8, help="windows of 128 tokens per healing step")
    def evals(v):
        n = int(v)
        if n < 0:
            raise argparse.ArgumentTypeError("0 or more, not %r" % v)
        return n
    ap.add_argument("--refine", type=evals, default=0, metavar="N", help="try up to N swaps of one matrix's type up and "
                    "another's down, kept where the whole mix's KL falls (the knapsack adds per-matrix KLs)")
    ap.add_argument("--heal-ce", type=rate, default=0.0, help="weight of the real text's cross-entropy added to "
                    "healing's KL (0: distillation alone); > 0 also keeps the step with the lowest set-aside loss")


def add_kinds_arg(ap):
    """--kinds K,K,...: the quantisation kinds the chooser may give a matrix (QUANT_KINDS; f32, keeping it, always)."""
    def kinds(v):
        got = [k.strip() for k in v.split(",") if k.strip()]
        bad = [k for k in got if k not in QUANT_KINDS]
        if bad or not got:
            raise argparse.ArgumentTypeError("a comma-separated list of %s, not %r" % (", ".join(QUANT_KINDS), v))
        return tuple(got)
    ap.add_argument("--kinds", type=kinds, help="the quantisation kinds a matrix may get (default all: %s)" %
                    ",".join(QUANT_KINDS))


def heal(student, teacher, data, val_x, val_lp, seconds, steps, lr=5e-4, batch=8, seq=128, seed=0, log=print,
         scale_lr=0.1, ce=0.0, n_real=None):
    """Distillation: KL(teacher || student) on batches of data (windows), AdamW, cosine over the time budget;
    the best step by the KL on val_x (every 25 steps and the last) is kept (step 0 included). Learned block scales (GridQuant) at
    scale_lr times the masters' rate. ce > 0 adds ce times the next-token cross-entropy of the batch's real-text
    windows (data's first n_real rows; the rest are the original's samples, whose only target is the teacher)
    and keeps the best step by val_x's own loss instead: the goal is measured in loss on held-out text, and
    KL to a teacher that is itself off the text leaves part of that on the table."""
    if seconds <= 0 or steps <= 0:
        return {"steps": 0}
    n_real = len(data) if n_real is None else n_real

    def score(model):  # what "best" means: val KL, or val loss with the cross-entropy term
        return kl_to(model, val_x, val_lp)[0] if ce <= 0 else text_loss(model, val_x)
    g = torch.Generator().manual_seed(seed)
    params = [p for p in student.parameters() if p.requires_grad]
    scales = {id(m.d) for m in student.modules() if isinstance(m, GridQuant) and m.d.requires_grad}
    groups = [{"params": [p for p in params if id(p) not in scales], "mult": 1.0},
              {"params": [p for p in params if id(p) in scales], "mult": scale_lr}]
    opt = torch.optim.AdamW([gr for gr in groups if gr["params"]], lr=lr, weight_decay=0.0, betas=(0.9, 0.99))
    best = {"score": score(student), "step": 0,
            "state": {k: v.detach().clone() for k, v in student.state_dict().items()}}
    start = best["score"]
    t0, step = time.time(), 0
    while step < steps and time.time() - t0 < seconds:
        prog = min(1.0, max(step / steps, (time.time() - t0) / seconds))
        for gr in opt.param_groups:
            gr["lr"] = gr["mult"] * lr * (min(1.0, (step + 1) / 20)) * 0.5 * (1 + math.cos(math.pi * prog))
        idx = torch.randint(len(data), (batch,), generator=g)
        x = data[idx.to(data.device)][:, :seq]
        with torch.no_grad():
            t = F.log_softmax(teacher(x)[0].float(), -1)
        student.train()
        lp = F.log_softmax(student(x)[0].float(), -1)
        loss = (t.exp() * (t - lp)).sum(-1).mean()
        if ce > 0:
            real = (idx < n_real).to(data.device)
            if bool(real.any()):
                loss = loss + ce * F.nll_loss(lp[real][:, :-1].reshape(-1, lp.shape[-1]), x[real][:, 1:].reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        step += 1
        student.eval()
        last = step >= steps or time.time() - t0 >= seconds  # the last step is checked too (short runs)
        if step % 25 == 0 or last:
            got = score(student)
            log("heal step %4d  train %s %.4f  val %s %.4f  %.0f s" % (step, "kl" if ce <= 0 else "kl+ce", loss.item(),
                                                                     "kl" if ce <= 0 else "loss", got, time.time() - t0))
            if got < best["score"]:
                best.update(score=got, step=step, state={k: v.detach().clone() for k, v in student.state_dict().items()})
    student.load_state_dict(best["state"])
    student.eval()
    out = {"steps": step, "best_step": best["step"], "seconds": round(time.time() - t0, 1)}
    if ce > 0:
        out.update(ce=ce, val_loss_before=start, val_loss_after=best["score"], val_kl_after=kl_to(student, val_x, val_lp)[0])
    else:
        out.update(val_kl_before=start, val_kl_after=best["score"])
    return out


# ---------------------------------------------------------------------------------------------------
# The file

def student_tensors(student, mats, choice, family):
    """[(name, float array, kind)] in the file's order, and the metadata overrides."""
    cfg = student.cfg
    by_name = {m.name: (m, m.options[j]) for m, j in zip(mats, choice)}
    with torch.no_grad():
        def w_of(mod):
            return (mod.weight if not parametrize.is_parametrized(mod) else mod.parametrizations.weight.original)

        def stored(name, mod, dtype):
            """(name, values, kind[, grid]): a GridQuant matrix with its scales and the codes it heals with."""
            w = w_of(mod)
            if parametrize.is_parametrized(mod) and isinstance(mod.parametrizations.weight[0], GridQuant):
                g = mod.parametrizations.weight[0]
                grid = (g.scales().numpy().copy(), g.codes(w).numpy().astype(np.int8))
                if g.s is not None:  # q4s/q3s: the groups' scales and the sub-scales too
                    grid += (tuple(x.numpy().copy() for x in g.sup()),)
                return (name, w.numpy().copy(), dtype, grid)
            return (name, w.numpy().copy(), dtype)

        out = []
        m, o = by_name["tok_emb"]
        out.append(stored("tok_emb", student.tok_emb, o["dtype"]))
        if cfg.positions == "learned":  # the base block (shakespeare-dense)
            m, o = by_name["pos_emb"]
            out.append(stored("pos_emb", student.pos_emb, o["dtype"]))
        for l, blk in enumerate(student.blocks):
            out.append(("blk.%d.ln1.w" % l, blk.ln1.weight.numpy().copy(), "f32"))
            if cfg.norm == "layernorm":
                out.append(("blk.%d.ln1.b" % l, blk.ln1.bias.numpy().copy(), "f32"))
            out.append(("blk.%d.ln2.w" % l, blk.ln2.weight.numpy().copy(), "f32"))
            if cfg.norm == "layernorm":
                out.append(("blk.%d.ln2.b" % l, blk.ln2.bias.numpy().copy(), "f32"))
            for n, p in LINEARS:
                mod = getattr(blk, n, None)
                if mod is None:
                    continue
                name = "blk.%d.%s" % (l, p)
                m, o = by_name[name]
                if family == "quant":
                    out.append(stored(name + ".w", mod, o["dtype"]))
                elif isinstance(mod, LowRank):
                    A, B = mod.A.numpy().copy(), mod.B.numpy().copy()
                    if o["dtype"] == "i8":
                        A, B = balance(A, B)
                    (M, r), N = A.shape, B.shape[1]
                    if p == "ffn.down":  # m = (1, d), n = (d_ff, 1): core 0 carries the input, B^T
                        out.append((name + ".core.0", B.T.reshape(1, 1, N, r), o["dtype"]))
                        out.append((name + ".core.1", A.T.reshape(r, M, 1, 1), o["dtype"]))
                    else:  # m = (M, 1), n = (1, N): core 0 carries the output, A
                        out.append((name + ".core.0", A.reshape(1, M, 1, r), o["dtype"]))
                        out.append((name + ".core.1", B.reshape(r, 1, N, 1), o["dtype"]))
                else:  # dense in one core: core 0 the scalar 1
                    W = w_of(mod).numpy().copy()
                    out.append((name + ".core.0", np.ones((1, 1, 1, 1), np.float32), "f32"))
                    out.append((name + ".core.1", W.reshape(1, W.shape[0], W.shape[1], 1), o["dtype"]))
                if cfg.linear_bias:
                    out.append((name + ".b", mod.bias.numpy().copy(), "f32"))
        out.append(("lnf.w", student.lnf.weight.numpy().copy(), "f32"))
        if cfg.norm == "layernorm":
            out.append(("lnf.b", student.lnf.bias.numpy().copy(), "f32"))
    return out


def file_meta(meta, cfg, family, max_rank, provenance):
    meta = dict(meta)
    for k in [k for k in meta if k.startswith("model.tt.")]:
        del meta[k]
    if family == "tt":
        meta["model.tensorized"] = 1
        meta["model.tt.d_factors"] = [1, cfg.d_model]
        meta["model.tt.ff_factors"] = [cfg.d_ff, 1]
        meta["model.tt.rank"] = int(max_rank)
        # always: without it the engine factors k and v like d ((1, d)), not as the (kv, 1) cores written here
        meta["model.tt.kv_factors"] = [cfg.kv_dim, 1]
    else:
        meta["model.tensorized"] = 0
    for k, v in provenance.items():
        meta["provenance." + k] = v
    return meta


def provenance(created_by, budget, fam, source=None):
    """The provenance keys a compressed file adds (budget.py and budget_frontier.py)."""
    p = {"created_by": created_by, "budget_bytes": int(budget), "budget_family": fam}
    if source is not None:
        p["budget_source"] = source
    return p


def provenance_room(meta, source):
    """Metadata bytes the keys above may add to a file whose other metadata is meta, exactly (the longest
    created_by, family and the source's name, less the entries they replace): the knapsack's room for them,
    so no budget byte is left unused for a guess."""
    longest = provenance("tools/train/budget_frontier.py", 1, "quant", source)
    grow = 0
    for k, v in longest.items():
        key = "provenance." + k
        grow += meta_entry_bytes(key, v) - (meta_entry_bytes(key, meta[key]) if key in meta else 0)
    # + ALIGN - 1: the longer metadata may move the aligned data section by one more step
    return max(grow, 0) + ALIGN - 1


def fixed_bytes(meta, tensors, choice_tensor_names):
    """File bytes of everything but the chosen matrices' tensors (those are added aligned)."""
    total = len(write_qtf(None, meta, [(t[0], np.zeros(t[1].shape, np.float32), t[2]) if t[0] in choice_tensor_names
                                       else t for t in tensors]))
    return total - sum(aligned(tensor_nbytes(t[1].shape, t[2])) for t in tensors if t[0] in choice_tensor_names)


# ---------------------------------------------------------------------------------------------------

class Session:
    """Everything measured once per model: the reference, calibration data, options and their KLs per family."""

    def __init__(self, model_path, text, stories=None, qtf=None, tokenizer=None, window=256, calib_windows=8,
                 val_stories=0.1, samples=32, seed=0, log=print, workdir=None, drop_unknown=False, plain=0,
                 device="cpu", rounding="best", moment_windows=128, sens_cache=None, learn_scales=False, kinds=None):
        torch.set_num_threads(1)
        self.kinds = kinds
        if rounding not in ROUNDINGS:
            raise BudgetError("--rounding %r: one of %s" % (rounding, ", ".join(ROUNDINGS)))
        self.rounding, self.sens_cache, self.learn_scales = rounding, sens_cache, learn_scales
        self.device = torch.device(device)  # where healing runs (the sensitivity and the file stay on the CPU)
        if self.device.type == "cuda" and not torch.cuda.is_available():
            raise BudgetError("--device cuda: no CUDA device is available to PyTorch")
        torch.manual_seed(seed)
        self.log = log
        self.qtf = find_qtf(qtf)
        self.workdir = workdir or tempfile.mkdtemp(prefix="budget-")
        self.qtf_path = import_model(model_path, self.qtf, self.workdir, tokenizer)
        self.source = os.path.basename(os.path.normpath(model_path))  # provenance's budget_source
        self.model, self.meta = load_reference(self.qtf_path)
        for p in self.model.parameters():
            p.requires_grad_(False)
        cfg = self.model.cfg
        st = read_stories(text, stories, plain)
        t0 = time.time()
        self.binding = engine_binding(self.qtf)
        ids = encode_stories(self.qtf, self.qtf_path, self.meta, st, self.workdir, self.binding, drop_unknown, log)
        log("tokens: %d stories, %d ids (%.1f s)" % (len(ids), sum(map(len, ids)), time.time() - t0))
        nval = max(1, int(round(len(ids) * val_stories)))
        if len(ids) < 2:
            raise BudgetError("text: needs at least 2 stories (calibration and a set-aside part)")
        T = min(window, cfg.context)
        self.train_x = windows(ids[:-nval], T)
        self.val_x = windows(ids[-nval:], T)[:8]
        self.calib_x = self.train_x[:calib_windows]
        self.H = None
        if rounding != "rtn":  # the linears' inputs on calibration windows (never the set-aside or held-out text)
            t0 = time.time()
            self.H = input_moments(self.model, self.train_x[:moment_windows])
            log("input moments of %d matrices on %d calibration windows (%.1f s)" % (
                len(self.H), min(moment_windows, len(self.train_x)), time.time() - t0))
        self.calib_lp = teacher_logprobs(self.model, self.calib_x)
        self.val_lp = teacher_logprobs(self.model, self.val_x)
        bos = self.meta.get("tokenizer.bos_id", 1)
        t0 = time.time()
        bos = bos if isinstance(bos, int) and bos >= 0 else 1
        if not samples:
            self.samples_x = None
        elif self.device.type == "cuda":  # the GPU draws thousands of sequences side by side in seconds
            self.samples_x = sample(self.model, samples, T, seed + 1, bos, self.device, chunk=1024)
        elif self.binding is not None:
            self.samples_x = torch.from_numpy(sample_engine(self.binding, self.qtf_path, samples, T, seed + 1, bos))
        else:
            self.samples_x = sample(self.model, samples, T, seed + 1, bos)
        log("data: %d stories -> %d calibration windows of %d (first %d for sensitivity), %d set-aside windows "
            "(%d stories), %d samples of the original (%.1f s)" % (len(st), len(self.train_x), T, len(self.calib_x),
                                                                   len(self.val_x), nval, samples, time.time() - t0))
        f32 = [(n, t.detach().numpy(), "f32") for n, t in llama.tensor_map(self.model)]
        self.f32_bytes = len(write_qtf(None, self.meta, f32))
        self.fams = {}

    def family(self, fam):
        if fam not in self.fams:
            mats = matrices(self.model, fam, self.rounding, self.H, self.kinds)
            key = "%s/%d" % (fam, len(self.calib_x))
            cache = json.load(open(self.sens_cache)) if self.sens_cache and os.path.exists(self.sens_cache) else {}
            got = cache.get(key, {})
            for m in mats:  # options measured before (same family and calibration windows) are not measured again
                for o in m.options:
                    if option_label(o) in got.get(m.name, {}):
                        o["loss"] = got[m.name][option_label(o)]
            n_known = sum("loss" in o for m in mats for o in m.options)
            if n_known:
                self.log("sensitivity: %d options read from %s" % (n_known, self.sens_cache))
            if n_known < sum(len(m.options) for m in mats):
                measure(self.model, mats, self.calib_x, self.calib_lp, self.log)
                if self.sens_cache:
                    for m in mats:
                        got.setdefault(m.name, {}).update({option_label(o): o["loss"] for o in m.options})
                    cache[key] = got
                    with open(self.sens_cache, "w") as f:
                        json.dump(cache, f, indent=0)
            choice = [0] * len(mats)
            student = make_student(self.model, mats, [max(range(len(m.options)), key=lambda j: m.options[j]["bytes"])
                                                      for m in mats])
            tensors = student_tensors(student, mats, choice, fam)
            names = set()
            for m in mats:
                names |= {t[0] for t in tensors if t[0] == m.name or t[0].startswith(m.name + ".w") or
                          t[0].startswith(m.name + ".core.")}
            meta = file_meta(self.meta, self.model.cfg, fam, 1, {})
            self.fams[fam] = (mats, fixed_bytes(meta, tensors, names) + provenance_room(meta, self.source))
        return self.fams[fam]

    def plan(self, fam, budget):
        mats, fixed = self.family(fam)
        items = [[(o["bytes"] // ALIGN, o["loss"]) for o in m.options] for m in mats]
        got = choose(items, (budget - fixed) // ALIGN)
        if got is None:
            return None
        return mats, got[0], got[1], fixed

    def uniform(self, dtype, emb="q8"):
        """The quant family's student with every matrix dtype and the embedding emb (as `qtf quantize --type`
        keeps the tied head q8), unhealed: (student, mats, choice)."""
        mats, _ = self.family("quant")
        r = "gptq" if self.rounding == "best" else self.rounding

        def pick(m):  # the session's rounding where m has it (learned positions: plain rounding only)
            want = emb if m.name in ("tok_emb", "head") else dtype
            js = [j for j, o in enumerate(m.options) if o["dtype"] == want]
            return next((j for j in js if m.options[j].get("rounding", r) == r), js[0])
        choice = [pick(m) for m in mats]
        return make_student(self.model, mats, choice), mats, choice

    def smallest(self, fam):
        mats, fixed = self.family(fam)
        return fixed + sum(min(o["bytes"] for o in m.options) for m in mats)

    def refine(self, mats, choice, cap, evals, seed=0, windows=16):
        """Local search on the knapsack's choice by the KL of the whole mix (the knapsack adds KLs measured one
        matrix at a time; together they cost more, and not in proportion): one matrix a step up (the next
        option with more bytes and less KL) and another a step down, within cap bytes, kept where the joint KL
        on `windows` calibration windows falls; at most `evals` mixes are tried. -> (choice, report)."""
        x = self.train_x[:max(windows, len(self.calib_x))]
        t_lp = teacher_logprobs(self.model, x)

        def joint(ch):
            return kl_to(make_student(self.model, mats, ch), x, t_lp)[0]

        ladder = []  # each matrix's options by bytes, those with more bytes and no less KL left out
        for m in mats:
            rungs, best = [], float("inf")
            for j in sorted(range(len(m.options)), key=lambda j: (m.options[j]["bytes"], m.options[j]["loss"])):
                if m.options[j]["loss"] < best:
                    rungs.append(j)
                    best = m.options[j]["loss"]
            ladder.append(rungs)
        nbytes = lambda ch: sum(m.options[j]["bytes"] for m, j in zip(mats, ch))  # noqa: E731
        moves = [(i, k) for i in range(len(mats)) for k in range(len(mats)) if i != k]
        random.Random(seed).shuffle(moves)
        cur = list(choice)
        start = cur_kl = joint(cur)
        tried, kept, t0 = 0, 0, time.time()
        improved = True
        while improved and tried < evals:
            improved = False
            for i, k in moves:
                if tried >= evals:
                    break
                if cur[i] not in ladder[i] or cur[k] not in ladder[k]:
                    continue
                pi, pk = ladder[i].index(cur[i]), ladder[k].index(cur[k])
                if pi + 1 >= len(ladder[i]) or pk == 0:
                    continue
                ch = list(cur)
                ch[i], ch[k] = ladder[i][pi + 1], ladder[k][pk - 1]
                if nbytes(ch) > cap:
                    continue
                tried += 1
                got = joint(ch)
                if got < cur_kl - 1e-4:
                    cur, cur_kl, kept, improved = ch, got, kept + 1, True
        self.log("refine: joint KL %.4f -> %.4f on %d windows (%d mixes tried, %d kept, %.0f s)" % (
            start, cur_kl, len(x), tried, kept, time.time() - t0))
        return cur, {"windows": len(x), "tried": tried, "kept": kept, "joint_kl_before": start, "joint_kl_after": cur_kl}

    def run(self, fam, budget, heal_seconds=60, heal_steps=100000, seed=0, heal_lr=5e-4, heal_batch=8, heal_ce=0.0,
            refine=0):
        """-> (student, mats, choice, report) for one family at budget bytes, healed; None if it does not fit.
        refine > 0: the choice refined by at most that many joint-KL evaluations first (Session.refine)."""
        p = self.plan(fam, budget)
        if p is None:
            return None
        mats, choice, predicted, fixed = p
        refined = None
        if refine > 0:
            choice, refined = self.refine(mats, choice, budget - fixed, refine, seed)
        student = make_student(self.model, mats, choice, self.learn_scales)
        before = kl_to(student, self.calib_x, self.calib_lp)[0]
        data = self.train_x if self.samples_x is None else torch.cat([self.train_x, self.samples_x])
        dev = self.device
        teacher = self.model if dev.type == "cpu" else copy.deepcopy(self.model).to(dev)
        h = heal(student.to(dev), teacher, data.to(dev), self.val_x.to(dev), self.val_lp.to(dev), heal_seconds,
                 heal_steps, lr=heal_lr, batch=heal_batch, seed=seed, log=self.log, ce=heal_ce, n_real=len(self.train_x))
        student = student.cpu()
        if refined:
            predicted = sum(m.options[j]["loss"] for m, j in zip(mats, choice))
        rep = {"family": fam, "budget": int(budget), "predicted_kl": predicted, "calib_kl_unhealed": before, "heal": h,
               "refine": refined,
               "choice": {m.name: {k: v for k, v in m.options[j].items() if k != "loss"} | {"loss": m.options[j]["loss"]}
                          for m, j in zip(mats, choice)}}
        return student, mats, choice, rep

    def write(self, student, mats, choice, fam, out, budget, provenance):
        return write_file(self.qtf, self.model, self.meta, student, mats, choice, fam, out, budget, provenance)


def write_file(qtf, model, meta, student, mats, choice, fam, out, budget, provenance):
    """Writes OUT atomically (a temporary file in its folder, renamed once verified by the engine); returns its
    bytes. model, meta: the original (load_reference)."""
    max_rank = max([m.options[j].get("rank", 1) for m, j in zip(mats, choice)] + [1])
    meta = file_meta(meta, model.cfg, fam, max_rank, provenance)
    tensors = student_tensors(student, mats, choice, fam)
    folder = os.path.dirname(os.path.abspath(out))
    fd, tmp = tempfile.mkstemp(prefix=".budget-", suffix=".qtf", dir=folder)
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp's 0600 would outlive the rename: OUT gets a new file's permissions
    try:
        data = write_qtf(tmp, meta, tensors)
        if len(data) > budget:
            raise BudgetError("internal: the file has %d bytes, over the budget of %d" % (len(data), budget))
        r = subprocess.run([qtf, "verify", "--deep", tmp], capture_output=True, text=True)
        if r.returncode != 0:
            raise BudgetError("the engine refuses the written file: %s" % last_line(r.stderr + r.stdout))
        os.replace(tmp, out)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return len(data)


def option_label(o):
    """'q3 gptq', 'q8', 'tt i8 r16': an option's name in reports and the sensitivity cache."""
    return " ".join(str(x) for x in ("tt" if o["kind"] == "tt" else None, o["dtype"],
                                     "r%d" % o["rank"] if o["kind"] == "tt" else None, o.get("rounding")) if x)


def option_indices(mats, choice):
    """The options of mats that a recorded choice ({matrix name: option}, as Session.run reports it) names."""
    keys = ("kind", "dtype", "rank", "bytes", "rounding")
    idx = []
    for m in mats:
        want = {k: v for k, v in choice[m.name].items() if k in keys}
        idx.append(next(j for j, o in enumerate(m.options) if {k: v for k, v in o.items() if k in keys} == want))
    return idx


def parse_budget(spec, f32_bytes):
    try:
        if "/" in spec:
            a, b = spec.split("/")
            return int(f32_bytes * float(a) / float(b))
        if spec.endswith("%"):
            return int(f32_bytes * float(spec[:-1]) / 100)
        return int(spec)
    except (ValueError, ZeroDivisionError):
        raise BudgetError("--budget %r: bytes (e.g. 131072) or a fraction of the f32 file (e.g. 1/8)" % spec)


def compress(args, log=print):
    s = Session(args.model, args.text, args.stories, args.qtf, args.tokenizer, args.window, args.calib_windows,
                samples=args.samples, seed=args.seed, log=log, drop_unknown=args.drop_unknown, plain=args.plain_text,
                device=args.device, rounding=args.rounding, learn_scales=args.learn_scales, kinds=args.kinds)
    budget = parse_budget(args.budget, s.f32_bytes)
    fams = ["quant", "tt"] if args.family == "mix" else [args.family]
    results = []
    for fam in fams:
        r = s.run(fam, budget, args.heal_seconds, args.heal_steps, args.seed, args.heal_lr, args.heal_batch, args.heal_ce,
                  args.refine)
        if r is not None:
            student, mats, choice, rep = r
            rep["val_kl"] = kl_to(student, s.val_x, s.val_lp)[0]
            log("%s: predicted KL %.4f, unhealed %.4f, healed (set-aside stories) %.4f" % (
                fam, rep["predicted_kl"], rep["calib_kl_unhealed"], rep["val_kl"]))
            results.append((rep["val_kl"], fam, r))
    if not results:
        smallest = min(s.smallest(f) for f in fams)
        raise BudgetError("budget %d bytes is below the smallest file this model can be made (%d bytes, family %s)" % (
            budget, smallest, args.family))
    _, fam, (student, mats, choice, rep) = min(results, key=lambda t: t[0])
    prov = provenance("tools/train/budget.py", budget, fam, s.source)
    n = s.write(student, mats, choice, fam, args.out, budget, prov)
    rep.update(out=args.out, bytes=n, f32_bytes=s.f32_bytes, families_tried=[(f, k) for k, f, _ in results])
    log("wrote %s: %d bytes (budget %d, %.1f%% of the f32 file's %d), family %s" % (
        args.out, n, budget, 100.0 * n / s.f32_bytes, s.f32_bytes, fam))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rep, f, indent=1)
    return rep


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True)
    ap.add_argument("--tokenizer", help="llama2.c tokenizer.bin for a llama2.c checkpoint (passed to qtf convert)")
    ap.add_argument("--budget", required=True, help="file bytes, or a fraction of the f32 file (1/8, 12.5%%)")
    ap.add_argument("--text", required=True, help="stories separated by <|endoftext|>")
    ap.add_argument("--stories", help="A-B: the stories (1-based, inclusive) this tool may use; default all")
    ap.add_argument("--plain-text", type=int, default=0, metavar="N", help="--text has no separators: cut it into "
                    "pieces of N characters, which --stories numbers (tiny Shakespeare)")
    ap.add_argument("--out", required=True)
    ap.add_argument("--family", choices=["mix", "quant", "tt"], default="mix")
    ap.add_argument("--heal-seconds", type=float, default=60)
    ap.add_argument("--heal-steps", type=int, default=100000)
    add_heal_rate_args(ap)
    ap.add_argument("--device", default="cpu", help="where healing runs: cpu (default) or cuda")
    ap.add_argument("--window", type=int, default=256)
    ap.add_argument("--calib-windows", type=int, default=8)
    ap.add_argument("--rounding", choices=ROUNDINGS, default="best", help="q4/q3 rounding: rtn (the engine's "
                    "scale search, nearest code), imatrix (the search weighted by the inputs' second moments), "
                    "gptq (error-compensated, gptq.py) or best (default: rtn and gptq offered, the knapsack picks "
                    "per matrix)")
    ap.add_argument("--learn-scales", action="store_true", help="healing trains the q4/q3 block scales too (LSQ)")
    ap.add_argument("--samples", type=int, default=32, help="sequences sampled from the original for healing")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--drop-unknown", action="store_true", help="leave out the stories with characters the "
                    "tokenizer has no token for (default: stop with a line naming the first)")
    ap.add_argument("--qtf", help="the qtf command-line tool (default: build/qtf, $QTF_CLI)")
    add_kinds_arg(ap)
    ap.add_argument("--json")
    args = ap.parse_args(argv)
    try:
        compress(args)
    except (BudgetError, QtfError) as e:
        print("budget: %s" % e, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
