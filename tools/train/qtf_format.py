"""Reader and writer of the .qtf v1 model file (docs/format.md). Pure Python + struct + zlib + numpy.

    write_qtf(path, meta, tensors)      meta: {key: value}, tensors: [(name, np.ndarray)] in file order
    meta, tensors = read_qtf(path)      verifies every rule of docs/format.md, CRC-32 included

Metadata value types are inferred: int -> i64, float -> f64, str -> str, and lists of those -> arrays.
Tensor dtype comes from the array (float32 -> f32, float16 -> f16), or per tensor from a third item,
(name, float array, kind) with kind f32, f16, q8 (i8 with an f32 scale per row), q4 (GGUF Q4_0 blocks, the
engine's scale search), q3 (3-bit blocks of 32, the same search), q4s / q3s (their codes, the block scales 6-bit
under an f16 scale per 8 blocks) or i8 (one scale per tensor): the values are encoded here exactly as `qtf quantize`
encodes them (engine/host/quantize.cpp: absmax / 127 rounded half away from zero; q4's and q3's 11 trial scales
and least-squares refits at f16), so a file can mix types tensor by tensor (tools/train/budget.py).
"""
import struct
import zlib

import numpy as np

MAGIC = b"QTFMODEL"
VERSION = 1
HEADER_SIZE = 80
ALIGN = 64

T_I64, T_F64, T_STR, T_I64S, T_F64S, T_STRS = 1, 2, 3, 4, 5, 6
DT_F32, DT_F16, DT_I8, DT_Q8 = 0, 1, 2, 3  # q8: i8 with an f32 scale per row, stored before the values
DT_Q4 = 4  # GGUF Q4_0 blocks along each row: per 32 values an f16 scale d and 16 bytes of nibbles
DT_Q3 = 5  # per 32 values an f16 scale d and 12 bytes of 3-bit codes (encode_q3)
DT_Q4S, DT_Q3S = 6, 7  # q4 / q3 codes, the block scales 6-bit under an f16 scale per 8 blocks (encode_super)
DT_SIZE = {DT_F32: 4, DT_F16: 2, DT_I8: 1, DT_Q8: 1, DT_Q4: None, DT_Q3: None, DT_Q4S: None, DT_Q3S: None}
SUPER_BLOCKS, SUPER_MAX = 8, 31  # blocks per group of q4s/q3s, the sub-scales' largest magnitude
SUPER_KINDS = {"q4s": (DT_Q4S, "q4", -8, 7, 16), "q3s": (DT_Q3S, "q3", -4, 3, 12)}  # dtype, base, codes, bytes a block
DT_NUMPY = {DT_F32: "<f4", DT_F16: "<f2", DT_I8: "i1", DT_Q8: "i1"}


class QtfError(ValueError):
    pass


def _pack_str(s):
    b = s.encode("utf-8")
    return struct.pack("<I", len(b)) + b


def _pack_value(v):
    if isinstance(v, bool):
        v = int(v)
    if isinstance(v, (int, np.integer)):
        return bytes([T_I64]) + struct.pack("<q", int(v))
    if isinstance(v, (float, np.floating)):
        return bytes([T_F64]) + struct.pack("<d", float(v))
    if isinstance(v, str):
        return bytes([T_STR]) + _pack_str(v)
    if isinstance(v, (list, tuple)):
        if len(v) == 0:
            raise QtfError("empty metadata arrays have no type; avoid them")
        if all(isinstance(x, str) for x in v):
            return bytes([T_STRS]) + struct.pack("<I", len(v)) + b"".join(_pack_str(x) for x in v)
        if all(isinstance(x, (int, np.integer)) and not isinstance(x, bool) for x in v):
            return bytes([T_I64S]) + struct.pack("<I", len(v)) + struct.pack("<%dq" % len(v), *v)
        if all(isinstance(x, (int, float, np.integer, np.floating)) for x in v):
            return bytes([T_F64S]) + struct.pack("<I", len(v)) + struct.pack("<%dd" % len(v), *map(float, v))
    raise QtfError("unsupported metadata value %r" % (v,))


def meta_entry_bytes(key, value):
    """Bytes one metadata entry takes in a file (its key, type and value)."""
    return len(_pack_str(key) + _pack_value(value))


def _lround(x):
    """C's lround on float32 values (half away from zero), computed without float32 rounding of x + 0.5."""
    x = np.asarray(x, dtype=np.float64)
    return np.sign(x) * np.floor(np.abs(x) + 0.5)


def _absmax_scale(amax):
    amax = np.asarray(amax, dtype=np.float32)
    return np.where(amax > 0, amax / np.float32(127), np.float32(1)).astype(np.float32)


def encode_q8(a):
    """[.., cols] float -> bytes of a q8 tensor: the rows' f32 scales, then the int8 values."""
    a = np.asarray(a, dtype=np.float32)
    rows = a.reshape(-1, a.shape[-1])
    s = _absmax_scale(np.abs(rows).max(axis=1))
    q = np.clip(_lround(rows / s[:, None]), -127, 127).astype(np.int8)
    return s.astype("<f4").tobytes() + q.tobytes()


def encode_i8(a):
    """float array -> (int8 values' bytes, the one f32 scale) of an i8 tensor."""
    a = np.asarray(a, dtype=np.float32)
    s = _absmax_scale(np.abs(a).max() if a.size else 0)
    return np.clip(_lround(a / s), -127, 127).astype(np.int8).tobytes(), float(s)


# Trial scales of the block search (engine/host/quantize.cpp block_search): max / s for s around the two
# ends of the integer range [lo, hi] (q4: -8.5 .. -7 and 6.75 .. 7.5).
_LO_TRIALS = (-0.5, -0.25, 0.25, 0.5, 0.75, 1.0)
_HI_TRIALS = (-0.25, 0.0, 0.25, 0.5)


def _block_codes(v, n_valid, d, lo, hi):
    """v [B, 32] float32, d [B] float32 (stored f16 values) -> (codes [B, 32] = q - lo, squared error [B])."""
    with np.errstate(divide="ignore", over="ignore", invalid="ignore"):
        inv = np.where(d != 0, np.float32(1) / d, np.float32(0)).astype(np.float32)
        c = np.clip(_lround((v * inv[:, None]).astype(np.float32)), lo, hi)
    valid = np.arange(32)[None, :] < n_valid[:, None]
    c = np.where(valid, c, 0)
    e = v.astype(np.float64) - d.astype(np.float64)[:, None] * c
    return (c - lo).astype(np.uint8), (np.where(valid, e, 0) ** 2).sum(axis=1)


def _blocks_of(a):
    """[.., cols] float -> (values [B, 32] float32, zeros past each row's end; valid values per block [B])."""
    a = np.asarray(a, dtype=np.float32)
    cols = a.shape[-1]
    rows = a.reshape(-1, cols)
    nb = (cols + 31) // 32
    v = np.zeros((rows.shape[0], nb * 32), dtype=np.float32)
    v[:, :cols] = rows
    return v.reshape(-1, 32), np.minimum(32, cols - np.tile(np.arange(nb) * 32, rows.shape[0]))


def _encode_blocks(a, lo, hi, search, kind):
    """[.., cols] float -> (f16 scales [B], codes [B, 32]) of blocks of 32 along each row (the last one
    padded with code -lo, the zero); search: the engine's scale search (docs/quantize.md), else max / lo."""
    v, n_valid = _blocks_of(a)
    mx = v[np.arange(v.shape[0]), np.abs(v).argmax(axis=1)]  # the value of largest magnitude (first one)
    with np.errstate(over="ignore"):
        best_h = (mx / np.float32(lo)).astype(np.float16)
    if not np.all(np.isfinite(best_h)):
        raise QtfError("%s: values too large for %s's f16 scales (|v| > %g)" % (kind, kind, -lo * 65504))
    best_d = best_h.astype(np.float32)
    code, best = _block_codes(v, n_valid, best_d, lo, hi)
    if search:
        live = mx != 0
        trials = [np.float32(lo) + np.float32(t) for t in _LO_TRIALS] + [np.float32(hi) + np.float32(t) for t in _HI_TRIALS]
        for t in range(len(trials) + 1):
            if t < len(trials):
                with np.errstate(over="ignore"):
                    d = (mx / trials[t]).astype(np.float16).astype(np.float32)
                ok = live & np.isfinite(d)
                trial, _ = _block_codes(v, n_valid, np.where(ok, d, 0).astype(np.float32), lo, hi)
            else:
                ok, trial = live.copy(), code.copy()
            q = trial.astype(np.float64) + lo
            xq = (v.astype(np.float64) * q).sum(axis=1)
            qq = (q * q).sum(axis=1)
            with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
                d = (xq / qq).astype(np.float32).astype(np.float16).astype(np.float32)
            ok &= (qq > 0) & np.isfinite(d)
            trial, err = _block_codes(v, n_valid, np.where(ok, d, 0).astype(np.float32), lo, hi)
            win = ok & (err < best)
            best = np.where(win, err, best)
            best_d = np.where(win, d, best_d).astype(np.float32)
            code = np.where(win[:, None], trial, code)
    return best_d, code


def _given_blocks(a, grid, lo, hi, kind):
    """grid = (d [rows, nb] f16 values, q [rows, nb * 32] integers in [lo, hi], 0 in the padding): a writer's own
    scales and codes (budget.py's rounding, docs/quantize.md), checked and returned as _encode_blocks does."""
    a = np.asarray(a)
    rows, cols = int(np.prod(a.shape[:-1])), int(a.shape[-1])
    nb = (cols + 31) // 32
    d = np.asarray(grid[0], dtype=np.float32)
    q = np.asarray(grid[1])
    if d.shape != (rows, nb) or q.shape != (rows, nb * 32):
        raise QtfError("%s: given scales %s / codes %s, expected (%d, %d) / (%d, %d)" % (
            kind, d.shape, q.shape, rows, nb, rows, nb * 32))
    if not np.all(np.isfinite(d)) or not np.array_equal(d.astype(np.float16).astype(np.float32), d):
        raise QtfError("%s: given scales are not all finite f16 values" % kind)
    if q.dtype.kind not in "iu" or q.min() < lo or q.max() > hi or np.any(q[:, cols:] != 0):
        raise QtfError("%s: given codes outside [%d, %d] or not 0 in the padding" % (kind, lo, hi))
    return d.reshape(-1), (q.reshape(-1, 32).astype(np.int16) - lo).astype(np.uint8)


def encode_q4(a, search=True, grid=None):
    """[.., cols] float -> bytes of a q4 tensor (GGUF Q4_0 blocks along each row, the last one padded with
    nibble 8); search: the engine's default scale search (docs/quantize.md), else GGUF's max / -8; grid: the
    scales and codes given (_given_blocks), a's values then unused."""
    d, nib = _encode_blocks(a, -8, 7, search, "q4") if grid is None else _given_blocks(a, grid, -8, 7, "q4")
    return _pack_q4(d, nib).tobytes()


def _pack_q4(d, nib):
    """f16 scales [B], nibbles [B, 32] (0..15) -> q4 blocks [B, 18] (bytes)."""
    out = np.zeros((d.shape[0], 18), dtype=np.uint8)
    out[:, :2] = d.astype("<f2").view(np.uint8).reshape(-1, 2)
    out[:, 2:] = nib[:, :16] | (nib[:, 16:] << 4)
    return out


def encode_q3(a, search=True, grid=None):
    """[.., cols] float -> bytes of a q3 tensor (engine/kernels/kernels.h: per block of 32 an f16 scale, 8
    bytes whose byte j holds the low bit pairs of values j, j + 8, j + 16, j + 24, and 4 bytes of third
    bits, value j's at bit j; value = d * (code - 4)); search and grid as encode_q4, else max / -4."""
    d, code = _encode_blocks(a, -4, 3, search, "q3") if grid is None else _given_blocks(a, grid, -4, 3, "q3")
    return _pack_q3(d, code).tobytes()


def _pack_q3(d, code):
    """f16 scales [B], codes [B, 32] (0..7) -> q3 blocks [B, 14] (bytes)."""
    out = np.zeros((d.shape[0], 14), dtype=np.uint8)
    out[:, :2] = d.astype("<f2").view(np.uint8).reshape(-1, 2)
    low = (code & 3).reshape(-1, 4, 8)  # [B, i, j]: value j + 8 i
    out[:, 2:10] = low[:, 0] | low[:, 1] << 2 | low[:, 2] << 4 | low[:, 3] << 6
    high = (code >> 2).astype(np.uint32)
    out[:, 10:14] = (high << np.arange(32, dtype=np.uint32)).sum(axis=1).astype("<u4").view(np.uint8).reshape(-1, 4)
    return out


def decode_q3_codes(raw):
    """[.., 14] bytes of q3 blocks -> codes [.., 32] (0..7) in value order."""
    low = np.stack([(raw[..., 2:10] >> (2 * i)) & 3 for i in range(4)], axis=-2).reshape(raw.shape[:-1] + (32,))
    high = np.unpackbits(raw[..., 10:14], axis=-1, bitorder="little")
    return (low | high << 2).astype(np.int8)


def super_scales(d):
    """Block scales d [B] (f16 values) -> (D [G] float16, s [G, 8] int8, d' [B] float32): per group of 8
    blocks D = f16(max |d| / 31), s = round(d / D) (half away from zero) in -31..31, d' = f16(s D), the
    scales a q4s/q3s tensor stores (docs/format.md; `qtf quantize --type q4s` does the same in float32)."""
    d = np.asarray(d, dtype=np.float32).reshape(-1)
    B = d.size
    G = (B + SUPER_BLOCKS - 1) // SUPER_BLOCKS
    g = np.zeros(G * SUPER_BLOCKS, dtype=np.float32)
    g[:B] = d
    g = g.reshape(G, SUPER_BLOCKS)
    D = (np.abs(g).max(axis=1) / np.float32(SUPER_MAX)).astype(np.float16)
    Df = D.astype(np.float32)
    live = Df > 0
    with np.errstate(divide="ignore", invalid="ignore"):
        q = (g / np.where(live, Df, np.float32(1))[:, None]).astype(np.float32)
    s = np.where(live[:, None], np.clip(_lround(q), -SUPER_MAX, SUPER_MAX), 0).astype(np.int8)
    return D, s, super_block_scales(D, s)[:B]


def super_block_scales(D, s):
    """D [G] (f16 values), s [G, 8] -> the block scales f16(s D) [G * 8] as float32 (QtfError if one overflows)."""
    with np.errstate(over="ignore"):
        d = (s.astype(np.float32) * np.asarray(D, dtype=np.float32)[:, None]).astype(np.float16).astype(np.float32)
    if not np.all(np.isfinite(d)):
        raise QtfError("a block scale s * D overflows f16")
    return d.reshape(-1)


def encode_super(a, kind, search=True, grid=None):
    """[.., cols] float -> bytes of a q4s/q3s tensor (docs/format.md): the blocks of q4/q3 (row after row, the
    last of a row padded), grouped 8 at a time across rows; per group D (f16), eight 6-bit sub-scales, then
    its blocks' codes without their scales. search: the engine's scale search per block first (else absmax);
    grid: (d [rows, nb], codes [rows, nb * 32], (D [G], s [G, 8])) given (budget.py), checked."""
    _, base, lo, hi, nbytes = SUPER_KINDS[kind]
    if grid is None:
        v, n_valid = _blocks_of(a)
        d0, _ = _encode_blocks(a, lo, hi, search, kind)
        D, s, d = super_scales(d0)
        code, _ = _block_codes(v, n_valid, d, lo, hi)
    else:
        D = np.asarray(grid[2][0], dtype=np.float32)
        s = np.asarray(grid[2][1])
        d, code = _given_blocks(a, grid[:2], lo, hi, kind)
        G = (d.size + SUPER_BLOCKS - 1) // SUPER_BLOCKS
        if (D.shape != (G,) or s.shape != (G, SUPER_BLOCKS) or not np.all(np.isfinite(D)) or
                not np.array_equal(D.astype(np.float16).astype(np.float32), D)):
            raise QtfError("%s: given group scales %s / sub-scales %s, expected (%d,) f16 values / (%d, 8)" % (
                kind, D.shape, s.shape, G, G))
        if s.dtype.kind not in "iu" or np.abs(s).max(initial=0) > SUPER_MAX or np.any(s.reshape(-1)[d.size:] != 0):
            raise QtfError("%s: given sub-scales outside -31..31 or not 0 past the last block" % kind)
        if not np.array_equal(super_block_scales(D, s)[:d.size], d):
            raise QtfError("%s: given block scales are not f16(s D) of the given sub-scales" % kind)
        D = D.astype(np.float16)
    blocks = (_pack_q4(d, code) if base == "q4" else _pack_q3(d, code))[:, 2:]  # the codes without the scale
    G = D.size
    body = np.zeros((G * SUPER_BLOCKS, nbytes), dtype=np.uint8)
    body[:d.size] = blocks
    bits = (s.astype(np.int64) & 63) << (6 * np.arange(SUPER_BLOCKS, dtype=np.int64))
    head = np.zeros((G, 8), dtype=np.uint8)
    head[:, :2] = D.astype("<f2").view(np.uint8).reshape(-1, 2)
    head[:, 2:] = bits.sum(axis=1).astype("<u8").view(np.uint8).reshape(G, 8)[:, :6]
    out = np.concatenate([head, body.reshape(G, -1)], axis=1).reshape(-1)
    return out[:G * 8 + d.size * nbytes].tobytes()  # the last group's absent blocks are not stored


def decode_super(raw, rows, cols, kind, name):
    """The bytes of a q4s/q3s tensor -> (values [rows, cols] float32, (d [rows, nb], codes [rows, nb * 32] signed,
    (D [G] float32, s [G, 8] int8))); QtfError for a bad group scale, sub-scale or padding."""
    _, base, lo, hi, nbytes = SUPER_KINDS[kind]
    nb = (cols + 31) // 32
    B = rows * nb
    G = (B + SUPER_BLOCKS - 1) // SUPER_BLOCKS
    full = np.zeros(G * (8 + SUPER_BLOCKS * nbytes), dtype=np.uint8)
    full[:len(raw)] = np.frombuffer(raw, dtype=np.uint8)
    full = full.reshape(G, -1)
    D = full[:, :2].copy().view("<f2").astype(np.float32)[:, 0]
    word = np.zeros((G, 8), dtype=np.uint8)
    word[:, :6] = full[:, 2:8]
    w = word.view("<u8")[:, 0]
    s = ((w[:, None] >> (6 * np.arange(SUPER_BLOCKS, dtype=np.uint64))) & np.uint64(63)).astype(np.int16)
    s = np.where(s >= 32, s - 64, s).astype(np.int8)
    if not np.all(np.isfinite(D)):
        raise QtfError("bad %s group scale (not finite) %s" % (kind, name))
    if np.any(s == -32) or np.any(s.reshape(-1)[B:] != 0):
        raise QtfError("bad %s sub-scale (-32, or nonzero past the last block) %s" % (kind, name))
    try:
        d = super_block_scales(D, s)[:B]
    except QtfError:
        raise QtfError("bad %s block scale (s * D overflows f16) %s" % (kind, name))
    body = full[:, 8:].reshape(G * SUPER_BLOCKS, nbytes)[:B]
    if base == "q4":
        code = np.concatenate([body & 15, body >> 4], axis=1).astype(np.int8) - 8
    else:
        code = decode_q3_codes(np.concatenate([np.zeros((B, 2), np.uint8), body], axis=1)) - 4
    code = code.reshape(rows, nb * 32)
    tail = nb * 32 - cols
    if tail and np.any(code[:, -tail:] != 0):
        raise QtfError("bad %s padding %s" % (kind, name))
    d = d.reshape(rows, nb)
    v = (code.reshape(rows, nb, 32).astype(np.float32) * d[:, :, None]).reshape(rows, nb * 32)[:, :cols]
    return np.ascontiguousarray(v), (d, code, (D, s))


# q3a: q3 blocks with absmax scales (max / -4, `qtf quantize --type q3 --q4-scale absmax`): the same dtype and
# bytes, another encoding, which budget.py offers beside the searched one (neither wins on every matrix).
KINDS = {"f32": DT_F32, "f16": DT_F16, "i8": DT_I8, "q8": DT_Q8, "q4": DT_Q4, "q3": DT_Q3, "q3a": DT_Q3,
         "q4s": DT_Q4S, "q3s": DT_Q3S}
BLOCK_KINDS = ("q4", "q3", "q3a", "q4s", "q3s")  # stored in blocks of 32 along each row


def tensor_nbytes(shape, kind):
    """Bytes of a tensor of this shape stored as kind (docs/format.md's size rule)."""
    count = int(np.prod(shape))
    cols = int(shape[-1])
    rows = count // cols
    blocks = rows * ((cols + 31) // 32)
    if kind in SUPER_KINDS:
        return (blocks + SUPER_BLOCKS - 1) // SUPER_BLOCKS * 8 + blocks * SUPER_KINDS[kind][4]
    return {"f32": 4 * count, "f16": 2 * count, "i8": count, "q8": count + 4 * rows,
            "q4": blocks * 18, "q3": blocks * 14, "q3a": blocks * 14}[kind]


def encode_tensor(a, kind, grid=None):
    """(dtype code, bytes, scale) of a float array stored as kind (f32, f16, i8, q8, q4, q3, q3a, q4s, q3s); grid:
    the block kinds' scales and codes given (encode_q4, encode_super)."""
    a = np.asarray(a)
    if kind not in KINDS:
        raise QtfError("unknown tensor kind %r (%s)" % (kind, ", ".join(KINDS)))
    if grid is not None:
        if kind not in BLOCK_KINDS:
            raise QtfError("given scales and codes are for %s tensors, not %s" % ("/".join(BLOCK_KINDS), kind))
        if kind in SUPER_KINDS:
            return SUPER_KINDS[kind][0], encode_super(a, kind, grid=grid), 1.0
        return (DT_Q4, encode_q4(a, grid=grid), 1.0) if kind == "q4" else (DT_Q3, encode_q3(a, grid=grid), 1.0)
    if kind in ("i8", "q8") + BLOCK_KINDS and not np.all(np.isfinite(a)):
        raise QtfError("non-finite values cannot be quantized")
    if kind in SUPER_KINDS:
        return SUPER_KINDS[kind][0], encode_super(a, kind), 1.0
    if kind == "f32":
        return DT_F32, np.ascontiguousarray(a.astype("<f4")).tobytes(), 1.0
    if kind == "f16":
        return DT_F16, np.ascontiguousarray(a.astype("<f2")).tobytes(), 1.0
    if kind == "q8":
        return DT_Q8, encode_q8(a), 1.0
    if kind == "q4":
        return DT_Q4, encode_q4(a), 1.0
    if kind in ("q3", "q3a"):
        return DT_Q3, encode_q3(a, search=kind == "q3"), 1.0
    data, s = encode_i8(a)
    return DT_I8, data, s


def _align(n):
    return (n + ALIGN - 1) // ALIGN * ALIGN


def write_qtf(path, meta, tensors):
    """Writes a .qtf v1 file and returns its bytes. tensors: (name, array) (float32 -> f32, float16 -> f16)
    or (name, float array, kind) with kind f32, f16, i8, q8, q4, q3 or q3a (encode_tensor), or (name, array,
    kind, (scales, codes)) for q4/q3 blocks written as given (encode_q4)."""
    meta_bytes = b"".join(_pack_str(k) + _pack_value(v) for k, v in meta.items())
    entries = []  # (name, dtype, shape, bytes, scale)
    for item in tensors:
        name, a = item[0], np.asarray(item[1])
        if len(item) > 2:
            kind = item[2]
        elif a.dtype == np.float32:
            kind = "f32"
        elif a.dtype == np.float16:
            kind = "f16"
        else:
            raise QtfError("tensor %s: dtype %s not written (use float32 or float16, or give a kind)" % (name, a.dtype))
        if not 1 <= a.ndim <= 4:
            raise QtfError("tensor %s: ndim %d not in 1..4" % (name, a.ndim))
        try:
            dt, data, scale = encode_tensor(a, kind, item[3] if len(item) > 3 else None)
        except QtfError as e:
            raise QtfError("tensor %s: %s" % (name, e))
        entries.append((name, dt, a.shape, data, scale))
    if len(set(e[0] for e in entries)) != len(entries):
        raise QtfError("duplicate tensor names")

    # The table size does not depend on the offsets, so lay out the data after it.
    table_size = sum(4 + len(n.encode()) + 4 + 8 * len(shape) + 8 + 8 + 4 for n, _, shape, _, _ in entries)
    meta_offset = HEADER_SIZE
    table_offset = meta_offset + len(meta_bytes)
    data_offset = _align(table_offset + table_size)
    table, offset, offsets = b"", data_offset, []
    for name, dt, shape, data, scale in entries:
        offsets.append(offset)
        table += _pack_str(name) + struct.pack("<BBH", dt, len(shape), 0)
        table += struct.pack("<%dQ" % len(shape), *shape) + struct.pack("<QQf", offset, len(data), scale)
        offset = _align(offset + len(data))
    assert len(table) == table_size
    file_size = offsets[-1] + len(entries[-1][3]) if entries else data_offset

    buf = bytearray(file_size)
    buf[meta_offset:table_offset] = meta_bytes
    buf[table_offset:table_offset + table_size] = table
    for e, off in zip(entries, offsets):
        buf[off:off + len(e[3])] = e[3]
    buf[0:HEADER_SIZE] = MAGIC + struct.pack("<IIQQQQQQIIII", VERSION, 0, file_size, meta_offset, len(meta_bytes),
                                             table_offset, table_size, data_offset, len(meta), len(entries), 0, 0)
    struct.pack_into("<I", buf, 72, zlib.crc32(bytes(buf)) & 0xFFFFFFFF)  # checksum bytes are zero here
    data = bytes(buf)
    if path is not None:
        with open(path, "wb") as f:
            f.write(data)
    return data


class _Cursor:
    def __init__(self, data, pos, end):
        self.data, self.pos, self.end = data, pos, end

    def take(self, n):
        if n < 0 or self.pos + n > self.end:
            raise QtfError("section overrun")
        b = self.data[self.pos:self.pos + n]
        self.pos += n
        return b

    def unpack(self, fmt):
        return struct.unpack(fmt, self.take(struct.calcsize(fmt)))

    def string(self, max_len):
        (n,) = self.unpack("<I")
        if n > max_len:
            raise QtfError("string too long")
        try:
            return self.take(n).decode("utf-8", errors="strict")
        except UnicodeDecodeError:
            raise QtfError("invalid UTF-8")

    def name(self):
        s = self.string(255)
        if not s:
            raise QtfError("empty key or name")
        return s


def tokenizer_and_provenance(meta, tokenizer_type, tokens, provenance=None):
    """Adds the tokenizer and provenance keys every exported model carries; returns meta."""
    meta["tokenizer.type"] = tokenizer_type
    meta["tokenizer.tokens"] = list(tokens)
    for k, v in (provenance or {}).items():
        meta["provenance." + k] = v
    return meta


def write_model(path, meta, named_tensors, dtype="f32"):
    """Writes a model's (name, torch tensor) pairs as f32 or f16 with its metadata: the one export path
    shared by the Q-TensorFormer and Llama-block exporters."""
    np_dtype = {"f32": np.float32, "f16": np.float16}[dtype]
    tensors = [(n, t.detach().cpu().float().numpy().astype(np_dtype)) for n, t in named_tensors]
    return write_qtf(path, meta, tensors)


def read_qtf(path_or_bytes, grids=None):
    """Returns (meta dict, {name: np.ndarray}) after verifying the whole file. grids: a dict that gets each
    q4/q3 tensor's stored (scales [rows, nb] float32, codes [rows, nb * 32] int8, signed), as write_qtf takes
    (q4s/q3s: and (D [G], s [G, 8]), encode_super's grid)."""
    if isinstance(path_or_bytes, (bytes, bytearray)):
        data = bytes(path_or_bytes)
    else:
        with open(path_or_bytes, "rb") as f:
            data = f.read()
    if len(data) < HEADER_SIZE:
        raise QtfError("truncated header")
    if data[:8] != MAGIC:
        raise QtfError("bad magic")
    (version, flags, file_size, meta_offset, meta_size, table_offset, table_size, data_offset, meta_count,
     tensor_count, checksum, reserved) = struct.unpack("<IIQQQQQQIIII", data[8:80])
    if version != VERSION:
        raise QtfError("unsupported version")
    if flags != 0 or reserved != 0:
        raise QtfError("reserved fields not zero")
    if file_size != len(data):
        raise QtfError("file size mismatch (truncated?)")
    if (meta_offset < HEADER_SIZE or table_offset < meta_offset + meta_size or
            data_offset < table_offset + table_size or data_offset % ALIGN or data_offset > file_size):
        raise QtfError("bad section layout")
    if meta_count > 4096 or tensor_count > 4096:
        raise QtfError("too many entries")
    if zlib.crc32(data[:72] + b"\0\0\0\0" + data[76:]) & 0xFFFFFFFF != checksum:
        raise QtfError("checksum mismatch")

    meta = {}
    c = _Cursor(data, meta_offset, meta_offset + meta_size)
    for _ in range(meta_count):
        key = c.name()
        if key in meta:
            raise QtfError("duplicate key " + key)
        (t,) = c.unpack("<B")
        if t == T_I64:
            (v,) = c.unpack("<q")
        elif t == T_F64:
            (v,) = c.unpack("<d")
        elif t == T_STR:
            v = c.string(1 << 24)
        elif t in (T_I64S, T_F64S, T_STRS):
            (n,) = c.unpack("<I")
            if n > (1 << 24):
                raise QtfError("array too long")
            if t == T_I64S:
                v = list(c.unpack("<%dq" % n))
            elif t == T_F64S:
                v = list(c.unpack("<%dd" % n))
            else:
                v = [c.string(1 << 24) for _ in range(n)]
        else:
            raise QtfError("bad metadata type %d" % t)
        meta[key] = v
    if c.pos != meta_offset + meta_size:
        raise QtfError("metadata size mismatch")

    tensors = {}
    c = _Cursor(data, table_offset, table_offset + table_size)
    prev_end = data_offset
    for _ in range(tensor_count):
        name = c.name()
        if name in tensors:
            raise QtfError("duplicate tensor " + name)
        dt, ndim, res = c.unpack("<BBH")
        if dt not in DT_SIZE or not 1 <= ndim <= 4 or res != 0:
            raise QtfError("bad tensor entry " + name)
        dims = c.unpack("<%dQ" % ndim)
        offset, size, scale = c.unpack("<QQf")
        count = 1
        for d in dims:
            if d < 1:
                raise QtfError("zero dimension in " + name)
            count *= d
        rows = count // dims[-1]
        cols = dims[-1]
        blocks = (cols + 31) // 32
        super_kind = {DT_Q4S: "q4s", DT_Q3S: "q3s"}.get(dt)
        if super_kind:
            expect = tensor_nbytes(dims, super_kind)
        elif dt in (DT_Q4, DT_Q3):
            expect = rows * blocks * (18 if dt == DT_Q4 else 14)
        else:
            expect = count * DT_SIZE[dt] + (4 * rows if dt == DT_Q8 else 0)
        if size != expect or offset % ALIGN or offset < prev_end or offset + size > file_size:
            raise QtfError("bad tensor placement " + name)
        if dt == DT_I8 and not (np.isfinite(scale) and scale > 0):
            raise QtfError("bad i8 scale " + name)
        prev_end = offset + size
        if dt == DT_Q8:
            scales = np.frombuffer(data, dtype="<f4", count=rows, offset=offset)
            if not (np.all(np.isfinite(scales)) and np.all(scales > 0)):
                raise QtfError("bad q8 scales " + name)
            q = np.frombuffer(data, dtype="i1", count=count, offset=offset + 4 * rows).reshape(rows, dims[-1])
            tensors[name] = (q.astype(np.float32) * scales[:, None]).reshape(dims)
            continue
        if super_kind:
            v, grid = decode_super(data[offset:offset + size], rows, cols, super_kind, name)
            if grids is not None:
                grids[name] = grid
            tensors[name] = v.reshape(dims)
            continue
        if dt == DT_Q4:
            raw = np.frombuffer(data, dtype=np.uint8, count=size, offset=offset).reshape(rows, blocks, 18)
            d = raw[:, :, :2].copy().view("<f2").astype(np.float32)  # [rows, blocks, 1]
            q = raw[:, :, 2:]
            nib = np.concatenate([q & 15, q >> 4], axis=2).astype(np.int8)  # value j: low, j + 16: high
            tail = blocks * 32 - cols
            if not np.all(np.isfinite(d)) or (tail and np.any(nib[:, -1, 32 - tail:] != 8)):
                raise QtfError("bad q4 scales or padding " + name)
            v = (d * (nib - 8).astype(np.float32)).reshape(rows, blocks * 32)[:, :cols]
            if grids is not None:
                grids[name] = (d[:, :, 0], (nib - 8).reshape(rows, -1))
            tensors[name] = np.ascontiguousarray(v).reshape(dims)
            continue
        if dt == DT_Q3:
            raw = np.frombuffer(data, dtype=np.uint8, count=size, offset=offset).reshape(rows, blocks, 14)
            d = raw[:, :, :2].copy().view("<f2").astype(np.float32)  # [rows, blocks, 1]
            code = decode_q3_codes(raw)
            tail = blocks * 32 - cols
            if not np.all(np.isfinite(d)) or (tail and np.any(code[:, -1, 32 - tail:] != 4)):
                raise QtfError("bad q3 scales or padding " + name)
            v = (d * (code - 4).astype(np.float32)).reshape(rows, blocks * 32)[:, :cols]
            if grids is not None:
                grids[name] = (d[:, :, 0], (code - 4).reshape(rows, -1).astype(np.int8))
            tensors[name] = np.ascontiguousarray(v).reshape(dims)
            continue
        a = np.frombuffer(data, dtype=DT_NUMPY[dt], count=count, offset=offset).reshape(dims)
        tensors[name] = a.astype(np.float32) * np.float32(scale) if dt == DT_I8 else a
    if c.pos != table_offset + table_size:
        raise QtfError("tensor table size mismatch")
    return meta, tensors
