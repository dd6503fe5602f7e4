# H100 call FG (issue 8), after the two stash calls (quack, FA4): the q/k kernels loading whole rows (tile sweep beside
# the two-half loads of 21b09b2..871e0c2, carried as .base/old_qk_norm_rope_triton.py), their GPU tests, and golf now
# against golf at 966fe1c (.base/, its own scripts), #1019 and the baseline, in one call; the #1019 profile.
source scripts/device/step.sh
export PYTHONPATH=$PYTHONPATH:$PWD/.fa3/site
P="experiment=pr1019 data=enwiki_sp1024 model.attn_kernel=fa3"
B="experiment=baseline data=enwiki_sp1024"
step pytest_k 200 python3 -m pytest -q -m gpu tests/test_kernels.py
step kern 200 python3 scripts/bench_kernels.py --tiles 1024,2048,4096 --warps 2,4,8 --compare-qk .base/old_qk_norm_rope_triton.py
step b_new 300 python3 scripts/bench.py --steps 15 --warmup 4 --variant "new1019:$P" --variant "newbase:$B" --json $R/b_new.json
step b_old 300 python3 .base/scripts/bench.py --steps 15 --warmup 4 --variant "old1019:$P" --variant "oldbase:$B" --json $R/b_old.json
step prof1019 200 python3 scripts/profile_step.py "$P" --steps 3 --warmup 3 --top 30
