# Next session, one H100 (~28 min): issue 6 with the grid floor lowered (quant.scale_floor=0) on a fresh
# #1019-recipe model, the sliding comparison on its weights (the last block now runs only the scored positions),
# then issue 8's compile knobs (train.inductor composes since a27a8eb) beside the baseline
# record. Coordinate-descent tuning compiled for over 180 s on the #1019 stack: its steps have long timeouts
# and come last.
source scripts/device/step.sh
W=$R/q180/golf_q180/weights.safetensors
P="experiment=pr1019 data=enwiki_sp1024"
B="experiment=baseline data=enwiki_sp1024"
step pytest 240 python3 -m pytest -q -m gpu tests/
step q180 600 python3 scripts/vs_record.py --budget 180 --skip-record --seed 314 --data data/enwiki_sp1024 \
  --golf "golf_q180:$P eval=standard schedule.warmdown_iters=150 train.save_weights=true" --out $R/q180 --golf-timeout 580
step quant 900 python3 scripts/quant_table.py --recipe "$P eval=standard" --weights $W --timeout 300 --out $R/quant \
  --presets "gptq_ar:quant.scale_floor=0,gptq:quant.scale_floor=0,int6_gptq_lite:quant.scale_floor=0,mixed:quant.scale_floor=0"
step evalbench 600 python3 scripts/bench_eval.py --record .bench/r1019_train_gpt.py --record-env BIGRAM_VOCAB_SIZE=3072 \
  --record-env BIGRAM_DIM=112 --golf "$P" --weights $W
step bench_base 600 python3 scripts/bench.py --steps 30 --warmup 10 --reference .bench/nb_train_gpt.py \
  --variant "golf:$B" --variant "golf_mat:$B train.compile_mode=max-autotune-no-cudagraphs" --json $R/bench_base.json
step bench_1019_mat 600 python3 scripts/bench.py --steps 20 --warmup 5 \
  --variant "golf_mat:$P train.compile_mode=max-autotune-no-cudagraphs" --json $R/bench_1019_mat.json
step bench_1019_cdt 600 python3 scripts/bench.py --steps 20 --warmup 5 \
  --variant "golf_cdt:$P train.inductor={coordinate_descent_tuning:true}" --json $R/bench_1019_cdt.json
