# H100 call FQ (issue 8), after the two stash calls (quack, FA4): the #1019 pipeline at a 60 s budget with CUDA
# graphs (train.compile_mode=reduce-overhead): late QAT's second graph, EMA/SWA, AR calibration (its own CUDA graph),
# GPTQ, the round trip and the sliding eval, in one run.
source scripts/device/step.sh
export PYTHONPATH=$PYTHONPATH:$PWD/.fa3/site
step p60g 480 python3 scripts/vs_record.py --budget 60 --skip-record --seed 314 --data data/enwiki_sp1024 \
  --golf "p60g:experiment=pr1019 data=enwiki_sp1024 model.attn_kernel=fa3 train.compile_mode=reduce-overhead" \
  --out $R/p60g --golf-timeout 460
