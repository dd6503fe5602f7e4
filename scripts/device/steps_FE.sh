# H100 call FE (issue 8), after the two stash calls (quack, FA4): the fused q/k/v projection (model.kernels' qkv)
# against three GEMMs, and CUDA graphs (train.compile_mode=reduce-overhead), each in its own process in one call;
# the #1019 profile with the GPU's idle time between kernels.
source scripts/device/step.sh
export PYTHONPATH=$PYTHONPATH:$PWD/.fa3/site
P="experiment=pr1019 data=enwiki_sp1024 model.attn_kernel=fa3"
bench() { local name=$1 limit=$2; shift 2; step $name $limit python3 scripts/bench.py "$@" --json $R/$name.json; }
step pytest_k 240 python3 -m pytest -q -m gpu tests/test_kernels.py
bench b1019 560 --steps 15 --warmup 4 --variant "three_gemms:$P model.kernels=[qk_norm_rope,xsa,mlp]" \
  --variant "qkv:$P" --variant "qkv_graphs:$P train.compile_mode=reduce-overhead"
step prof1019 200 python3 scripts/profile_step.py "$P" --steps 3 --warmup 3 --top 30
