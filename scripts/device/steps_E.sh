# Issue 8's "before" (one H100, ~15 min): step time beside the records' own code in the same call, and where
# each step's GPU time goes, for the naive baseline, the #1019 stack and the #1089 stack.
source scripts/device/step.sh
B="experiment=baseline data=enwiki_sp1024"
step bench_base 420 python3 scripts/bench.py --steps 40 --warmup 20 --reference .bench/nb_train_gpt.py \
  --variant "golf:$B" --variant "golf_cudnn:$B model.attn_kernel=cudnn" --json $R/bench_base.json
step prof_base 300 python3 scripts/profile_step.py "$B" --steps 5 --warmup 3 --top 30 --record .bench/nb_train_gpt.py
step prof_1019 400 python3 scripts/profile_step.py "experiment=pr1019 data=enwiki_sp1024" --steps 3 --warmup 3 --top 30 \
  --record .bench/r1019_train_gpt.py --record-env BIGRAM_VOCAB_SIZE=3072 --record-env BIGRAM_DIM=112
step steps_1089 600 python3 scripts/vs_record.py --record .bench/r1089_train_gpt.py --record-label record_1089 \
  --steps 60 --warmup 20 --from-step 20 --seed 1337 --data data/enwiki_sp1024 \
  --golf "golf_pr1089:experiment=pr1089 data=enwiki_sp1024" --out $R/v1089 --record-timeout 280 --golf-timeout 280
