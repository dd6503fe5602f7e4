# H100 call FO (issue 8), after the two stash calls (quack, FA4): FN's comparison on the H100 the issue names, in one
# call: the #1019 record's own script on its own FA3 (.fa3/site, no stand-in) and golf's #1019; the naive baseline's
# own GPT and optimizers (bench.py --reference) and golf's baseline.
source scripts/device/step.sh
export PYTHONPATH=$PYTHONPATH:$PWD/.fa3/site
P="experiment=pr1019 data=enwiki_sp1024 model.attn_kernel=fa3"
B="experiment=baseline data=enwiki_sp1024"
step r1019 420 python3 scripts/vs_record.py --record .bench/r1019_train_gpt.py --steps 40 --warmup 5 \
  --from-step 10 --seed 314 --record-env BIGRAM_VOCAB_SIZE=3072 --record-env BIGRAM_DIM=112 --data data/enwiki_sp1024 \
  --out $R/r1019 --record-timeout 400
step b1019 300 python3 scripts/bench.py --steps 15 --warmup 4 --variant "golf1019:$P" --json $R/b1019.json
step bbase 300 python3 scripts/bench.py --steps 30 --warmup 8 --reference .bench/nb_train_gpt.py --variant "golfbase:$B" \
  --json $R/bbase.json
