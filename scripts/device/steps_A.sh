# Machine A (one H100, ~26 min): GPU tests, golf's pr1019 at 180 s with its weights saved, then on those weights
# the record's eval_val_sliding beside golf's (issue 7), the quantizer table (issue 6) and TTT (issue 7).
source scripts/device/step.sh
W=$R/b1019g/golf_pr1019/weights.safetensors
step pytest 300 python3 -m pytest -q -m gpu tests/
step g1019 900 python3 scripts/vs_record.py --budget 180 --skip-record --seed 314 --data data/enwiki_sp1024 \
  --golf "golf_pr1019:experiment=pr1019 data=enwiki_sp1024 train.save_weights=true" --out $R/b1019g --golf-timeout 880
step evalbench 600 python3 scripts/bench_eval.py --record .bench/r1019_train_gpt.py --record-env BIGRAM_VOCAB_SIZE=3072 \
  --record-env BIGRAM_DIM=112 --golf "experiment=pr1019 data=enwiki_sp1024" --weights $W
step quant 1200 python3 scripts/quant_table.py --recipe "experiment=pr1019 data=enwiki_sp1024 eval=standard" \
  --weights $W --presets gptq,int6_gptq_lite,int6,mixed --out $R/quant --timeout 300
step ttt 700 python3 scripts/quant_table.py --recipe "experiment=pr1019 data=enwiki_sp1024 eval=ttt" \
  --weights $W --presets gptq_ar --out $R/ttt --timeout 680
