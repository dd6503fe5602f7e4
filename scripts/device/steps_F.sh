# One H100 (~28 min): GPU tests; issue 6 again after the CUDA fix of the quantizer's floor count (the q180
# pipeline and three quant-table rows crashed on it): decoding time per mode, the #1019-recipe 180 s pipeline
# (graph-decoded AR calibration, gptq_ar), the quantizer table on its weights; then issue 8's compile knobs
# (coordinate-descent tuning, max-autotune GEMM templates) on the baseline beside its record and on #1019.
source scripts/device/step.sh
W=$R/q180/golf_q180/weights.safetensors
P="experiment=pr1019 data=enwiki_sp1024"
B="experiment=baseline data=enwiki_sp1024"
CDT="train.inductor={coordinate_descent_tuning:true}"
MAT="train.compile_mode=max-autotune-no-cudagraphs"
step pytest 240 python3 -m pytest -q -m gpu tests/
step decode 240 python3 scripts/bench_decode.py "$P" --modes graph,eager
step q180 600 python3 scripts/vs_record.py --budget 180 --skip-record --seed 314 --data data/enwiki_sp1024 \
  --golf "golf_q180:$P schedule.warmdown_iters=150 train.save_weights=true" --out $R/q180 --golf-timeout 580
step quant 900 python3 scripts/quant_table.py --recipe "$P eval=standard" \
  --weights $W --presets gptq,int6_gptq_lite,int6,mixed --out $R/quant --timeout 300
step bench_base 420 python3 scripts/bench.py --steps 30 --warmup 10 --reference .bench/nb_train_gpt.py \
  --variant "golf:$B" --variant "golf_cdt:$B $CDT" --json $R/bench_base.json
step bench_1019 300 python3 scripts/bench.py --steps 20 --warmup 5 --variant "golf:$P" --json $R/bench_1019.json
step bench_1019_cdt 300 python3 scripts/bench.py --steps 20 --warmup 5 --variant "golf_cdt:$P $CDT" --json $R/bench_1019_cdt.json
step bench_1019_mat 420 python3 scripts/bench.py --steps 20 --warmup 5 --variant "golf_mat:$P $CDT $MAT" --json $R/bench_1019_mat.json
step prof_1019 300 python3 scripts/profile_step.py "$P" --steps 3 --warmup 3 --top 25
step prof_1019_cdt 300 python3 scripts/profile_step.py "$P $CDT" --steps 3 --warmup 3 --top 25
