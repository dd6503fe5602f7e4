# H100 call FB (issue 8), after the two stash calls of FA: the baseline's 180 s run with the new default attention
# (auto: FlashAttention-4 where it runs), FA4 with K/V repeated beside grouped K/V, and the #1019 step on cuDNN and
# on FA4 again (a second sample of FA's comparison, same call).
source scripts/device/step.sh
P="experiment=pr1019 data=enwiki_sp1024"
bench() { local name=$1 limit=$2; shift 2; step $name $limit python3 scripts/bench.py "$@" --json $R/$name.json; }
step base180 480 python3 scripts/vs_record.py --budget 180 --skip-record --seed 1337 --data data/enwiki_sp1024 \
  --golf "base180:experiment=baseline data=enwiki_sp1024 schedule.warmdown_iters=250" --out $R/base180
step attnk 200 python3 scripts/bench_kernels.py --attention
bench b1019 480 --steps 15 --warmup 4 --variant "fa4:$P" --variant "cudnn:$P model.attn_kernel=cudnn"
