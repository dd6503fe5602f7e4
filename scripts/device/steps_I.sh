# Third session, one H100 (~29 min held): issue 6's table on one fresh #1019-recipe model, every int6 preset
# with its grid floor fitted to the byte budget (quant.fit_scale_floor=true), mixed as #1089 fits it, and the
# q180 pipeline itself as the records' floor leaves it; AR decoding with fp32-output bmm scores (in both);
# then issue 7's sliding comparison with a max-autotune row and a profile of golf's batches; last, issue 8's
# #1019 step under max-autotune GEMM templates if the machine is still held.
source scripts/device/step.sh
W=$R/q180/golf_q180/weights.safetensors
P="experiment=pr1019 data=enwiki_sp1024"
F="quant.fit_scale_floor=true"
step pytest 240 python3 -m pytest -q -m gpu tests/
step q180 600 python3 scripts/vs_record.py --budget 180 --skip-record --seed 314 --data data/enwiki_sp1024 \
  --golf "golf_q180:$P eval=standard schedule.warmdown_iters=150 train.save_weights=true" --out $R/q180 --golf-timeout 580
step quant 1000 python3 scripts/quant_table.py --recipe "$P eval=standard" --weights $W --timeout 400 --out $R/quant \
  --presets "gptq_ar:$F,gptq:$F,int6_gptq_lite:$F,int6:$F,mixed"
step evalbench 700 python3 scripts/bench_eval.py --record .bench/r1019_train_gpt.py --record-env BIGRAM_VOCAB_SIZE=3072 \
  --record-env BIGRAM_DIM=112 --golf "$P" --weights $W --compile-modes default,max-autotune-no-cudagraphs --profile 4
step bench_1019_mat 600 python3 scripts/bench.py --steps 20 --warmup 5 --variant "golf:$P" \
  --variant "golf_mat:$P train.compile_mode=max-autotune-no-cudagraphs" --json $R/bench_1019_mat.json
