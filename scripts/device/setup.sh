# Sourced at the start of every device call (scripts/device/launch.sh): the wheels the image lacks (.whl/), then the enwiki
# shards of .bench/ tokenized into data/enwiki_sp1024 (7.5 s on 16 cores).
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 WANDB_SILENT=true
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
python3 -c "import torch; print('torch', torch.__version__)"
python3 scripts/prepare_data.py --val .bench/enwiki/val.jsonl.xz --train .bench/enwiki/train_*.jsonl.xz \
  --tokenizer .bench/fineweb_1024_bpe.model \
  --output data/enwiki_sp1024 --workers 16 --overwrite > $OUT/prepare.txt 2>&1 || { tail $OUT/prepare.txt; exit 1; }
