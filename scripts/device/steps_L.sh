# Issue 8, second H100 call this session: machine K's profile showed the #1019 step's slowest Triton kernel
# (38.6 ms per step) is an inductor mix-order reduction (layer 6's norm backward fused with eight per-channel
# gradient sums, one accumulator per sum), and a persistent QK-norm kernel at 0.48 ms per call. Each variant runs
# in its own process (inductor settings are process-wide): default, mix-order reductions off, coordinate-descent
# tuning of every Triton kernel's block sizes; the baseline beside its record with the same switches; a profile
# of the best-looking #1019 variant; last, the default again (run-to-run spread of inductor's autotuning).
source scripts/device/step.sh
P="experiment=pr1019 data=enwiki_sp1024"
B="experiment=baseline data=enwiki_sp1024"
NOMIX="train.inductor={triton.mix_order_reduction:false}"
CDT="train.inductor={coordinate_descent_tuning:true}"
bench() { local name=$1 limit=$2; shift 2; step $name $limit python3 scripts/bench.py --steps 15 --warmup 4 "$@" --json $R/$name.json; }
bench b1019 240 --variant "default:$P"
bench b1019_nomix 240 --variant "nomix:$P $NOMIX"
bench bbase 240 --steps 30 --warmup 8 --reference .bench/nb_train_gpt.py --variant "default:$B"
bench bbase_nomix 200 --steps 30 --warmup 8 --variant "nomix:$B $NOMIX"
step prof1019_nomix 240 python3 scripts/profile_step.py "$P $NOMIX" --steps 3 --warmup 3 --top 25
bench b1019_cdt 480 --variant "cdt:$P $CDT"
bench b1019_again 240 --variant "default_again:$P"
