# H100 call FH (issue 8), after the two stash calls (quack, FA4): the #1019 step at the records' micro-batch (98,304
# tokens, 8 micro-steps) against 2x and 4x larger micro-batches (4 and 2 micro-steps; the same 786,432 tokens per
# step), each in its own process, one call; the profile at 196,608.
source scripts/device/step.sh
export PYTHONPATH=$PYTHONPATH:$PWD/.fa3/site
P="experiment=pr1019 data=enwiki_sp1024 model.attn_kernel=fa3"
step b_mb 560 python3 scripts/bench.py --steps 15 --warmup 4 --variant "mb98k:$P" \
  --variant "mb196k:$P train.max_micro_batch_tokens=196608" --variant "mb393k:$P train.max_micro_batch_tokens=393216" \
  --json $R/b_mb.json
step prof196 200 python3 scripts/profile_step.py "$P train.max_micro_batch_tokens=196608" --steps 3 --warmup 3 --top 30
