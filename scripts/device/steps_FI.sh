# H100 call FI (issue 8), after the two stash calls (quack, FA4): after the fused q/k/v projection, the folded scales and
# the MLP's h-gradient-only epilogue: every GPU test, the baseline's 180 s run (the quality bar), and the #1019 pipeline
# end to end at 60 s (calibration's hooks take the unfused paths, the sliding eval the fused ones).
source scripts/device/step.sh
export PYTHONPATH=$PYTHONPATH:$PWD/.fa3/site
step pytest_gpu 300 python3 -m pytest -q -m gpu tests
step base180 420 python3 scripts/vs_record.py --budget 180 --skip-record --seed 1337 --data data/enwiki_sp1024 \
  --golf "base180:experiment=baseline data=enwiki_sp1024 schedule.warmdown_iters=250" --out $R/base180
step p60 420 python3 scripts/vs_record.py --budget 60 --skip-record --seed 314 --data data/enwiki_sp1024 \
  --golf "p60:experiment=pr1019 data=enwiki_sp1024 model.attn_kernel=fa3" --out $R/p60 --golf-timeout 400
