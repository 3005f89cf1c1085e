"""Reader and writer of the .qtf v1 model file (docs/format.md). Pure Python + struct + zlib + numpy.

    write_qtf(path, meta, tensors)      meta: {key: value}, tensors: [(name, np.ndarray)] in file order
    meta, tensors = read_qtf(path)      verifies every rule of docs/format.md, CRC-32 included

Metadata value types are inferred: int -> i64, float -> f64, str -> str, and lists of those -> arrays.
Tensor dtype comes from the array: float32 -> f32, float16 -> f16 (i8, q8 and q4 are read, as float32
values, but never written here: `qtf quantize` writes them).
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
DT_SIZE = {DT_F32: 4, DT_F16: 2, DT_I8: 1, DT_Q8: 1, DT_Q4: None}
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


def _align(n):
    return (n + ALIGN - 1) // ALIGN * ALIGN


def write_qtf(path, meta, tensors):
    """Writes a .qtf v1 file and returns its bytes."""
    meta_bytes = b"".join(_pack_str(k) + _pack_value(v) for k, v in meta.items())
    arrays = []
    for name, a in tensors:
        a = np.asarray(a)
        if a.dtype == np.float32:
            dt = DT_F32
        elif a.dtype == np.float16:
            dt = DT_F16
        else:
            raise QtfError("tensor %s: dtype %s not written (use float32 or float16)" % (name, a.dtype))
        if not 1 <= a.ndim <= 4:
            raise QtfError("tensor %s: ndim %d not in 1..4" % (name, a.ndim))
        arrays.append((name, dt, np.ascontiguousarray(a.astype(DT_NUMPY[dt]))))
    if len(set(n for n, _, _ in arrays)) != len(arrays):
        raise QtfError("duplicate tensor names")

    # The table size does not depend on the offsets, so lay out the data after it.
    table_size = sum(4 + len(n.encode()) + 4 + 8 * a.ndim + 8 + 8 + 4 for n, _, a in arrays)
    meta_offset = HEADER_SIZE
    table_offset = meta_offset + len(meta_bytes)
    data_offset = _align(table_offset + table_size)
    table, offset, offsets = b"", data_offset, []
    for name, dt, a in arrays:
        offsets.append(offset)
        table += _pack_str(name) + struct.pack("<BBH", dt, a.ndim, 0)
        table += struct.pack("<%dQ" % a.ndim, *a.shape) + struct.pack("<QQf", offset, a.nbytes, 1.0)
        offset = _align(offset + a.nbytes)
    assert len(table) == table_size
    file_size = offsets[-1] + arrays[-1][2].nbytes if arrays else data_offset

    buf = bytearray(file_size)
    buf[meta_offset:table_offset] = meta_bytes
    buf[table_offset:table_offset + table_size] = table
    for (_, _, a), off in zip(arrays, offsets):
        buf[off:off + a.nbytes] = a.tobytes()
    buf[0:HEADER_SIZE] = MAGIC + struct.pack("<IIQQQQQQIIII", VERSION, 0, file_size, meta_offset, len(meta_bytes),
                                             table_offset, table_size, data_offset, len(meta), len(arrays), 0, 0)
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


def read_qtf(path_or_bytes):
    """Returns (meta dict, {name: np.ndarray}) after verifying the whole file."""
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
        if dt == DT_Q4:
            expect = rows * blocks * 18
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
        if dt == DT_Q4:
            raw = np.frombuffer(data, dtype=np.uint8, count=size, offset=offset).reshape(rows, blocks, 18)
            d = raw[:, :, :2].copy().view("<f2").astype(np.float32)  # [rows, blocks, 1]
            q = raw[:, :, 2:]
            nib = np.concatenate([q & 15, q >> 4], axis=2).astype(np.int8)  # value j: low, j + 16: high
            tail = blocks * 32 - cols
            if not np.all(np.isfinite(d)) or (tail and np.any(nib[:, -1, 32 - tail:] != 8)):
                raise QtfError("bad q4 scales or padding " + name)
            v = (d * (nib - 8).astype(np.float32)).reshape(rows, blocks * 32)[:, :cols]
            tensors[name] = np.ascontiguousarray(v).reshape(dims)
            continue
        a = np.frombuffer(data, dtype=DT_NUMPY[dt], count=count, offset=offset).reshape(dims)
        tensors[name] = a.astype(np.float32) * np.float32(scale) if dt == DT_I8 else a
    if c.pos != table_offset + table_size:
        raise QtfError("tensor table size mismatch")
    return meta, tensors
