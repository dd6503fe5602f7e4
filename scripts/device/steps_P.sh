# Issues 7 and 8, second call: the fused q/k kernel's tile and warp sweep; the baseline with the kernel on flash
# and on cuDNN attention (same call), then its 180 s run on the faster of the two (the quality bar);
# issue 7's sliding comparison with 64 windows per batch and a CUDA-graph row, profiled on compiled batches only;
# last the #1019 step's profile with its kernel sources.
source scripts/device/step.sh
P="experiment=pr1019 data=enwiki_sp1024 model.kernels=triton"
B="experiment=baseline data=enwiki_sp1024 model.kernels=triton"
bench() { local name=$1 limit=$2; shift 2; step $name $limit python3 scripts/bench.py --steps 30 --warmup 8 "$@" --json $R/$name.json; }
step kernels 150 python3 scripts/bench_kernels.py
bench bbase_flash 200 --variant "flash:$B model.attn_kernel=flash"
bench bbase_cudnn 200 --variant "cudnn:$B model.attn_kernel=cudnn"
AK=$(python3 -c "
import json; ms = {k: json.load(open('$R/bbase_' + k + '.json'))['rows'][k]['median_ms'] for k in ('flash', 'cudnn')}
print(min(ms, key=ms.get))" 2>/dev/null || echo flash)
echo "=== base180 attention kernel: $AK" >> $R/driver.log
step base180 420 python3 scripts/vs_record.py --budget 180 --skip-record --seed 1337 --data data/enwiki_sp1024 \
  --golf "base180:$B model.attn_kernel=$AK schedule.warmdown_iters=250" --out $R/base180 --golf-timeout 400
step evalbench 560 python3 scripts/bench_eval.py --record .bench/r1019_train_gpt.py --record-env BIGRAM_VOCAB_SIZE=3072 \
  --record-env BIGRAM_DIM=112 --golf "$P" --golf-batch-windows 64 --compile-modes default,reduce-overhead \
  --no-records-windows-row --profile 4
step prof1019 200 python3 scripts/profile_step.py "$P" --steps 3 --warmup 3 --top 30 --dump-kernels $R/k1019
