# Next session, one H100 (~27 min): GPU tests (graph decoding included); issue 5's equal-step re-measure after
# the Muon fix; a #1019-recipe model whose warmdown fits 180 s (150 steps x 0.69 s, so late QAT starts late
# as in the record's 600 s run) with its weights saved, timing the graph-decoded AR calibration; on it the
# quantizer table (issue 6) and the sliding comparison (issue 7).
source scripts/device/step.sh
W=$R/q180/golf_q180/weights.safetensors
step pytest 300 python3 -m pytest -q -m gpu tests/
R1019="model=xsa_all optimizer=parallel_muon schedule=warmdown_3500 schedule.warmdown_iters=100 train.ema.decay=0.997 \
  train.swa.every=50 train.export=ema train.qat.mode=ste data=enwiki_sp1024 train.max_micro_batch_tokens=98304"
step muon 420 python3 scripts/vs_record.py --skip-record --steps 150 --warmup 5 --from-step 25 --seed 314 \
  --golf "golf:$R1019" --out $R/muon --golf-timeout 400
step q180 900 python3 scripts/vs_record.py --budget 180 --skip-record --seed 314 --data data/enwiki_sp1024 \
  --golf "golf_q180:experiment=pr1019 data=enwiki_sp1024 schedule.warmdown_iters=150 train.save_weights=true" \
  --out $R/q180 --golf-timeout 880
step quant 1200 python3 scripts/quant_table.py --recipe "experiment=pr1019 data=enwiki_sp1024 eval=standard" \
  --weights $W --presets gptq,int6_gptq_lite,int6,mixed --out $R/quant --timeout 300
step evalbench 600 python3 scripts/bench_eval.py --record .bench/r1019_train_gpt.py --record-env BIGRAM_VOCAB_SIZE=3072 \
  --record-env BIGRAM_DIM=112 --golf "experiment=pr1019 data=enwiki_sp1024" --weights $W
