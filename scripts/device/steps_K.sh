# Issue 8, first of two H100 calls this session (~10 min held): where the #1019 and baseline steps go, with the
# Triton source of their slowest kernels (to read the 38.75 ms x0/embedding-norm backward); then the #1019 step
# with looped instead of persistent reductions, and under max-autotune GEMM templates, each in its own process
# (inductor settings are process-wide).
source scripts/device/step.sh
P="experiment=pr1019 data=enwiki_sp1024"
B="experiment=baseline data=enwiki_sp1024"
step prof1019 300 python3 scripts/profile_step.py "$P" --steps 3 --warmup 3 --top 25 --dump-kernels $R/k1019
step profbase 200 python3 scripts/profile_step.py "$B" --steps 3 --warmup 3 --top 20 --dump-kernels $R/kbase
step b1019_nopers 240 python3 scripts/bench.py --steps 15 --warmup 4 \
  --variant "nopers:$P train.inductor={triton.persistent_reductions:false}" --json $R/b1019_nopers.json
step b1019_mat 420 python3 scripts/bench.py --steps 15 --warmup 4 \
  --variant "mat:$P train.compile_mode=max-autotune-no-cudagraphs" --json $R/b1019_mat.json
