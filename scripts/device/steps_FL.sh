# H100 call FL (issue 8), after the two stash calls (quack, FA4): K/V written at the query heads (model.kernels'
# wide_kv, on under auto for FA3/FA4) against grouped K/V, same call: the GPU tests, attention alone, the #1019 and
# baseline steps, and the #1019 profile.
source scripts/device/step.sh
export PYTHONPATH=$PYTHONPATH:$PWD/.fa3/site
P="experiment=pr1019 data=enwiki_sp1024 model.attn_kernel=fa3"
B="experiment=baseline data=enwiki_sp1024"
G="model.kernels=[qk_norm_rope,qkv,xsa,mlp]"
step pytest_k 300 python3 -m pytest -q -m gpu tests/test_kernels.py tests/test_models.py
step attn 200 python3 scripts/bench_kernels.py --attention
step bench 600 python3 scripts/bench.py --steps 15 --warmup 4 --variant "wide1019:$P" --variant "grouped1019:$P $G" \
  --variant "widebase:$B" --variant "groupedbase:$B $G" --json $R/bench.json
step prof1019 200 python3 scripts/profile_step.py "$P" --steps 3 --warmup 3 --top 30
