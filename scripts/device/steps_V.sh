# Issues 7 and 8, last call of the session: the q/k kernel with contiguous loads only (no partner-channel
# gathers) beside machine U's version (.bench/qk_norm_rope_triton_u.py, ops renamed) in the same sweep; the
# #1019 step; the sliding comparison at 128 windows per batch beside the record; the baseline beside the
# record's own code; the #1019 profile.
source scripts/device/step.sh
P="experiment=pr1019 data=enwiki_sp1024"
B="experiment=baseline data=enwiki_sp1024"
bench() { local name=$1 limit=$2; shift 2; step $name $limit python3 scripts/bench.py "$@" --json $R/$name.json; }
step pytest_gpu 200 python3 -m pytest -q -m gpu tests/test_kernels.py
step kernels 120 python3 scripts/bench_kernels.py --tiles 2048,4096 --warps 4,8 --compare-qk .bench/qk_norm_rope_triton_u.py
bench b1019 200 --steps 15 --warmup 4 --variant "default:$P"
step evalbench 400 python3 scripts/bench_eval.py --record .bench/r1019_train_gpt.py --record-env BIGRAM_VOCAB_SIZE=3072 \
  --record-env BIGRAM_DIM=112 --golf "$P" --golf-batch-windows 128 --no-records-windows-row
bench bbase_ref 200 --steps 30 --warmup 8 --reference .bench/nb_train_gpt.py --variant "default:$B"
step prof1019 100 python3 scripts/profile_step.py "$P" --steps 3 --warmup 3 --top 30
