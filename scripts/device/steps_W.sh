# H100 call W (issue 8): where the baseline's step goes (its first profile since the MLP kernel left), with and
# without inductor's mix-order reductions, each with the slowest kernels' source dumped; 1c94bb0's #1019 step;
# the baseline beside the record's own code; the #1019 profile.
source scripts/device/step.sh
P="experiment=pr1019 data=enwiki_sp1024"
B="experiment=baseline data=enwiki_sp1024"
NOMIX="train.inductor={triton:{mix_order_reduction:false}}"
bench() { local name=$1 limit=$2; shift 2; step $name $limit python3 scripts/bench.py "$@" --json $R/$name.json; }
step pytest_gpu 200 python3 -m pytest -q -m gpu tests/test_kernels.py
step profbase 150 python3 scripts/profile_step.py "$B" --steps 3 --warmup 3 --top 40 --dump-kernels $R/kbase
step profbase_nomix 150 python3 scripts/profile_step.py "$B $NOMIX" --steps 3 --warmup 3 --top 40 --dump-kernels $R/kbase_nomix
bench b1019 200 --steps 15 --warmup 4 --variant "default:$P"
bench bbase_ref 200 --steps 30 --warmup 8 --reference .bench/nb_train_gpt.py --variant "default:$B"
step prof1019 120 python3 scripts/profile_step.py "$P" --steps 3 --warmup 3 --top 40 --dump-kernels $R/k1019
