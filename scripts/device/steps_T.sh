# Issues 7 and 8: the baseline with inductor's mix-order reductions off (machine S's profile: one such kernel,
# 13.3 ms per micro-batch) beside the default and the record's own code; #1019 with XSA at 2048/8, its profile
# with the slowest kernels' sources (the layout copies); the sliding comparison at 128 windows per batch, with
# and without CUDA graphs; the baseline's profile with mix-order reductions off.
source scripts/device/step.sh
P="experiment=pr1019 data=enwiki_sp1024"
B="experiment=baseline data=enwiki_sp1024"
NOMIX="train.inductor={triton:{mix_order_reduction:false}}"
bench() { local name=$1 limit=$2; shift 2; step $name $limit python3 scripts/bench.py "$@" --json $R/$name.json; }
step pytest_gpu 200 python3 -m pytest -q -m gpu tests/test_kernels.py -k "fp32 or bf16"
bench bbase 150 --steps 30 --warmup 8 --variant "default:$B"
bench bbase_nomix 150 --steps 30 --warmup 8 --variant "nomix:$B $NOMIX"
bench bbase_ref 150 --steps 30 --warmup 8 --reference .bench/nb_train_gpt.py --variant "nomix:$B $NOMIX"
bench b1019 200 --steps 15 --warmup 4 --variant "default:$P"
step prof1019 150 python3 scripts/profile_step.py "$P" --steps 3 --warmup 3 --top 30 --dump-kernels $R/k1019
step profbase 150 python3 scripts/profile_step.py "$B $NOMIX" --steps 3 --warmup 3 --top 30
step evalbench 560 python3 scripts/bench_eval.py --record .bench/r1019_train_gpt.py --record-env BIGRAM_VOCAB_SIZE=3072 \
  --record-env BIGRAM_DIM=112 --golf "$P" --golf-batch-windows 128 --compile-modes default,reduce-overhead \
  --no-records-windows-row --profile 4
