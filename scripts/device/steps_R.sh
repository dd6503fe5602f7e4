# Next H100 call: both kernels' tile/warp sweep (XSA's backward ran at about 1.3 TB/s on machine Q and was never
# swept), then the #1019 step and the sliding comparison at the defaults, to re-measure after re-tuning.
source scripts/device/step.sh
P="experiment=pr1019 data=enwiki_sp1024"
step kernels 200 python3 scripts/bench_kernels.py --tiles 1024,2048,4096,8192 --warps 2,4,8,16
step b1019 200 python3 scripts/bench.py --steps 15 --warmup 4 --variant "kernels:$P" --json $R/b1019.json
step evalbench 480 python3 scripts/bench_eval.py --record .bench/r1019_train_gpt.py --record-env BIGRAM_VOCAB_SIZE=3072 \
  --record-env BIGRAM_DIM=112 --golf "$P" --golf-batch-windows 64 --no-records-windows-row --profile 4
