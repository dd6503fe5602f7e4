# usage: bash scripts/device/poll.sh R MAX_S: wait until R's driver is done or MAX_S passed, then copy R's small files to $OUT
R=$1; end=$(( $(date +%s) + $2 ))
while [ $(date +%s) -lt $end ] && ! grep -q "all done" $R/driver.log 2>/dev/null; do sleep 5; done
(cd $R && find . -type f -size -3M -not -path "*/.hydra/*" \( -name "*.json" -o -name "*.log" -o -name "*.txt" -o -name "*.md" -o -name "*.out" -o -name "*.py" \) -print0 | tar czf $OUT/r.tgz --null -T -)
cat $R/driver.log; nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv,noheader
for f in $R/*.log; do echo "--- $f"; tail -n 4 $f; done
