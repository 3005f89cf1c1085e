#!/bin/bash
# A llama.cpp tree small enough to travel to the device machine (which has no network) for
# peer_table_device.sh: the CPU backend and the four programs the peer table runs, nothing else.
#   bench/peers/trim_llama.sh LLAMA_GIT_DIR DEST [REV]
# LLAMA_GIT_DIR: a llama.cpp clone or bare mirror (the peer tables so far: c392e5094, 2025-02-20, "0.5.0").
# DEST gets `git archive REV` without the model vocabularies, docs, tests, Python, the web UI and the GPU
# backends (13 MiB at c392e5094), and a VERSION file naming the commit (the tree has no .git).
# A mirror without the large blobs (the tool library's fetch) prints "invalid object" for models/*.gguf:
# those are left out anyway, and the archive is whole. Keep DEST in an ignored folder
# (build-peer/llama.cpp) and name it in the device call's carry.
set -euo pipefail
src=$1 dest=$2 rev=${3:-HEAD}
mkdir -p "$dest"
git -C "$src" archive "$rev" -- . ':!models' ':!docs' ':!media' ':!examples/server/public' ':!tests' ':!gguf-py' \
  ':!scripts' ':!grammars' ':!prompts' ':!.devops' ':!.github' ':!ggml/src/ggml-cuda' ':!ggml/src/ggml-sycl' \
  ':!ggml/src/ggml-vulkan' ':!ggml/src/ggml-metal' ':!ggml/src/ggml-kompute' ':!ggml/src/ggml-cann' \
  ':!ggml/src/ggml-musa' ':!ggml/src/ggml-opencl' | tar x -C "$dest"
git -C "$src" rev-parse "$rev" > "$dest/VERSION"
du -sh "$dest"
