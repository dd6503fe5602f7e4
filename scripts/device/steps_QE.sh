# H100 call QE (issue 8), after two calls that stashed quack in /tmp/qstash (.qa: cu13.part00 and cuda-bindings;
# .qb: cu13.part01, the other wheels and enwiki train shards 01-02, copied back into .bench/enwiki by this call's
# command): the baseline with the fused MLP (the default now) beside the record's GPT and optimizers, and its
# 180 s run, as machine Z ran them without it.
source scripts/device/step.sh
B="experiment=baseline data=enwiki_sp1024"
bench() { local name=$1 limit=$2; shift 2; step $name $limit python3 scripts/bench.py "$@" --json $R/$name.json; }
bench bbase_ref 220 --steps 30 --warmup 8 --reference .bench/nb_train_gpt.py --variant "fused:$B"
step base180 480 python3 scripts/vs_record.py --budget 180 --skip-record --seed 1337 --data data/enwiki_sp1024 \
  --golf "base180:$B schedule.warmdown_iters=250" --out $R/base180
