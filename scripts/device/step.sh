step() {  # step NAME TIMEOUT CMD...: one logged, time-limited step; a failure never stops the list
  local name=$1 limit=$2; shift 2
  local t0=$(date +%s)
  echo "=== $name start $t0" >> $R/driver.log
  timeout -k 20 $limit "$@" > $R/$name.log 2>&1
  echo "=== $name rc=$? $(( $(date +%s) - t0 ))s" >> $R/driver.log
}
