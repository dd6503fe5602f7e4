# H100 call FC (issue 8), after the two stash calls of FA: every GPU test with FlashAttention-4 installed (auto now
# picks it, so decoding, calibration and the sliding eval run beside it), then the #1019 pipeline end to end at a
# 60 s training budget on the default (FA4) attention: training, AR calibration, GPTQ, round trip, sliding eval.
source scripts/device/step.sh
step pytest_gpu 420 python3 -m pytest -q -m gpu tests
step p60 480 python3 scripts/vs_record.py --budget 60 --skip-record --seed 314 --data data/enwiki_sp1024 \
  --golf "p60:experiment=pr1019 data=enwiki_sp1024" --out $R/p60 --golf-timeout 450
