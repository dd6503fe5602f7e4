# Issues 7 and 8: the fused MLP kernel (golf/kernels/mlp_triton.py). Its GPU tests (with the 50a16e9 XSA helper);
# its config sweep beside cuBLAS + inductor's activation; the #1019 step and the baseline with it and without it
# (model.kernels lists the other kernels), each in its own process; the q/k and XSA tile/warp sweeps; a profile of
# the baseline step at the defaults.
source scripts/device/step.sh
P="experiment=pr1019 data=enwiki_sp1024"
B="experiment=baseline data=enwiki_sp1024"
bench() { local name=$1 limit=$2; shift 2; step $name $limit python3 scripts/bench.py "$@" --json $R/$name.json; }
step pytest_gpu 240 python3 -m pytest -q -m gpu tests/test_kernels.py
step mlpsweep 200 python3 scripts/bench_kernels.py --mlp
bench b1019_nomlp 200 --steps 15 --warmup 4 --variant "nomlp:$P model.kernels=[qk_norm_rope,xsa]"
bench b1019_mlp 200 --steps 15 --warmup 4 --variant "mlp:$P"
bench bbase_nomlp 150 --steps 30 --warmup 8 --variant "nomlp:$B model.kernels=[qk_norm_rope,xsa]"
bench bbase_mlp 150 --steps 30 --warmup 8 --variant "mlp:$B"
step kernels 200 python3 scripts/bench_kernels.py --tiles 1024,2048,4096,8192 --warps 2,4,8,16
step profbase 150 python3 scripts/profile_step.py "$B" --steps 3 --warmup 3 --top 30
