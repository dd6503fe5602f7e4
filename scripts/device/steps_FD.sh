# H100 call FD (issue 8), after the two stash calls of FA (quack, FA4): FlashAttention-3 built from flash-attention's
# hopper/ (hdim 64, bf16, SM90, torch's stable ABI; carried in .fa3/site): its correctness and kernels, the #1019
# step on FA3 beside FA4 (same call), the #1019 profile on FA3, and attention's kernels alone.
source scripts/device/step.sh
export PYTHONPATH=$PYTHONPATH:$PWD/.fa3/site
P="experiment=pr1019 data=enwiki_sp1024"
bench() { local name=$1 limit=$2; shift 2; step $name $limit python3 scripts/bench.py "$@" --json $R/$name.json; }
step fa3import 60 python3 -c "import flash_attn_interface as f, torch; from golf.models.attention import resolve_kernel; print(f.__file__, resolve_kernel('auto'))"
step pytest_fa3 240 python3 -m pytest -q -m gpu tests/test_models.py -k "attention_kernels and (fa3 or fa4 or auto)"
bench b1019 420 --steps 15 --warmup 4 --variant "fa3:$P model.attn_kernel=fa3" --variant "fa4:$P model.attn_kernel=fa4"
step attnk 150 python3 scripts/bench_kernels.py --attention
step prof1019 200 python3 scripts/profile_step.py "$P model.attn_kernel=fa3" --steps 3 --warmup 3 --top 30
