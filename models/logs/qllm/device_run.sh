#!/usr/bin/env bash
# Device call for issue 14: two byte-level QLLM models trained side by side on the one GPU.
set -u
cd "$(dirname "$0")/train"
nvidia-smi --query-gpu=name,memory.used --format=csv > "$OUT/gpu.txt" 2>&1
python3 -c "import torch; print(torch.__version__, torch.cuda.get_device_name(0))" > "$OUT/torch.txt" 2>&1
B=${BUDGET:-290}
python3 qllm_train.py --preset qllm-646k --out "$OUT/qllm646" --time_budget_s $B --keep-lora --data ../../.dev-deps/input.txt > "$OUT/qllm646.log" 2>&1 &
p1=$!
python3 qllm_train.py --preset qllm-113k --out "$OUT/qllm113" --time_budget_s $B --keep-lora --data ../../.dev-deps/input.txt > "$OUT/qllm113.log" 2>&1 &
p2=$!
wait $p1; echo "646k rc=$?"
wait $p2; echo "113k rc=$?"
tail -3 "$OUT/qllm646.log" "$OUT/qllm113.log"
