# Issues 7 and 8, last call: the kernels' GPU tests (now with XSA); the #1019 step and the baseline with golf's
# kernels off (model.kernels=torch) and on (the default since this commit: q/k norm+RoPE and XSA), the baseline
# also beside the record's own GPT and optimizers; issue 7's sliding comparison at the defaults (64 windows per
# batch) with a profile of compiled batches; then the #1019 profile at the defaults.
source scripts/device/step.sh
P="experiment=pr1019 data=enwiki_sp1024"
B="experiment=baseline data=enwiki_sp1024"
bench() { local name=$1 limit=$2; shift 2; step $name $limit python3 scripts/bench.py "$@" --json $R/$name.json; }
step pytest_gpu 240 python3 -m pytest -q -m gpu tests/test_kernels.py tests/test_models.py
bench b1019_torch 200 --steps 15 --warmup 4 --variant "torch:$P model.kernels=torch"
bench b1019_kernels 200 --steps 15 --warmup 4 --variant "kernels:$P"
bench bbase 240 --steps 30 --warmup 8 --reference .bench/nb_train_gpt.py --variant "kernels:$B"
bench bbase_torch 150 --steps 30 --warmup 8 --variant "torch:$B model.kernels=torch"
step evalbench 480 python3 scripts/bench_eval.py --record .bench/r1019_train_gpt.py --record-env BIGRAM_VOCAB_SIZE=3072 \
  --record-env BIGRAM_DIM=112 --golf "$P" --golf-batch-windows 64 --no-records-windows-row --profile 4
step prof1019 150 python3 scripts/profile_step.py "$P" --steps 3 --warmup 3 --top 30
