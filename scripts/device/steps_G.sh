# One H100 (~10 min): issue 5's numerics at equal steps, like for like: the #1019 record's own script and golf
# for 150 steps from seed 314, golf's late QAT off (the record's is folded away by torch.compile), every step logged.
source scripts/device/step.sh
R1019="model=xsa_all optimizer=parallel_muon schedule=warmdown_3500 schedule.warmdown_iters=100 train.ema.decay=0.997 \
  train.swa.every=50 train.export=ema train.qat.mode=none data=enwiki_sp1024 train.max_micro_batch_tokens=98304 train.save_weights=true"
step pair150 560 python3 scripts/vs_record.py --record .bench/r1019_train_gpt.py --steps 150 --warmup 5 --from-step 25 \
  --seed 314 --record-env BIGRAM_VOCAB_SIZE=3072 --record-env BIGRAM_DIM=112 --record-env WARMDOWN_ITERS=100 \
  --golf "golf:$R1019" --out $R/pair150 --record-timeout 280 --golf-timeout 280
# A second list, written while this one runs (a later poll call carries it over), runs on its weights.
[ -f scripts/device/steps_G2.sh ] && source scripts/device/steps_G2.sh
