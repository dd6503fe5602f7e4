# H100 calls QB (issue 8), twice: quack's fused MLP (model.kernels auto with quack installed) against cuBLAS +
# inductor (model.kernels=[qk_norm_rope,xsa]): GPU tests, the MLP alone, both presets' steps, the #1019 profile.
# The first found quack unable to fingerprint the CUTLASS DSL installed outside a site-packages path; the second
# ran the baseline (fused 243.6 ms) but not #1019: the LeakyReLU² activation was registered inside torch.compile's
# trace and missing at run time. Call QC has both fixes. The call before each (stash of cu13.part00) ran
# `mkdir -p /tmp/qparts && cp .qa/cu13.part00 /tmp/qparts/` with carry [".qa"]; the first also the kernel sweep.
source scripts/device/step.sh
bench() { local name=$1 limit=$2; shift 2; step $name $limit python3 scripts/bench.py "$@" --json $R/$name.json; }
step pytest_gpu 400 python3 -m pytest -q -m gpu -s tests/test_fused_mlp.py tests/test_kernels.py
step mlpk 300 python3 scripts/bench_kernels.py --mlp
bench b1019 420 --steps 15 --warmup 4 --variant "unfused:experiment=pr1019 data=enwiki_sp1024 model.kernels=[qk_norm_rope,xsa]" \
  --variant "fused:experiment=pr1019 data=enwiki_sp1024"
bench bbase 300 --steps 30 --warmup 8 --variant "unfused:experiment=baseline data=enwiki_sp1024 model.kernels=[qk_norm_rope,xsa]" \
  --variant "fused:experiment=baseline data=enwiki_sp1024"
step prof1019 200 python3 scripts/profile_step.py "experiment=pr1019 data=enwiki_sp1024" --steps 3 --warmup 3 --top 30
