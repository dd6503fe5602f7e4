# H100 call FJ (issue 8), after the two stash calls (quack, FA4): what the host runs while the GPU idles at micro-step
# starts, #1019 at 4 micro-steps.
source scripts/device/step.sh
export PYTHONPATH=$PYTHONPATH:$PWD/.fa3/site
P="experiment=pr1019 data=enwiki_sp1024 model.attn_kernel=fa3"
step profhost 240 python3 scripts/profile_step.py "$P train.max_micro_batch_tokens=196608" --steps 2 --warmup 3 --top 20 --host
