# Run on machine A after steps_A (same lease): the #1019 record at 180 s to its post-EMA score (issue 9).
source scripts/device/step.sh
step r1019 600 python3 scripts/vs_record.py --budget 180 --record .bench/r1019_train_gpt.py --record-label record_1019 \
  --record-until diag --record-env BIGRAM_VOCAB_SIZE=3072 --record-env BIGRAM_DIM=112 \
  --record-env WARMDOWN_ITERS=4000 --seed 314 --data data/enwiki_sp1024 --out $R/b1019r --record-timeout 580
