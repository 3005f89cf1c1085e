#!/usr/bin/env bash
# Device call 1 (issue 16): trainer speed before/after; dense teacher; (a) TT from scratch and (d) dense
# of equal block size, all at once on the GPU; then qtf eval (engine) of every model on the whole val split.
set -u
export PYTHONUNBUFFERED=1 OMP_NUM_THREADS=1 QTF_DATA=$PWD/.dev-deps/data/input.txt
R=$OUT/r; mkdir -p $R
TB=${TB:-330}; FE=${FE:-50}; EI=${EI:-10}; MT=${MT:-0}; BS=${BS:-8}; PY=${PY:-python3}
nvidia-smi --query-gpu=name,memory.total --format=csv > $R/gpu.txt 2>&1
( [ -n "${SKIP_BUILD:-}" ] || bash .dev-deps/install.sh && cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null && nice cmake --build build -j4 --target qtf ) > $R/build.log 2>&1 &
BUILD=$!
$PY -c "
t=open('$QTF_DATA').read(); n=int(len(t)*0.9); open('$R/../val.txt','w').write(t[n:])"
cd tools/train
T0=$(date +%s)
# 1. training speed, each alone on the GPU, same batch and config
for preset in shakespeare-qtf; do
  $PY bench_train.py --preset $preset --batch 64 --steps $BS --model_py ../../.dev-compress/model_before.py --label before
  $PY bench_train.py --preset $preset --batch 64 --steps $BS --label after
done > $R/speed.jsonl 2> $R/speed.err
$PY bench_train.py --preset shakespeare-dense --batch 64 --steps $BS --label after-dense >> $R/speed.jsonl 2>> $R/speed.err
echo "speed done after $(( $(date +%s) - T0 )) s" >> $R/timeline.txt
C="--batch 64 --max_steps 1500 --time_budget_s $TB --warmup 100 --eval_every 250 --eval_iters $EI --final_eval_iters $FE --router_penalty 1.0"
run() { local name=$1; shift; $PY train.py --name $name --out $R/$name "$@" > $R/$name.log 2>&1 & }
run teacher --preset shakespeare-dense --set dropout=0.1 --batch 64 --max_steps 100000 --time_budget_s $TB --warmup 100 --eval_every 250 --eval_iters $EI --final_eval_iters $FE
for xr in 2:29 4:18 8:12 16:7; do x=${xr%:*}; r=${xr#*:}
  run scratch-c-x$x --preset shakespeare-qtf --set tt_rank=$r --set r_max=$r --set n_qubits=0 --set adaptive_rank=0 --set quantum_attention=0 --set activation=gelu $C
done
for xr in 2:27 4:15 8:8; do x=${xr%:*}; r=${xr#*:}
  run scratch-q-x$x --preset shakespeare-qtf --set tt_rank=$r --set r_max=$r $C
done
for xd in 2:92 4:64 8:44 16:32; do x=${xd%:*}; d=${xd#*:}
  run dense-x$x --preset shakespeare-dense --set d_model=$d --set d_ff=$((4*d)) $C
done
sleep 60; nvidia-smi > $R/nvidia-smi.txt 2>&1
wait
echo "training done after $(( $(date +%s) - T0 )) s" >> $R/timeline.txt
cd ../..
ls $R/*/*.qtf | xargs -P 14 -I{} sh -c 'build/qtf eval -m {} -f '$OUT'/val.txt --max-tokens '$MT' --json > {}.eval.json 2> {}.eval.err'
echo "eval done after $(( $(date +%s) - T0 )) s" >> $R/timeline.txt
cd $OUT && tar czf logs.tgz --exclude='*.qtf' --exclude='*.pt' r && tar cf models.tar r/*/*.qtf && rm -rf r val.txt
