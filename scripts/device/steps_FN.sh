# H100 call FN (issue 8), after the two stash calls (quack, FA4): golf at 379cc35 beside the records' own scripts in one
# call: #1019 on its own kernel (FlashAttention-3 from .fa3/site, so no stand-in) and the naive baseline; golf's #1019
# at 4 micro-steps; the baseline's 180 s run and the #1019 pipeline at 60 s with wide K/V.
source scripts/device/step.sh
export PYTHONPATH=$PYTHONPATH:$PWD/.fa3/site
P="experiment=pr1019 data=enwiki_sp1024 model.attn_kernel=fa3"
B="experiment=baseline data=enwiki_sp1024"
step r1019 420 python3 scripts/vs_record.py --record .bench/r1019_train_gpt.py --steps 40 --warmup 5 \
  --from-step 10 --seed 314 --record-env BIGRAM_VOCAB_SIZE=3072 --record-env BIGRAM_DIM=112 --data data/enwiki_sp1024 \
  --out $R/r1019 --record-timeout 400
step b1019 300 python3 scripts/bench.py --steps 15 --warmup 4 --variant "golf1019:$P" \
  --variant "golf1019mb196k:$P train.max_micro_batch_tokens=196608" --json $R/b1019.json
step bbase 300 python3 scripts/bench.py --steps 30 --warmup 8 --reference .bench/nb_train_gpt.py --variant "golfbase:$B" \
  --json $R/bbase.json
step base180 420 python3 scripts/vs_record.py --budget 180 --skip-record --seed 1337 --data data/enwiki_sp1024 \
  --golf "base180:experiment=baseline data=enwiki_sp1024 schedule.warmdown_iters=250" --out $R/base180
step p60 420 python3 scripts/vs_record.py --budget 60 --skip-record --seed 314 --data data/enwiki_sp1024 \
  --golf "p60:experiment=pr1019 data=enwiki_sp1024 model.attn_kernel=fa3" --out $R/p60 --golf-timeout 400
