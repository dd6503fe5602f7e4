# H100 call FK (issue 8), after the two stash calls (quack, FA4): attention alone with K/V grouped, repeated, and at
# the query heads; #1019 with the prefetching loader against golf at a9e0ece (.base/), same call; the host's
# timeline inside the GPU's gaps (profile_step --host) at the records' micro-batch.
source scripts/device/step.sh
export PYTHONPATH=$PYTHONPATH:$PWD/.fa3/site
P="experiment=pr1019 data=enwiki_sp1024 model.attn_kernel=fa3"
step attn 200 python3 scripts/bench_kernels.py --attention
step b_new 300 python3 scripts/bench.py --steps 15 --warmup 4 --variant "new1019:$P" --json $R/b_new.json
step b_old 300 python3 .base/scripts/bench.py --steps 15 --warmup 4 --variant "old1019:$P" --json $R/b_old.json
step profhost 300 python3 scripts/profile_step.py "$P" --steps 2 --warmup 3 --top 20 --host
