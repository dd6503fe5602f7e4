# H100 call FF (issue 8), after the two stash calls (quack, FA4): golf now (fused q/k/v projection, attn/mlp scales
# folded into proj's weights, the MLP's backward epilogue storing h's gradient only) against golf at 966fe1c
# (carried in .base/, run by its own scripts), #1019 and the baseline, in one call; the GPU tests of the changed
# kernels; the #1019 profile; the Triton kernels' tile sweep.
source scripts/device/step.sh
export PYTHONPATH=$PYTHONPATH:$PWD/.fa3/site
P="experiment=pr1019 data=enwiki_sp1024 model.attn_kernel=fa3"
B="experiment=baseline data=enwiki_sp1024"
step pytest_k 300 python3 -m pytest -q -m gpu tests/test_fused_mlp.py tests/test_kernels.py
step b_new 300 python3 scripts/bench.py --steps 15 --warmup 4 --variant "new1019:$P" --variant "newbase:$B" --json $R/b_new.json
step b_old 300 python3 .base/scripts/bench.py --steps 15 --warmup 4 --variant "old1019:$P" --variant "oldbase:$B" --json $R/b_old.json
step prof1019 200 python3 scripts/profile_step.py "$P" --steps 3 --warmup 3 --top 30
step kern 200 python3 scripts/bench_kernels.py --tiles 1024,2048,4096 --warps 2,4,8
