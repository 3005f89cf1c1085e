#!/usr/bin/env bash
# Device call 3 (issue 16): (c) TT-SVD + distillation at the same 1,500-step budget as (a) and (d)
# (uniform ranks, which beat the greedy allocation in call 2), classical and quantum; qtf eval; decode speed.
set -u
export PYTHONUNBUFFERED=1 OMP_NUM_THREADS=1 QTF_DATA=$PWD/.dev-deps/data/input.txt
R=$OUT/r; mkdir -p $R
TB=${TB:-430}; FE=${FE:-50}; EI=${EI:-10}; MT=${MT:-0}; PY=${PY:-python3}
TEACHER=$PWD/.dev-compress/teacher.qtf
( [ -n "${SKIP_BUILD:-}" ] || bash .dev-deps/install.sh && cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null && nice cmake --build build -j4 --target qtf ) > $R/build.log 2>&1 &
$PY -c "
t=open('$QTF_DATA').read(); n=int(len(t)*0.9); open('$OUT/val.txt','w').write(t[n:])"
cd tools/train
T0=$(date +%s)
C="--teacher $TEACHER --steps 1500 --time_budget_s $TB --batch 64 --lr 2e-3 --min_lr 1e-4 --warmup 100 --eval_every 250 --eval_iters $EI --final_eval_iters $FE --uniform"
run() { local name=$1; shift; $PY compress.py --name $name --out $R/$name "$@" > $R/$name.log 2>&1 & }
for x in 2 4 8 16; do run heal-cu-x$x --ratio $x $C; done
for x in 2 4 8; do run heal-q-x$x --ratio $x --quantum $C; done
sleep 120; nvidia-smi > $R/nvidia-smi.txt 2>&1
wait
echo "training done after $(( $(date +%s) - T0 )) s" >> $R/timeline.txt
cd ../..
ls $R/*/*.qtf | xargs -P 8 -I{} sh -c 'build/qtf eval -m {} -f '$OUT'/val.txt --max-tokens '$MT' --json > {}.eval.json 2> {}.eval.err'
for m in $R/heal-q-*/*.qtf; do build/qtf eval -m $m -f $OUT/val.txt --max-tokens $MT --json --route classical > $m.classical.json 2>/dev/null & done; wait
echo "eval done after $(( $(date +%s) - T0 )) s" >> $R/timeline.txt
i=0
for m in .dev-compress/teacher.qtf .dev-compress/dense-x8.qtf .dev-compress/dense-long-x8.qtf models/shakespeare-qtf.qtf models/shakespeare-dense.qtf $R/heal-cu-x8/heal-cu-x8.qtf $R/heal-cu-x2/heal-cu-x2.qtf $R/heal-q-x8/heal-q-x8.qtf; do
  taskset -c $((2*i)) build/qtf bench -m $m -p 64 -n 128 -r 5 -o json > $R/bench-$(basename $m .qtf).json 2>&1 & i=$((i+1))
done; wait
echo "bench done after $(( $(date +%s) - T0 )) s" >> $R/timeline.txt
cd $OUT && tar czf logs.tgz --exclude='*.qtf' --exclude='*.pt' r && tar cf models.tar r/*/*.qtf && rm -rf r val.txt
