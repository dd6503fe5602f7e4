# Issues 7 and 8: the fused q/k RMSNorm + RoPE + gain kernel (golf/kernels, model.kernels=triton). First
# its GPU tests; then the #1019 step and the baseline with the PyTorch form and with the kernel, each in its own
# process (same call); a profile of the #1019 step with the kernel; last issue 7's sliding comparison with the
# kernel (one compiled shape since e57716f: window 0's batch runs eagerly), with a profile of golf's batches.
source scripts/device/step.sh
P="experiment=pr1019 data=enwiki_sp1024"
B="experiment=baseline data=enwiki_sp1024"
TK="model.kernels=triton"
bench() { local name=$1 limit=$2; shift 2; step $name $limit python3 scripts/bench.py --steps 15 --warmup 4 "$@" --json $R/$name.json; }
step pytest_gpu 300 python3 -m pytest -q -m gpu tests/test_kernels.py tests/test_cuda_paths.py
bench b1019_torch 240 --variant "torch:$P"
bench b1019_triton 240 --variant "triton:$P $TK"
bench bbase_torch 200 --steps 30 --warmup 8 --variant "torch:$B"
bench bbase_triton 200 --steps 30 --warmup 8 --variant "triton:$B $TK"
step prof1019_triton 240 python3 scripts/profile_step.py "$P $TK" --steps 3 --warmup 3 --top 25
step evalbench 600 python3 scripts/bench_eval.py --record .bench/r1019_train_gpt.py --record-env BIGRAM_VOCAB_SIZE=3072 \
  --record-env BIGRAM_DIM=112 --golf "$P $TK" --profile 4
