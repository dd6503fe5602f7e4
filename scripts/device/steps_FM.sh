# H100 call FM (issue 8), after the two stash calls (quack, FA4): the q/k/v kernels storing whole rows (joined halves)
# against storing each half (.base/qk_halves.py, ops renamed), alone; then, same call, the #1019 and baseline steps
# with wide K/V (now with whole-row stores), with grouped K/V, with 4 micro-steps, and golf at a9e0ece (.base/); the
# GPU tests; the #1019 profile.
source scripts/device/step.sh
export PYTHONPATH=$PYTHONPATH:$PWD/.fa3/site
P="experiment=pr1019 data=enwiki_sp1024 model.attn_kernel=fa3"
B="experiment=baseline data=enwiki_sp1024"
G="model.kernels=[qk_norm_rope,qkv,xsa,mlp]"
step kern 200 python3 scripts/bench_kernels.py --qkv --compare-qk .base/qk_halves.py --tiles 1024,2048,4096 --warps 2,4,8
step bench 600 python3 scripts/bench.py --steps 15 --warmup 4 --variant "wide1019:$P" --variant "grouped1019:$P $G" \
  --variant "widebase:$B" --variant "groupedbase:$B $G" --variant "wide1019mb196k:$P train.max_micro_batch_tokens=196608" \
  --json $R/bench.json
step b_old 300 python3 .base/scripts/bench.py --steps 15 --warmup 4 --variant "old1019:$P" --variant "oldbase:$B" --json $R/b_old.json
step prof1019 200 python3 scripts/profile_step.py "$P" --steps 3 --warmup 3 --top 30
step pytest_k 300 python3 -m pytest -q -m gpu tests/test_kernels.py
