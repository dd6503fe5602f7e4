# H100 call X (issue 8): the q/k kernel without gathers (rows seen as [NB, 2, R/2] blocks), writing y token-major
# (x's layout: cuDNN's output then comes token-major and proj reads it without the transpose copy) or head-major
# (GOLF_QK_LAYOUT=head, as before). Sweep beside 1c94bb0's kernel; baseline and #1019 steps in both layouts.
source scripts/device/step.sh
P="experiment=pr1019 data=enwiki_sp1024"
B="experiment=baseline data=enwiki_sp1024"
bench() { local name=$1 limit=$2; shift 2; step $name $limit python3 scripts/bench.py "$@" --json $R/$name.json; }
step pytest_gpu 200 python3 -m pytest -q -m gpu tests/test_kernels.py
step kernels 200 python3 scripts/bench_kernels.py --tiles 1024,2048,4096 --warps 4,8 --compare-qk .bench/qk_norm_rope_triton_w.py
bench bbase_tok 150 --steps 30 --warmup 8 --variant "token:$B"
step bbase_head 150 env GOLF_QK_LAYOUT=head python3 scripts/bench.py --json $R/bbase_head.json --steps 30 --warmup 8 --variant "head:$B"
bench b1019_tok 200 --steps 15 --warmup 4 --variant "token:$P"
step b1019_head 200 env GOLF_QK_LAYOUT=head python3 scripts/bench.py --json $R/b1019_head.json --steps 15 --warmup 4 --variant "head:$P"
step profbase 120 python3 scripts/profile_step.py "$B" --steps 3 --warmup 3 --top 30
step prof1019 120 python3 scripts/profile_step.py "$P" --steps 3 --warmup 3 --top 30
bench bbase_ref 200 --steps 30 --warmup 8 --reference .bench/nb_train_gpt.py --variant "token:$B"
