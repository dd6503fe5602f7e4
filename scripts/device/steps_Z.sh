# H100 call Z (issue 8): the committed kernels (q/k token-major without gathers, 1024 elements and 4 warps each
# way; int32 row indices in q/k and XSA): the sweep, the baseline beside its record, the #1019 step, and the
# baseline's 180 s run (the quality bar: no worse than 1.3013 at equal steps).
source scripts/device/step.sh
P="experiment=pr1019 data=enwiki_sp1024"
B="experiment=baseline data=enwiki_sp1024"
bench() { local name=$1 limit=$2; shift 2; step $name $limit python3 scripts/bench.py "$@" --json $R/$name.json; }
step pytest_gpu 200 python3 -m pytest -q -m gpu tests/test_kernels.py
step kernels 200 python3 scripts/bench_kernels.py --tiles 1024,2048 --warps 2,4,8 --compare-qk .bench/qk_norm_rope_triton_w.py
bench bbase_ref 200 --steps 30 --warmup 8 --reference .bench/nb_train_gpt.py --variant "default:$B"
bench b1019 200 --steps 15 --warmup 4 --variant "default:$P"
step base180 480 python3 scripts/vs_record.py --budget 180 --skip-record --seed 1337 --data data/enwiki_sp1024 \
  --golf "base180:$B schedule.warmdown_iters=250" --out $R/base180
