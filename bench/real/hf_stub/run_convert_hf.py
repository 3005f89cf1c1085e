"""Runs llama.cpp's convert_hf_to_gguf.py (path in argv[1], its arguments after) on an older torch:
Debian 12's torch 1.13 lacks the float8 dtypes that the converter names in a table (they are only looked
up for float8 checkpoints), so stand-ins are set before it is imported. With this folder first on
PYTHONPATH, `transformers` is the stand-in beside this file.
    PYTHONPATH=bench/real/hf_stub:LLAMA_CPP/gguf-py python3 bench/real/hf_stub/run_convert_hf.py \
        LLAMA_CPP/convert_hf_to_gguf.py HF_DIR --outtype f32 --outfile OUT.gguf
"""
import runpy
import sys

import torch

for name in ("float8_e4m3fn", "float8_e5m2"):
    if not hasattr(torch, name):
        setattr(torch, name, "missing:" + name)  # a key no real tensor has

script = sys.argv[1]
sys.argv = sys.argv[1:]
sys.path.insert(0, script.rsplit("/", 1)[0] if "/" in script else ".")
runpy.run_path(script, run_name="__main__")
