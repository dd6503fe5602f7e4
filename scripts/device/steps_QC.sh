# H100 call QC (issue 8): the #1019 step with quack's fused MLP (the activation now registered when the model is
# built) against cuBLAS + inductor, and its profile.
source scripts/device/step.sh
bench() { local name=$1 limit=$2; shift 2; step $name $limit python3 scripts/bench.py "$@" --json $R/$name.json; }
step pytest_gpu 300 python3 -m pytest -q -m gpu tests/test_fused_mlp.py
step mlpk 200 python3 scripts/bench_kernels.py --mlp
bench b1019 420 --steps 15 --warmup 4 --variant "unfused:experiment=pr1019 data=enwiki_sp1024 model.kernels=[qk_norm_rope,xsa]" \
  --variant "fused:experiment=pr1019 data=enwiki_sp1024"
step prof1019 200 python3 scripts/profile_step.py "experiment=pr1019 data=enwiki_sp1024" --steps 3 --warmup 3 --top 30
