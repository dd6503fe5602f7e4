# H100 call FA (issue 8), after two calls that stashed quack and FlashAttention-4 (flash-attn-4 4.0.0b27) in /tmp/qstash: FA4's
# correctness and kernels, attention's kernels alone, the #1019 and baseline steps on cuDNN and on FA4, the #1019
# profile on FA4, and the #1019 record on an FA4 stand-in for its FA3.
source scripts/device/step.sh
B="experiment=baseline data=enwiki_sp1024"
P="experiment=pr1019 data=enwiki_sp1024"
bench() { local name=$1 limit=$2; shift 2; step $name $limit python3 scripts/bench.py "$@" --json $R/$name.json; }
step pytest_gpu 420 python3 -m pytest -q -m gpu tests/test_flash4.py tests/test_models.py -k "flash4 or fa4 or attention_kernels"
step attnk 200 python3 scripts/bench_kernels.py --attention
bench b1019 480 --steps 15 --warmup 4 --variant "cudnn:$P model.attn_kernel=cudnn" --variant "fa4:$P"
step prof1019 240 python3 scripts/profile_step.py "$P" --steps 3 --warmup 3 --top 30
bench bbase 360 --steps 30 --warmup 8 --reference .bench/nb_train_gpt.py --variant "cudnn:$B model.attn_kernel=cudnn" --variant "fa4:$B"
step r1019 360 python3 scripts/vs_record.py --record .bench/r1019_train_gpt.py --record-attention fa4 --steps 40 --warmup 5 \
  --from-step 10 --seed 314 --record-env BIGRAM_VOCAB_SIZE=3072 --record-env BIGRAM_DIM=112 --data data/enwiki_sp1024 \
  --out $R/r1019 --record-timeout 330
