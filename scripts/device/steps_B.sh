# Machine B (one H100, ~25 min): the #1089 record to its exit
# and golf's pr1089 beside it (issue 9).
source scripts/device/step.sh
step r1089 720 python3 scripts/vs_record.py --budget 180 --record .bench/r1089_train_gpt.py --record-label record_1089 \
  --seed 1337 --data data/enwiki_sp1024 --out $R/b1089r --record-timeout 700
step g1089 800 python3 scripts/vs_record.py --budget 180 --skip-record --seed 1337 --data data/enwiki_sp1024 \
  --golf "golf_pr1089:experiment=pr1089 data=enwiki_sp1024" --out $R/b1089g --golf-timeout 780
