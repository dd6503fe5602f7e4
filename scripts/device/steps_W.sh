# Next H100 call (issue 8): the step time of 1c94bb0's q/k kernel (V's contiguous forward at 2048/4, U's gather
# backward at 4096/8), which no call has measured yet; the kernels' sweep; the #1019 and baseline steps beside
# the records' own code; the #1019 profile.
source scripts/device/step.sh
P="experiment=pr1019 data=enwiki_sp1024"
B="experiment=baseline data=enwiki_sp1024"
bench() { local name=$1 limit=$2; shift 2; step $name $limit python3 scripts/bench.py "$@" --json $R/$name.json; }
step pytest_gpu 200 python3 -m pytest -q -m gpu tests/test_kernels.py
step kernels 120 python3 scripts/bench_kernels.py --tiles 1024,2048,4096 --warps 2,4,8
bench b1019 200 --steps 15 --warmup 4 --variant "default:$P"
bench b1019_noqk 200 --steps 15 --warmup 4 --variant "noqk:$P model.kernels=[xsa]"
bench bbase_ref 200 --steps 30 --warmup 8 --reference .bench/nb_train_gpt.py --variant "default:$B"
step prof1019 100 python3 scripts/profile_step.py "$P" --steps 3 --warmup 3 --top 30
