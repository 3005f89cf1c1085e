"""qtf: Python bindings for the qtf edge inference engine, over its C API (libqtf.so) with ctypes.

    import qtf
    model = qtf.Model("models/shakespeare-qtf.qtf")
    for tok in model.generate("ROMEO:", max_tokens=40, temperature=0):
        print(tok.text, end="")               # tok.rank, tok.quantum, tok.entropy: numpy, per layer
    print(model.eval(open("input.txt").read(), max_tokens=500).perplexity)

A Model is read-only once loaded and may be shared by threads; a Context belongs to one thread at a time
(a call while another thread uses it raises QtfError). Integers are range-checked before they reach C.
"""
import contextlib
import ctypes
import math
import numbers
import os
import threading

import numpy as np

from . import _capi

__all__ = ["Model", "Context", "Token", "Generation", "Report", "EvalResult", "QtfError", "ContextFullError",
           "library_path", "set_simd", "simd"]
__version__ = "0.1.0"

_lib = None
_lib_lock = threading.Lock()


def _L():
    global _lib
    if _lib is None:
        with _lib_lock:
            if _lib is None:
                lib = _capi.load_library()
                # QTF_SIMD=scalar|sse2|avx2|avxvnni|avx512|avx512vnni|neon|neondot picks the kernel variant, as for the qtf tool.
                name = os.environ.get("QTF_SIMD")
                if name and lib.qtf_set_simd(name.encode()) != _capi.OK:
                    raise QtfError(_capi.ERR_INVALID_ARGUMENT,
                                   "QTF_SIMD: " + lib.qtf_last_error().decode("utf-8", "replace"))
                _lib = lib
    return _lib


def set_simd(name):
    """Picks the SIMD kernel variant for the process ("auto", "scalar", "sse2", "avx2", "avx512",
    "neon"); QtfError if this build or CPU lacks it. For tests and benchmarks: not while decoding."""
    if not isinstance(name, str) or "\0" in name:
        raise ValueError(f"qtf: set_simd takes a variant name (str without NUL), got {name!r}")
    _check(_L().qtf_set_simd(name.encode()))


def simd():
    """The SIMD kernel variant in use, e.g. "avx2"."""
    return _L().qtf_simd().decode()


def library_path():
    """The path of the libqtf.so this package uses."""
    return _L()._name


class QtfError(RuntimeError):
    """A qtf_status other than QTF_OK; .code is the status, the message is qtf_last_error()."""

    def __init__(self, code, message):
        super().__init__(message)
        self.code = code


class ContextFullError(QtfError):
    pass


def _check(status):
    if status != _capi.OK:
        msg = _L().qtf_last_error().decode("utf-8", "replace")
        raise (ContextFullError if status == _capi.ERR_CONTEXT_FULL else QtfError)(status, msg)


_ROUTES = {"auto": 0, "classical": 1, "quantum": 2}
_ACT_PATHS = {"quantum": 0, "fourier": 1, "spline": 2}
_MEM_COPIES = {"auto": 0, "f32": 1, "q8": 2}
_ACT_QUANTS = {"auto": 0, "off": 1, "q8": 2}  # QTF_ACT_QUANT_*

# ctypes converts Python ints modulo 2**bits without a word (2**32 + 16 becomes 16): every integer is
# checked against its C type's range first.
_INT32 = (-2**31, 2**31 - 1)
_UINT64 = (0, 2**64 - 1)


def _int(name, value, lo, hi):
    """value as a Python int in [lo, hi]; TypeError for non-integers (bool included), ValueError outside."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise TypeError(f"qtf: {name} must be an integer, got {type(value).__name__} {value!r}")
    value = int(value)
    if not lo <= value <= hi:
        raise ValueError(f"qtf: {name} = {value} is outside {lo}..{hi}")
    return value


def _float(name, value):
    """value as a finite float; TypeError for non-numbers (bool included), ValueError for NaN/Inf."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"qtf: {name} must be a number, got {type(value).__name__} {value!r}")
    value = float(value)
    if not math.isfinite(value) or abs(value) > 3.4e38:  # beyond float32 ctypes would give inf
        raise ValueError(f"qtf: {name} = {value} is not a finite float32")
    return value


def _path(name, path):
    """A str, bytes or os.PathLike path as the bytes C receives; a NUL byte would cut it short."""
    if not isinstance(path, (str, bytes, os.PathLike)):
        raise TypeError(f"qtf: {name} must be a str, bytes or os.PathLike path, got {type(path).__name__}")
    data = os.fsencode(path)
    if b"\0" in data:
        raise ValueError(f"qtf: {name} {path!r} contains a NUL byte")
    return data


def _tokens(tokens, vocab):
    """Token ids (a sequence, numpy array or one int) as a contiguous int32 array, each checked to be an
    integer in 0..vocab-1 before any narrowing to int32 could wrap it."""
    arr = np.asarray(tokens)
    if arr.ndim > 1:
        raise ValueError(f"qtf: token ids must be one sequence, got shape {arr.shape}")
    arr = arr.reshape(-1)
    if arr.size == 0:
        return np.zeros(0, dtype=np.int32)
    if arr.dtype.kind not in "iu":  # bool, float, or Python ints too large for int64 (object)
        arr = np.array([_int(f"token at index {i}", t, -2**63, 2**63 - 1) for i, t in enumerate(arr.tolist())],
                       dtype=np.int64)
    bad = np.flatnonzero((arr < 0) | (arr >= vocab))
    if bad.size:
        i = int(bad[0])
        raise QtfError(_capi.ERR_OUT_OF_RANGE, f"qtf: token {int(arr[i])} at index {i} is outside the vocabulary "
                                               f"(0..{vocab - 1})")
    return np.ascontiguousarray(arr, dtype=np.int32)


class _Handle:
    """An object owning one C handle (self._h), freed by close(), `with` or garbage collection.

    Every call into C goes through `with self._use() as h:`, which raises QtfError once the object is
    closed; close() while another thread is inside such a call frees the handle when that call ends.
    An exclusive handle (a Context) also refuses a second caller while one is inside."""
    _h = None
    _free = None  # the qtf_*_free function's name
    _exclusive = False
    _lock = None

    def _own(self, h):
        self._lock = threading.Lock()
        self._users = 0
        self._closing = False
        self._h = h

    @contextlib.contextmanager
    def _use(self):
        with self._lock:
            if not self._h or self._closing:
                raise QtfError(_capi.ERR_INVALID_ARGUMENT, f"qtf: this {type(self).__name__} is closed")
            if self._exclusive and self._users:
                raise QtfError(_capi.ERR_INVALID_ARGUMENT,
                               f"qtf: this {type(self).__name__} is in use by another thread; it belongs to one "
                               "thread at a time (make one per thread: model.context())")
            self._users += 1
        try:
            yield self._h
        finally:
            with self._lock:
                self._users -= 1
                h = self._h if self._closing and not self._users else None
                if h:
                    self._h = None
            if h:
                getattr(_L(), self._free)(h)

    def close(self):
        if self._lock is None:  # __init__ failed before it had a handle
            return
        with self._lock:
            if not self._h or self._closing:
                return
            if self._users:  # another thread is inside a call: the last one out frees it
                self._closing = True
                return
            h, self._h = self._h, None
        getattr(_L(), self._free)(h)

    def __del__(self):
        self.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class Model(_Handle):
    """A loaded .qtf model (memory-mapped by default). close() (or the end of a `with` block) releases it;
    contexts made from it keep it alive until they are closed too."""

    def __init__(self, path, mmap=True, adapter=None, tokenizer=None, gguf_f32=False, gguf_q4=False):
        """path: str, bytes or os.PathLike: a .qtf file, or a GGUF file, llama2.c checkpoint or Hugging Face
        directory (converted in memory at each load). adapter: a LoRA adapter file (qtf.arch = lora) applied
        in place over the base weights. tokenizer: a llama2.c checkpoint's tokenizer.bin. gguf_f32: a GGUF's
        quantized matrices (but Q4_0) dequantized to f32 instead of requantized to q8 (`qtf --gguf-f32`); gguf_q4:
        requantized to q4 instead (`qtf --gguf-q4`: half of q8's memory)."""
        data = _path("model path", path)
        adapter_data = _path("adapter path", adapter) if adapter is not None else None
        tokenizer_data = _path("tokenizer path", tokenizer) if tokenizer is not None else None
        o = _L().qtf_load_default_options()
        o.use_mmap, o.gguf_f32, o.tokenizer_path = 1 if mmap else 0, 1 if gguf_f32 else 0, tokenizer_data
        o.gguf_q4 = 1 if gguf_q4 else 0
        h = ctypes.c_void_p()
        _check(_L().qtf_model_load_file_with(data, ctypes.byref(o), ctypes.byref(h)))
        self._own(h)
        if adapter_data is not None:
            _check(_L().qtf_model_apply_adapter_file(h, adapter_data, 1 if mmap else 0))
        self.path = os.fsdecode(data)
        i = _capi.ModelInfo()
        _check(_L().qtf_model_get_info(h, ctypes.byref(i)))
        self.info = {name: getattr(i, name) for name, _ in _capi.ModelInfo._fields_}
        self.vocab_size = i.vocab_size
        self.n_layers = i.n_layers
        self.context_length = i.context
        self._texts = [self._token_bytes(t) for t in range(i.vocab_size)]

    _free = "qtf_model_free"

    def __repr__(self):
        return (f"qtf.Model({self.path!r}: {self.n_layers} layers, d={self.info['d_model']}, vocab {self.vocab_size}, "
                f"{self.info['parameters']} parameters)")

    def _token_bytes(self, token):
        p, n = ctypes.c_void_p(), ctypes.c_size_t()
        with self._use() as h:
            _check(_L().qtf_token_text(h, token, ctypes.byref(p), ctypes.byref(n)))
            return ctypes.string_at(p, n.value) if n.value else b""

    def token_bytes(self, token):
        """The bytes of one token."""
        token = _int("token", token, -2**63, 2**63 - 1)
        if not 0 <= token < self.vocab_size:
            raise QtfError(_capi.ERR_OUT_OF_RANGE, f"token {token} is outside the vocabulary")
        return self._texts[token]

    def tokenize(self, text):
        """Token ids of a str (UTF-8) or bytes, as an int32 numpy array (bytes with no token are skipped)."""
        data = text.encode("utf-8") if isinstance(text, str) else bytes(text)
        out = np.zeros(len(data) + 1, dtype=np.int32)  # at most one token per byte with today's tokenizers
        n = ctypes.c_int32()
        if len(data) >= _INT32[1]:
            raise ValueError(f"qtf: a text of {len(data)} bytes is too long to tokenize in one call")
        for _ in range(2):  # if not, the call says how many are needed: once more with that
            with self._use() as h:
                status = _L().qtf_tokenize(h, data, len(data), out.ctypes.data_as(ctypes.POINTER(ctypes.c_int32)),
                                           len(out), ctypes.byref(n))
            if status != _capi.ERR_OUT_OF_RANGE or n.value <= len(out):
                break
            out = np.zeros(n.value, dtype=np.int32)
        _check(status)
        return out[:n.value].copy()

    def detokenize(self, tokens):
        """The text of a sequence of token ids (invalid UTF-8 is replaced)."""
        return b"".join(self.token_bytes(int(t)) for t in tokens).decode("utf-8", "replace")

    def context(self, **options):
        """A new Context over this model: see Context for the options."""
        return Context(self, **options)

    def generate(self, prompt, max_tokens=128, temperature=0.8, top_k=40, top_p=0.95, min_p=0.05,
                 repeat_penalty=1.0, repeat_last_n=64, seed=0x5eed, stop=(), logits=False, context=None,
                 **context_options):
        """Generates text after prompt. Returns a Generation: iterate it for Token objects as they are made
        (temperature 0 = greedy: the same text as `qtf run --temp 0`). A fresh Context is made unless one
        is given (it is reset first)."""
        return Generation(self, prompt, max_tokens, dict(temperature=temperature, top_k=top_k, top_p=top_p,
                          min_p=min_p, repeat_penalty=repeat_penalty, repeat_last_n=repeat_last_n, seed=seed),
                          stop, logits, context, context_options)

    def eval(self, text, max_tokens=2000, stride=None, **context_options):
        """Loss (nats/token) and perplexity of the model on a text, scored as `qtf eval` does it: windows of
        the context length starting every `stride` tokens (default: the context), each target scored once.
        text: str, bytes or a sequence of token ids. Returns an EvalResult with numpy per-token arrays."""
        ids = _tokens(text, self.vocab_size) if not isinstance(text, (str, bytes)) else self.tokenize(text)
        max_tokens = _int("max_tokens", max_tokens, 0, 2**63 - 1)
        if stride is not None:
            stride = _int("stride", stride, 0, 2**63 - 1)
        if max_tokens and len(ids) > max_tokens:
            ids = ids[:max_tokens]
        if len(ids) < 2:
            raise ValueError("qtf: the text has fewer than 2 tokens to score")
        ctx = Context(self, **context_options)
        T, n = ctx.n_ctx, len(ids)
        S = stride if stride and 0 < stride < T else T
        nll, target_pos, passes = [], [], []
        b = 0
        while b + 1 < n:
            end = min(b + T, n)
            first_target = 1 if b == 0 else b + T - S
            ctx.reset()
            for j in range(b, end - 1):
                ctx.decode([ids[j]])
                passes.append(ctx.stats())
                if j + 1 >= first_target:
                    nll.append(-ctx.log_softmax()[ids[j + 1]])
                    target_pos.append(j + 1)
            if end == n:
                break
            b += S
        return EvalResult(np.array(nll), np.array(target_pos), Report(passes, self.n_layers))


class Context(_Handle):
    """Decoding state over a Model (the KV cache and scratch, sized once here). One thread at a time.

    Options: n_ctx (0 = the model's context), route ("auto", "classical", "quantum"), fixed_rank (0 = the
    entropy schedule), act_path ("fourier", "quantum", "spline"), theta, alpha (None = the model's),
    n_threads (threads the context splits its work over), n_batch (prompt tokens per block, 0 = 64),
    pack_tt (False: TT cores read in place, a smaller arena), attention_samples (None = the model's, 0 =
    exact, N = N draws per head), attention_seed (None = the model's), mem_budget (execution by cost: arena
    bytes for dense copies of fixed-rank TT linears predicted faster; None = auto, the original's q8 size;
    0 = never), mem_copy ("auto", "f32" exact up to float rounding, "q8"), act_quant (i8/q4 weights:
    "auto" int8 x int8 dot products where the kernel variant's are the faster, "off" the exact float path,
    "q8" always integer, as qtf --act-quant)."""

    def __init__(self, model, n_ctx=0, route="auto", fixed_rank=0, act_path="fourier", theta=None, alpha=None,
                 n_threads=1, n_batch=0, pack_tt=True, attention_samples=None, attention_seed=None,
                 mem_budget=None, mem_copy="auto", act_quant="auto"):
        if route not in _ROUTES or act_path not in _ACT_PATHS:
            raise ValueError(f"qtf: route must be one of {list(_ROUTES)}, act_path one of {list(_ACT_PATHS)}")
        self.model = model
        p = _L().qtf_context_default_params()
        p.n_ctx, p.route = _int("n_ctx", n_ctx, 0, _INT32[1]), _ROUTES[route]
        p.fixed_rank, p.act_path = _int("fixed_rank", fixed_rank, 0, _INT32[1]), _ACT_PATHS[act_path]
        if theta is not None:
            p.override_theta, p.theta = 1, _float("theta", theta)
        if alpha is not None:
            p.override_alpha, p.alpha = 1, _float("alpha", alpha)
        n_threads = _int("n_threads", n_threads, 1, _INT32[1])
        o = _L().qtf_context_default_options()
        o.n_batch, o.pack_tt = _int("n_batch", n_batch, 0, _INT32[1]), 1 if pack_tt else 0
        if attention_samples is not None:
            o.attention_samples = _int("attention_samples", attention_samples, -1, _INT32[1])
        if attention_seed is not None:
            o.override_seed, o.attention_seed = 1, _int("attention_seed", attention_seed, *_UINT64)
        if mem_budget is not None:
            o.mem_budget = _int("mem_budget", mem_budget, 0, 2**62)
        if mem_copy not in _MEM_COPIES:
            raise ValueError(f"qtf: mem_copy must be one of {list(_MEM_COPIES)}")
        o.mem_copy = _MEM_COPIES[mem_copy]
        if act_quant not in _ACT_QUANTS:
            raise ValueError(f"qtf: act_quant must be one of {list(_ACT_QUANTS)}")
        o.act_quant = _ACT_QUANTS[act_quant]
        h = ctypes.c_void_p()
        with model._use() as mh:  # the C context holds its own reference to the model from here on
            _check(_L().qtf_context_new_with(mh, ctypes.byref(p), ctypes.byref(o), ctypes.byref(h)))
        self._own(h)
        if n_threads != 1:
            _check(_L().qtf_context_set_threads(h, n_threads))
        self._layers = (_capi.LayerStats * max(1, model.n_layers))()

    _free = "qtf_context_free"
    _exclusive = True

    def _get(self, fn):
        with self._use() as h:
            return fn(h)

    @property
    def n_past(self):
        return self._get(_L().qtf_context_n_past)

    @property
    def n_ctx(self):
        return self._get(_L().qtf_context_n_ctx)

    @property
    def n_prefix(self):
        """The model's memory slots: a fixed prefix of the cache that reset() keeps."""
        return self._get(_L().qtf_context_n_prefix)

    @property
    def arena_bytes(self):
        return self._get(_L().qtf_context_arena_bytes)

    def reset(self):
        self._get(_L().qtf_context_reset)

    def decode(self, tokens):
        """Runs tokens (ids) through the model, appending them to the context."""
        arr = _tokens(tokens, self.model.vocab_size)
        with self._use() as h:
            _check(_L().qtf_decode(h, arr.ctypes.data_as(ctypes.POINTER(ctypes.c_int32)), len(arr)))

    @property
    def logits(self):
        """The last decoded token's logits: a float32 numpy array (a copy) of vocab_size values."""
        with self._use() as h:
            p = _L().qtf_get_logits(h)
            if not p:
                raise QtfError(_capi.ERR_INVALID_ARGUMENT, "qtf: nothing decoded yet")
            return np.ctypeslib.as_array(p, shape=(self.model.vocab_size,)).copy()

    def log_softmax(self):
        """log p(next token) for every token, in float64."""
        z = self.logits.astype(np.float64)
        z -= z.max()
        return z - math.log(np.exp(z).sum())

    def stats(self):
        """The last decoded token's statistics (a dict: pos, token, flops, qsim_flops, circuits, and per-layer
        numpy arrays entropy, hardness, rank, quantum)."""
        ts = _capi.TokenStats()
        with self._use() as h:
            _check(_L().qtf_get_token_stats(h, ctypes.byref(ts), self._layers, len(self._layers)))
        L = self._layers[:ts.n_layers]
        return {"pos": ts.pos, "token": ts.token, "flops": ts.flops, "qsim_flops": ts.qsim_flops,
                "circuits": ts.circuits,
                "entropy": np.array([x.entropy for x in L], dtype=np.float32),
                "hardness": np.array([x.hardness for x in L], dtype=np.float32),
                "rank": np.array([x.rank for x in L], dtype=np.int32),
                "quantum": np.array([x.quantum for x in L], dtype=bool)}


class Token:
    """One generated token: id, text (str; bytes in .bytes), logprob, and the statistics of the forward
    pass that predicted it (pos, flops, qsim_flops, circuits; per layer: entropy, hardness, rank, quantum)."""
    __slots__ = ("id", "bytes", "logprob", "stats", "logits")

    def __init__(self, id, data, logprob, stats, logits):
        self.id, self.bytes, self.logprob, self.stats, self.logits = id, data, logprob, stats, logits

    @property
    def text(self):
        return self.bytes.decode("utf-8", "replace")

    def __getattr__(self, name):  # tok.rank, tok.entropy, ... come from the stats
        try:
            return self.stats[name]
        except KeyError:
            raise AttributeError(name) from None

    def __repr__(self):
        return f"Token({self.id}, {self.bytes!r}, logprob={self.logprob:.3f}, ranks={list(self.stats['rank'])})"


class Report:
    """Per-token statistics of several forward passes as numpy arrays: pos, token, flops, qsim_flops,
    circuits (n,), and entropy, hardness, rank, quantum (n, n_layers)."""

    def __init__(self, stats, n_layers):
        self.n_layers = n_layers
        for k in ("pos", "token", "flops", "qsim_flops", "circuits"):
            setattr(self, k, np.array([s[k] for s in stats], dtype=np.int64))
        for k, dt in (("entropy", np.float32), ("hardness", np.float32), ("rank", np.int32), ("quantum", bool)):
            setattr(self, k, np.array([s[k] for s in stats], dtype=dt).reshape(len(stats), n_layers))

    def __len__(self):
        return len(self.pos)

    @property
    def mean_rank(self):
        return float(self.rank.mean()) if self.rank.size else 0.0

    @property
    def quantum_share(self):
        return float(self.quantum.mean()) if self.quantum.size else 0.0


class Generation:
    """An iterator of Tokens (see Model.generate). After iterating: .text, .tokens, .stop_reason ("length",
    "stop", "context_full") and .report() (numpy arrays over the generated tokens)."""

    def __init__(self, model, prompt, max_tokens, sampler, stop, want_logits, ctx, ctx_options):
        self.model = model
        self.tokens = []
        self.stop_reason = None
        max_tokens = _int("max_tokens", max_tokens, 0, 2**63 - 1)
        self._max, self._stop, self._want_logits = max_tokens, [s.encode() if isinstance(s, str) else s
                                                               for s in ([stop] if isinstance(stop, (str, bytes))
                                                                         else stop)], want_logits
        self._ctx = ctx if ctx is not None else Context(model, **ctx_options)
        self._ctx.reset()
        p = _L().qtf_sampler_default_params()
        for k, v in sampler.items():
            if k in ("top_k", "repeat_last_n"):
                v = _int(k, v, *_INT32)
            elif k == "seed":
                v = _int(k, v, *_UINT64)
            else:
                v = _float(k, v)
            setattr(p, k, v)
        h = ctypes.c_void_p()
        with model._use() as mh:  # the C sampler holds its own reference to the model from here on
            _check(_L().qtf_sampler_new(mh, ctypes.byref(p), ctypes.byref(h)))
        self._sampler = h
        ids = model.tokenize(prompt) if isinstance(prompt, (str, bytes)) else _tokens(prompt, model.vocab_size)
        if len(ids) == 0:
            raise ValueError("qtf: the prompt has no tokens in this vocabulary")
        self.prompt_tokens = len(ids)
        self._ctx.decode(ids)
        self._it = self._run()

    def __del__(self):
        if getattr(self, "_sampler", None):
            _L().qtf_sampler_free(self._sampler)
            self._sampler = None

    def __iter__(self):
        return self

    def __next__(self):
        return next(self._it)

    def _run(self):
        L, ctx, text = _L(), self._ctx, b""
        for i in range(self._max):
            if i > 0:  # the previous token goes in now: the last one is never decoded (as in `qtf run`)
                if ctx.n_past >= ctx.n_ctx:
                    self.stop_reason = "context_full"
                    return
                ctx.decode([self.tokens[-1].id])
            nxt = ctypes.c_int32()
            with ctx._use() as h:
                _check(L.qtf_sample(self._sampler, h, ctypes.byref(nxt)))
            lp = ctx.log_softmax()
            tok = Token(nxt.value, self.model.token_bytes(nxt.value), float(lp[nxt.value]), ctx.stats(),
                        ctx.logits if self._want_logits else None)
            self.tokens.append(tok)
            text += tok.bytes
            yield tok
            if any(s and text.endswith(s) for s in self._stop):
                self.stop_reason = "stop"
                return
        self.stop_reason = "length"

    def __str__(self):
        return self.text

    @property
    def text(self):
        """The generated text so far (iterates to the end first if called on an unstarted generation)."""
        if self.stop_reason is None and not self.tokens:
            for _ in self:
                pass
        return b"".join(t.bytes for t in self.tokens).decode("utf-8", "replace")

    def report(self):
        return Report([t.stats for t in self.tokens], self.model.n_layers)


class EvalResult:
    """Model.eval's result: loss (mean nats per scored token), perplexity, scored, and numpy arrays nll and
    positions (one per scored target), report (one row per forward pass)."""

    def __init__(self, nll, positions, report):
        self.nll, self.positions, self.report = nll, positions, report
        self.scored = len(nll)
        self.loss = float(nll.mean()) if len(nll) else float("nan")
        self.perplexity = math.exp(self.loss)

    def __repr__(self):
        return (f"EvalResult(loss={self.loss:.4f}, perplexity={self.perplexity:.4f}, scored={self.scored}, "
                f"mean_rank={self.report.mean_rank:.3f}, quantum_share={self.report.quantum_share:.3f})")
