# H100 call QD (issue 8), on QC's machine (quack already installed there, so started by hand with QC's PYTHONPATH
# and drive.sh): the baseline's step with and without the fused MLP, and its profile with it.
source scripts/device/step.sh
bench() { local name=$1 limit=$2; shift 2; step $name $limit python3 scripts/bench.py "$@" --json $R/$name.json; }
bench bbase 300 --steps 30 --warmup 8 --variant "unfused:experiment=baseline data=enwiki_sp1024 model.kernels=[qk_norm_rope,xsa]" --variant "fused:experiment=baseline data=enwiki_sp1024"
step profbase 150 python3 scripts/profile_step.py "experiment=baseline data=enwiki_sp1024" --steps 3 --warmup 3 --top 30
