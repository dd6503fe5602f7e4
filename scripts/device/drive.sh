# Runs a list of steps one after another, each a new process, logging "=== name rc=N seconds" to $R/driver.log.
# Started under setsid by one device call (so it outlives the call); poll.sh calls keep the machine held.
# usage: R=/tmp/runA bash scripts/device/drive.sh scripts/device/steps_A.sh
mkdir -p $R
source "$1"
echo "=== all done $(date +%s)" >> $R/driver.log
