# H100 call Z3 (issue 8): both profiles at the committed kernel settings.
source scripts/device/step.sh
step prof1019 120 python3 scripts/profile_step.py "experiment=pr1019 data=enwiki_sp1024" --steps 3 --warmup 3 --top 30
step profbase 120 python3 scripts/profile_step.py "experiment=baseline data=enwiki_sp1024" --steps 3 --warmup 3 --top 30
