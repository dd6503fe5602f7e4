# Issues 7 and 8 after the q/k kernel stopped being analysed as writing its inputs (no more copies of x, cos and
# sin before each call): the GPU tests, the #1019 step and its profile, the baseline beside the record's own code,
# the sliding comparison at 64 and 128 windows per batch (golf, each in its own process) beside the record.
source scripts/device/step.sh
P="experiment=pr1019 data=enwiki_sp1024"
B="experiment=baseline data=enwiki_sp1024"
bench() { local name=$1 limit=$2; shift 2; step $name $limit python3 scripts/bench.py "$@" --json $R/$name.json; }
step pytest_gpu 240 python3 -m pytest -q -m gpu tests/test_kernels.py
bench b1019 200 --steps 15 --warmup 4 --variant "default:$P"
bench bbase_ref 200 --steps 30 --warmup 8 --reference .bench/nb_train_gpt.py --variant "default:$B"
step prof1019 150 python3 scripts/profile_step.py "$P" --steps 3 --warmup 3 --top 30
step evalbench 560 python3 scripts/bench_eval.py --record .bench/r1019_train_gpt.py --record-env BIGRAM_VOCAB_SIZE=3072 \
  --record-env BIGRAM_DIM=112 --golf "$P" --golf-batch-windows 128 --no-records-windows-row --profile 4
step evalbench64 200 python3 scripts/bench_eval.py \
  --golf "$P" --golf-batch-windows 64 --no-records-windows-row
