# Issue 10 on nvidia-h200-x8 (N=8) or, stated as not the challenge's setting, nvidia-h200-x2 (N=2): golf's #1019
# recipe at a 600 s cap under torchrun beside the record's own script on the same machine, data and seed, then
# the other seeds while time lasts. About 13 min per golf seed and 15 for the record (its AR calibration
# recomputes prefixes: 197 s on 8 GPUs). usage: N=8 SEEDS="314 42 999" bash scripts/device/launch.sh X8
source scripts/device/step.sh
N=${N:-8}
GOLF="experiment=pr1019 data=enwiki_sp1024 launcher=torchrun launcher.nproc_per_node=$N"
first=1
for SEED in ${SEEDS:-314 42 999}; do
  if [ $first = 1 ]; then
    step s$SEED 2000 python3 scripts/vs_record.py --budget 600 --record .bench/r1019_train_gpt.py --nproc $N \
      --record-env BIGRAM_VOCAB_SIZE=3072 --record-env BIGRAM_DIM=112 --seed $SEED --data data/enwiki_sp1024 \
      --golf "golf_s$SEED:$GOLF" --out $R/s$SEED --record-timeout 1000 --golf-timeout 950
    first=0
  else
    step s$SEED 1000 python3 scripts/vs_record.py --budget 600 --skip-record --seed $SEED --data data/enwiki_sp1024 \
      --golf "golf_s$SEED:$GOLF" --out $R/s$SEED --golf-timeout 950
  fi
done
