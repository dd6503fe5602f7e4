# H100 call Y (issue 8): the q/k and XSA kernels with int32 row indices and constant head counts (int64
# divisions had been software routines per row); the sweep in both layouts beside 1c94bb0's q/k kernel; the
# baseline beside its record and the #1019 step, token-major; both profiles.
source scripts/device/step.sh
P="experiment=pr1019 data=enwiki_sp1024"
B="experiment=baseline data=enwiki_sp1024"
bench() { local name=$1 limit=$2; shift 2; step $name $limit python3 scripts/bench.py "$@" --json $R/$name.json; }
step pytest_gpu 200 python3 -m pytest -q -m gpu tests/test_kernels.py
step kernels 200 python3 scripts/bench_kernels.py --tiles 1024,2048,4096 --warps 4,8 --compare-qk .bench/qk_norm_rope_triton_w.py
bench bbase_ref 200 --steps 30 --warmup 8 --reference .bench/nb_train_gpt.py --variant "token:$B"
bench b1019 200 --steps 15 --warmup 4 --variant "token:$P"
step profbase 120 python3 scripts/profile_step.py "$B" --steps 3 --warmup 3 --top 30
step prof1019 120 python3 scripts/profile_step.py "$P" --steps 3 --warmup 3 --top 30
