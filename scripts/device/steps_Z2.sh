# H100 call Z2 (issue 8): the step times at machine Z's sweep settings (q/k backward 1024 elements and 2 warps,
# XSA 1024 and 2).
source scripts/device/step.sh
bench() { local name=$1 limit=$2; shift 2; step $name $limit python3 scripts/bench.py "$@" --json $R/$name.json; }
bench b1019 200 --steps 15 --warmup 4 --variant "default:experiment=pr1019 data=enwiki_sp1024"
bench bbase 150 --steps 30 --warmup 8 --variant "default:experiment=baseline data=enwiki_sp1024"
