# H100 call FP (issue 8), after the two stash calls (quack, FA4): CUDA graphs in training
# (train.compile_mode=reduce-overhead, gradients kept in zeroed buffers). The GPU test, then each preset with and
# without graphs in one process, then #1019's profile with graphs (--host: graph launches on the host side).
source scripts/device/step.sh
export PYTHONPATH=$PYTHONPATH:$PWD/.fa3/site
P="experiment=pr1019 data=enwiki_sp1024 model.attn_kernel=fa3"
B="experiment=baseline data=enwiki_sp1024"
G="train.compile_mode=reduce-overhead"
step test 300 python3 -m pytest -q -x tests/test_cudagraphs.py
step bbase 300 python3 scripts/bench.py --steps 30 --warmup 8 --variant "base:$B" --variant "base_graphs:$B $G" \
  --json $R/bbase.json
step b1019 420 python3 scripts/bench.py --steps 15 --warmup 4 --variant "p1019:$P" --variant "p1019_graphs:$P $G" \
  --json $R/b1019.json
step prof 300 python3 scripts/profile_step.py "$P $G" --steps 3 --warmup 4 --top 25 --host
