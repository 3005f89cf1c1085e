#!/usr/bin/env python3
"""llama2.c checkpoint -> .qtf (docs/llama.md).

    python3 tools/convert/llama2c.py stories260K.bin stories260K.qtf [--dtype f16]

Reads a karpathy/llama2.c checkpoint (version 0 "legacy" or version 1 "ak42", fp32), checks its header
and that the file size is exactly what the header needs, and writes a .qtf with the Llama block options
(rmsnorm, rotary, swiglu, n_kv_heads, no biases, shared or separate classifier). Anything else (Q8_0
version 2, a truncated or padded file, a header that is not a llama2.c header) is refused with a message.
The .qtf carries a stand-in tokenizer (token id i <-> the character U+0100+i), not the model's own; `qtf convert
CKPT OUT.qtf --tokenizer tokenizer.bin` (C++, engine/import) also imports llama2.c's tokenizer. Needs numpy only.
"""
import argparse
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "train"))

import numpy as np  # noqa: E402

from llama2c_checkpoint import CheckpointError, convert_llama2c_file  # noqa: E402  (numpy only, no torch)
from qtf_format import QtfError, read_qtf, write_qtf  # noqa: E402


def stored(name, a, np_dtype):
    """a as np_dtype; CheckpointError naming the tensor for a NaN/Inf, or a value the type cannot hold."""
    for values, what in ((a, "non-finite values (NaN/Inf)"), (a.astype(np_dtype), "values beyond f16 (|x| > 65504)")):
        bad = np.flatnonzero(~np.isfinite(values))
        if bad.size:
            raise CheckpointError("tensor '%s' has %d %s, the first %r at index %d"
                                  % (name, bad.size, what, float(a.flat[bad[0]]), bad[0]))
    return a.astype(np_dtype)


def convert(src, dst, dtype="f32"):
    # The size is checked against the header before the weights are read (a 2 GiB file that is not a
    # checkpoint is refused without reading it).
    meta, tensors, header = convert_llama2c_file(src, {"source_file": os.path.basename(src)})
    np_dtype = {"f32": np.float32, "f16": np.float16}[dtype]
    out = write_qtf(dst, meta, [(n, stored(n, a, np_dtype)) for n, a in tensors])
    read_qtf(dst)  # verify what was written
    return header, len(out)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("checkpoint")
    ap.add_argument("out")
    ap.add_argument("--dtype", choices=["f32", "f16"], default="f32")
    args = ap.parse_args(argv)
    try:
        h, n = convert(args.checkpoint, args.out, args.dtype)
    except (CheckpointError, QtfError, OSError) as e:
        print("llama2c.py: %s: %s" % (args.checkpoint, e), file=sys.stderr)
        return 1
    print("%s: llama2.c v%d, dim %d, hidden %d, %d layers, %d heads (%d kv), vocab %d, context %d, %s classifier"
          % (args.checkpoint, h["version"], h["dim"], h["hidden_dim"], h["n_layers"], h["n_heads"], h["n_kv_heads"],
             h["vocab_size"], h["seq_len"], "shared" if h["shared"] else "separate"))
    print("wrote %s (%d bytes)" % (args.out, n))
    return 0


if __name__ == "__main__":
    sys.exit(main())
