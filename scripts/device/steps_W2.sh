# Issue 5 on nvidia-h200-x2: golf's #1019 recipe (Parallel Muon) on 1 and on 2 GPUs of one host, same seed and
# global batch, at a constant LR (warmdown off: the bench trap of near-zero LR): the first losses side by side
# and the median step; then the record's own script on 2 GPUs, same steps, for its step time.
# usage: bash scripts/device/launch.sh W2 (kind nvidia-h200-x2)
source scripts/device/step.sh
nvidia-smi topo -m > $R/topo.txt 2>&1
G="experiment=pr1019 data=enwiki_sp1024 schedule.warmdown_iters=0 eval=standard quant=int8 calibration=none compressor=zlib"
step world 900 python3 scripts/vs_record.py --skip-record --steps 40 --from-step 10 --seed 314 --data data/enwiki_sp1024 \
  --losses-against w1 --loss-steps 10 --out $R/world --golf-timeout 420 \
  --golf "w1:$G launcher=torchrun launcher.nproc_per_node=1" --golf "w2:$G launcher=torchrun launcher.nproc_per_node=2"
step record2 500 python3 scripts/vs_record.py --record .bench/r1019_train_gpt.py --nproc 2 --steps 40 --from-step 10 \
  --seed 314 --record-env BIGRAM_VOCAB_SIZE=3072 --record-env BIGRAM_DIM=112 --record-env WARMDOWN_ITERS=0 \
  --record-label record_w2 --record-timeout 420 --out $R/record2 --merge $R/world/vs_record.json --losses-against w2
