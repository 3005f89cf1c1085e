#!/usr/bin/env bash
# Device call 2 (issue 16): (b) TT-SVD without healing and (c) TT-SVD + distillation from the dense
# teacher, classical and with quantum parts, at 2/4/8/16x block compression; then qtf eval of every model.
set -u
export PYTHONUNBUFFERED=1 OMP_NUM_THREADS=1 QTF_DATA=$PWD/.dev-deps/data/input.txt
R=$OUT/r; mkdir -p $R
TB=${TB:-330}; FE=${FE:-50}; EI=${EI:-10}; MT=${MT:-0}; PY=${PY:-python3}; STEPS=${STEPS:-1500}; BATCH=${BATCH:-64}
TEACHER=${TEACHER:-$PWD/.dev-compress/teacher.qtf}
( [ -n "${SKIP_BUILD:-}" ] || bash .dev-deps/install.sh && cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null && nice cmake --build build -j4 --target qtf ) > $R/build.log 2>&1 &
$PY -c "
t=open('$QTF_DATA').read(); n=int(len(t)*0.9); open('$OUT/val.txt','w').write(t[n:])"
cd tools/train
T0=$(date +%s)
$PY bench_train.py --preset shakespeare-qtf --batch 64 --steps 3 --profile --label profile > $R/profile.txt 2>&1
echo "profile done after $(( $(date +%s) - T0 )) s" >> $R/timeline.txt
C="--teacher $TEACHER --steps $STEPS --time_budget_s $TB --batch $BATCH --lr 2e-3 --min_lr 1e-4 --warmup 100 --eval_every 250 --eval_iters $EI --final_eval_iters $FE --also_unhealed"
run() { local name=$1; shift; $PY compress.py --name $name --out $R/$name "$@" > $R/$name.log 2>&1 & }
for x in 2 4 8 16; do run heal-c-x$x --ratio $x $C; done
for x in 2 4 8; do run heal-q-x$x --ratio $x --quantum --uniform $C; done
for x in 2 4 8 16; do run heal-cu-x$x --ratio $x --uniform $C; done
# (d) at equal wall-clock instead of equal tokens: the dense models train ~5x faster per token
for xd in 2:92 4:64 8:44 16:32; do x=${xd%:*}; d=${xd#*:}
  $PY train.py --name dense-long-x$x --out $R/dense-long-x$x --preset shakespeare-dense --set d_model=$d --set d_ff=$((4*d)) \
    --batch 64 --max_steps 100000 --time_budget_s $TB --warmup 100 --eval_every 500 --eval_iters $EI --final_eval_iters $FE > $R/dense-long-x$x.log 2>&1 &
done
sleep 90; nvidia-smi > $R/nvidia-smi.txt 2>&1
wait
echo "training done after $(( $(date +%s) - T0 )) s" >> $R/timeline.txt
cd ../..
ls $R/*/*.qtf | xargs -P 16 -I{} sh -c 'build/qtf eval -m {} -f '$OUT'/val.txt --max-tokens '$MT' --json > {}.eval.json 2> {}.eval.err'
for m in $R/heal-q-*/*.qtf; do build/qtf eval -m $m -f $OUT/val.txt --max-tokens $MT --json --route classical > $m.classical.json 2>/dev/null & done; wait
echo "eval done after $(( $(date +%s) - T0 )) s" >> $R/timeline.txt
cd $OUT && tar czf logs.tgz --exclude='*.qtf' --exclude='*.pt' r && tar cf models.tar $(ls r/*/*.qtf | grep -v -- '-svd.qtf') && tar cf svd.tar r/*/*-svd.qtf && rm -rf r val.txt
