#!/usr/bin/env bash
# (as run; the dense-s-xN outputs are kept in models/logs/scale as dense-long-s-xN: dense of equal block size, trained over a wall-clock budget)
# Device call (issue 16, round 2), one H100 shared by every run:
#  reference scale (teacher = models/shakespeare-dense.qtf): a dense model of the seed model's size
#   (d=52 L=3, ~116k params, the issue reporter's recipe) with and without dropout, trained 270 s; the
#   control "distillation without TT": dense students (d=52, d=92) from random init, the same healing as tt8/tt2;
#  scale: a d=256 L=4 dense teacher (150 s), then TT-SVD + distillation at 2x, 8x and rank 8 (120 s each),
#   against dense models of equal block size (d=184, d=88) trained from scratch over the same wall clock;
#  then qtf eval (engine) and qtf bench (one core, sequential) of every model.
set -u
export PYTHONUNBUFFERED=1 OMP_NUM_THREADS=1 QTF_DATA=$PWD/.dev-deps/input.txt
ROOT=$PWD; R=$ROOT/.dev-frontier/out; PY=${PY:-python3}
rm -rf $R; mkdir -p $R
# everything comes back as one archive (models over 2.2 MB left out), also when the run is cut short
pack() { cd $R && tar czf $OUT/results.tgz --exclude='*.pt' $(find . -name '*.qtf' -size +2200k | sed 's/^/--exclude=/') . ; }
trap pack EXIT; trap "exit 1" TERM INT
TR=$ROOT/.dev-frontier/train            # this branch's tools/train
VAL=$ROOT/.dev-frontier/val.txt
TEACHER=$ROOT/models/shakespeare-dense.qtf
TBT=${TBT:-150}; TBH=${TBH:-120}; TBD=${TBD:-290}; TBE=${TBE:-270}; TBC=${TBC:-150}; ST=${ST:-20000}
T0=$(date +%s); tl() { echo "$(( $(date +%s) - T0 )) s: $*" >> $R/timeline.txt; }
nvidia-smi --query-gpu=name,memory.total --format=csv > $R/machine.txt 2>&1; lscpu | grep 'Model name' >> $R/machine.txt
$PY -c "import torch; print('torch', torch.__version__)" >> $R/machine.txt 2>&1
( bash .dev-deps/install.sh && cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null && nice cmake --build build -j6 --target qtf && touch $R/build.ok ) > $R/build.log 2>&1 &
$PY -c "t=open('$QTF_DATA').read(); n=int(len(t)*0.9); open('$VAL','w').write(t[n:])"
cd $TR
C="--batch 64 --warmup 100 --eval_every 250 --eval_iters 10 --final_eval_iters 50"
train() { local name=$1; shift; $PY train.py --name $name --out $R/$name $C "$@" > $R/$name.log 2>&1; rm -f $R/$name/ckpt.pt; tl "$name done"; }
heal() { local name=$1; shift; $PY compress.py --name $name --out $R/$name $C "$@" > $R/$name.log 2>&1; tl "$name done"; }
ev() { # model name, max tokens, threads: the engine's loss on the validation split
  until [ -e $R/build.ok ]; do sleep 2; done
  local m=$R/$1/$1.qtf
  $ROOT/build/qtf eval -m $m -f $VAL --max-tokens $2 -t $3 --json > $R/$1.eval.json 2> $R/$1.eval.err; tl "$1 eval done"; }
DS="--preset shakespeare-dense --max_steps 1000000"
S="--set n_layers=4 --set n_heads=8"
# phase A: everything that does not need the scale teacher
( train teacher-s $DS $S --set d_model=256 --set d_ff=1024 --set dropout=0.1 --lr 1.5e-3 --time_budget_s $TBT; ev teacher-s $ST 4 ) &
( train dense-s-x2 $DS $S --set d_model=184 --set d_ff=736 --lr 1.5e-3 --time_budget_s $TBD; ev dense-s-x2 $ST 2 ) &
( train dense-s-x8 $DS $S --set d_model=88 --set d_ff=352 --lr 1.5e-3 --time_budget_s $TBD; ev dense-s-x8 $ST 2 ) &
( train dense-long-x6 $DS --set d_model=52 --set d_ff=208 --time_budget_s $TBE; ev dense-long-x6 0 1 ) &
( train dense-long-do-x6 $DS --set d_model=52 --set d_ff=208 --set dropout=0.1 --time_budget_s $TBE; ev dense-long-do-x6 0 1 ) &
H="--teacher $TEACHER --steps 1500 --time_budget_s $TBC --lr 2e-3 --min_lr 1e-4"
( heal distill-dense-x6 --dense_student 52 $H; ev distill-dense-x6 0 1 ) &
( heal distill-dense-x2 --dense_student 92 $H; ev distill-dense-x2 0 1 ) &
sleep 90; nvidia-smi > $R/nvidia-smi-a.txt 2>&1
until [ -e $R/teacher-s/teacher-s.qtf ]; do sleep 2; if [ $(( $(date +%s) - T0 )) -gt 300 ]; then tl "no teacher-s"; break; fi; done
# phase B: the scale teacher's TT-SVD + distillation
HS="--teacher $R/teacher-s/teacher-s.qtf --steps 100000 --time_budget_s $TBH --lr 1e-3 --min_lr 5e-5"
for a in "x2 --ratio 2" "x8 --ratio 8" "r8 --rank 8"; do set -- $a; n=$1; shift
  ( heal heal-s-$n $HS "$@" --also_unhealed; ev heal-s-$n $ST 4 ) &
done
sleep 60; nvidia-smi > $R/nvidia-smi-b.txt 2>&1
wait
tl "all trained and evaluated"
cd $ROOT
for m in models/shakespeare-dense.qtf models/shakespeare-tt2.qtf models/shakespeare-tt8.qtf models/shakespeare-qtf.qtf \
         $R/dense-long-x6/dense-long-x6.qtf $R/dense-long-do-x6/dense-long-do-x6.qtf $R/distill-dense-x6/distill-dense-x6.qtf \
         $R/distill-dense-x2/distill-dense-x2.qtf $R/teacher-s/teacher-s.qtf $R/dense-s-x2/dense-s-x2.qtf \
         $R/dense-s-x8/dense-s-x8.qtf $R/heal-s-x8/heal-s-x8.qtf $R/heal-s-r8/heal-s-r8.qtf $R/heal-s-x2/heal-s-x2.qtf; do
  [ -e $m ] && taskset -c 15 build/qtf bench -m $m -p 64 -n 128 -r 3 -o json > $R/bench-$(basename $m .qtf).json 2>&1
done
tl "bench done"
