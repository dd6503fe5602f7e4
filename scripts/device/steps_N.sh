# Next H100 session (~29 min held): what this session's machines L and K left. The #1019 step's profile with
# mix-order reductions off (the preset's setting since deab1d8) and its kernel sources; the default twice more
# (run-to-run spread of inductor's autotuning, e.g. the QK-norm kernel at 0.48 ms per call on machine K);
# coordinate-descent tuning; then a q180 model and issue 7's sliding comparison with a max-autotune row.
source scripts/device/step.sh
P="experiment=pr1019 data=enwiki_sp1024"
W=$R/q180/golf_q180/weights.safetensors
step prof1019 300 python3 scripts/profile_step.py "$P" --steps 3 --warmup 3 --top 25 --dump-kernels $R/k1019
step b1019_a 240 python3 scripts/bench.py --steps 15 --warmup 4 --variant "a:$P" --json $R/b1019_a.json
step b1019_b 240 python3 scripts/bench.py --steps 15 --warmup 4 --variant "b:$P" --json $R/b1019_b.json
step b1019_cdt 480 python3 scripts/bench.py --steps 15 --warmup 4 --variant "cdt:$P +train.inductor.coordinate_descent_tuning=true" --json $R/b1019_cdt.json
step q180 600 python3 scripts/vs_record.py --budget 180 --skip-record --seed 314 --data data/enwiki_sp1024 \
  --golf "golf_q180:$P eval=standard schedule.warmdown_iters=150 train.save_weights=true" --out $R/q180 --golf-timeout 580
step evalbench 700 python3 scripts/bench_eval.py --record .bench/r1019_train_gpt.py --record-env BIGRAM_VOCAB_SIZE=3072 \
  --record-env BIGRAM_DIM=112 --golf "$P" --weights $W --compile-modes default,max-autotune-no-cudagraphs --profile 4
