#!/bin/bash
# Issue 27's goal point: stories260K and TinyStories-656K compressed to half their q8 file's bytes by
# budget.py's quantisation family (q8/q4/q3 per matrix, docs/llama.md "Compression of a model nobody here
# trained"), healed HEAL seconds on DEVICE, scored on held-out stories 301-500 by the engine.
#   tools/train/budget_half_q8.sh OUT_DIR [DEVICE (cpu|cuda, default cuda)] [HEAL_SECONDS (default 600)]
# Builds build/qtf and build/libqtf.so first when missing. Results: OUT_DIR/*/results.json, OUT_DIR/frontier.md.
# Knobs (environment): ROUNDING=rtn|imatrix|gptq|best (default: budget_frontier.py's) picks the q4/q3 rounding;
# LEARN_SCALES=1 trains the block scales in healing; HEAL_LR, HEAL_BATCH, SAMPLES set healing's peak rate,
# windows per step and samples of the original; HEAL_CE adds real text's cross-entropy to the KL (--heal-ce); REFINE=N tries N swaps by the mix's joint KL (--refine); MODELS="stories260k tinystories656k" (default both) picks
# the models; SENS=1 reads the committed sensitivities (models/logs/budget-gptq/sens-*.json) instead of
# measuring them again; KINDS=f32,f16,q8,q4,q3,q3a (budget.py --kinds) limits the types a matrix may get.
set -euo pipefail
out=$1 device=${2:-cuda} heal=${3:-600}
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
if [ ! -x build/qtf ] || [ ! -f build/libqtf.so ]; then
  cmake -S . -B build -DCMAKE_BUILD_TYPE=Release -DQTF_BUILD_TOOLS=ON -DQTF_BUILD_SHARED=ON > /dev/null
  cmake --build build -j"$(nproc)" --target qtf qtf_shared > /dev/null
fi
text=${TEXT:-$root/../shared/data/real/tinystories-valid-1-500.txt}  # TEXT=PATH where the shared data lie elsewhere
py=${PYTHON:-python3}
extra=(${ROUNDING:+--rounding "$ROUNDING"} ${LEARN_SCALES:+--learn-scales} ${HEAL_LR:+--heal-lr "$HEAL_LR"}
       ${HEAL_BATCH:+--heal-batch "$HEAL_BATCH"} ${SAMPLES:+--samples "$SAMPLES"} ${KINDS:+--kinds "$KINDS"}
       ${HEAL_CE:+--heal-ce "$HEAL_CE"} ${REFINE:+--refine "$REFINE"})
for name in ${MODELS:-stories260k tinystories656k}; do
  case $name in
    stories260k) model=models/stories260k.qtf budget=146304 ;;
    tinystories656k) model=models/tinystories-656k.qtf budget=371904 ;;
    *) echo "budget_half_q8.sh: MODELS: unknown model '$name' (stories260k, tinystories656k)" >&2; exit 2 ;;
  esac
  sens=()
  [ -n "${SENS:-}" ] && sens=(--sens-cache "models/logs/budget-gptq/sens-$name.json")
  "$py" tools/train/budget_frontier.py run --model "$model" --name "$name" --dir "$out" --text "$text" \
    --budgets "$budget" --families quant --heal-seconds "$heal" --calib-windows 6 --device "$device" "${extra[@]}" "${sens[@]}"
done
"$py" tools/train/budget_frontier.py report --dir "$out" --md "$out/frontier.md"
cat "$out/frontier.md"
