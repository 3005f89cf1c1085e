"""ctypes declarations of the C API (engine/capi/qtf.h) and how libqtf.so is found."""
import ctypes
import ctypes.util
import os
import sys
from ctypes import POINTER, Structure, c_char_p, c_float, c_int, c_int32, c_int64, c_size_t, c_uint32, c_uint64, c_void_p

# qtf_status codes
OK, ERR_INVALID_ARGUMENT, ERR_BAD_MODEL, ERR_IO, ERR_NO_MEMORY, ERR_CONTEXT_FULL, ERR_OUT_OF_RANGE = range(7)


class ModelInfo(Structure):
    _fields_ = [(n, c_int32) for n in ("vocab_size", "d_model", "n_layers", "n_heads", "d_ff", "context",
                                        "n_qubits", "tensorized", "quantum_attention", "adaptive_rank")] + \
               [("parameters", c_int64), ("block_parameters", c_int64)]


class ContextParams(Structure):
    _fields_ = [("n_ctx", c_int32), ("route", c_int), ("fixed_rank", c_int32), ("act_path", c_int),
                ("override_theta", c_int32), ("override_alpha", c_int32), ("theta", c_float), ("alpha", c_float)]


class LoadOptions(Structure):
    _fields_ = [("struct_size", c_uint32), ("use_mmap", c_int32), ("tokenizer_path", c_char_p), ("gguf_f32", c_int32),
                ("gguf_q4", c_int32)]


class ContextOptions(Structure):
    _fields_ = [("struct_size", c_uint32), ("n_batch", c_int32), ("pack_tt", c_int32), ("attention_samples", c_int32),
                ("override_seed", c_int32), ("attention_seed", c_uint64), ("mem_budget", c_int64),
                ("mem_copy", c_int32), ("reserved0", c_int32), ("act_quant", c_int32)]


class LayerStats(Structure):
    _fields_ = [("entropy", c_float), ("hardness", c_float), ("quantum", c_int32), ("rank", c_int32)]


class TokenStats(Structure):
    _fields_ = [("pos", c_int32), ("token", c_int32), ("n_layers", c_int32), ("flops", c_int64),
                ("qsim_flops", c_int64), ("circuits", c_int64)]


class SamplerParams(Structure):
    _fields_ = [("temperature", c_float), ("top_k", c_int32), ("top_p", c_float), ("min_p", c_float),
                ("repeat_penalty", c_float), ("repeat_last_n", c_int32), ("seed", c_uint64)]


def _candidates():
    """Where libqtf.so may be, in order: $QTF_LIBRARY, next to this package, the source tree's build/
    (when the package is used from a checkout), the installed prefixes, the linker's search path."""
    env = os.environ.get("QTF_LIBRARY")
    if env:
        yield env
        return
    here = os.path.dirname(os.path.abspath(__file__))
    yield os.path.join(here, "libqtf.so")
    repo = os.path.dirname(os.path.dirname(here))
    yield os.path.join(repo, "build", "libqtf.so")
    for prefix in (sys.prefix, os.path.expanduser("~/.local"), "/usr/local", "/usr"):
        for libdir in ("lib", "lib64", "lib/x86_64-linux-gnu", "lib/aarch64-linux-gnu"):
            yield os.path.join(prefix, libdir, "libqtf.so")
    found = ctypes.util.find_library("qtf")
    if found:
        yield found


def load_library():
    tried = []
    for path in _candidates():
        if os.path.sep in path and not os.path.exists(path):
            tried.append(path)
            continue
        try:
            lib = ctypes.CDLL(path)
        except OSError as e:
            tried.append(f"{path} ({e})")
            continue
        _declare(lib)
        return lib
    raise OSError("qtf: libqtf.so not found; build it (cmake --build build --target qtf_shared), install it "
                  "(cmake --install build), or set QTF_LIBRARY to its path. Tried: " + ", ".join(tried))


def _declare(lib):
    P = POINTER
    sigs = {
        "qtf_last_error": (c_char_p, []),
        "qtf_set_simd": (c_int, [c_char_p]),
        "qtf_simd": (c_char_p, []),
        "qtf_model_load_file": (c_int, [c_char_p, c_int, P(c_void_p)]),
        "qtf_load_default_options": (LoadOptions, []),
        "qtf_model_load_file_with": (c_int, [c_char_p, P(LoadOptions), P(c_void_p)]),
        "qtf_model_load_memory": (c_int, [c_void_p, c_size_t, P(c_void_p)]),
        "qtf_model_free": (None, [c_void_p]),
        "qtf_model_get_info": (c_int, [c_void_p, P(ModelInfo)]),
        "qtf_tokenize": (c_int, [c_void_p, c_char_p, c_size_t, P(c_int32), c_int32, P(c_int32)]),
        "qtf_token_text": (c_int, [c_void_p, c_int32, P(c_void_p), P(c_size_t)]),
        "qtf_context_default_params": (ContextParams, []),
        "qtf_context_new": (c_int, [c_void_p, P(ContextParams), P(c_void_p)]),
        "qtf_context_default_options": (ContextOptions, []),
        "qtf_context_new_with": (c_int, [c_void_p, P(ContextParams), P(ContextOptions), P(c_void_p)]),
        "qtf_context_arena_bytes": (c_size_t, [c_void_p]),
        "qtf_context_n_prefix": (c_int32, [c_void_p]),
        "qtf_model_apply_adapter_file": (c_int, [c_void_p, c_char_p, c_int]),
        "qtf_context_set_threads": (c_int, [c_void_p, c_int32]),
        "qtf_context_free": (None, [c_void_p]),
        "qtf_context_reset": (None, [c_void_p]),
        "qtf_context_n_past": (c_int32, [c_void_p]),
        "qtf_context_n_ctx": (c_int32, [c_void_p]),
        "qtf_decode": (c_int, [c_void_p, P(c_int32), c_int32]),
        "qtf_get_logits": (P(c_float), [c_void_p]),
        "qtf_get_token_stats": (c_int, [c_void_p, P(TokenStats), P(LayerStats), c_int32]),
        "qtf_sampler_default_params": (SamplerParams, []),
        "qtf_sampler_new": (c_int, [c_void_p, P(SamplerParams), P(c_void_p)]),
        "qtf_sampler_free": (None, [c_void_p]),
        "qtf_sample": (c_int, [c_void_p, c_void_p, P(c_int32)]),
    }
    for name, (res, args) in sigs.items():
        f = getattr(lib, name)
        f.restype = res
        f.argtypes = args
