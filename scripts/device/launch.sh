# usage: bash scripts/device/launch.sh A|B|C (device call, carry [".bench", ".whl"]): set up, start the step list
# under setsid (it outlives the call), then poll for up to 540 s. Follow at once with poll calls
# (bash scripts/device/poll.sh /tmp/runX 560): a machine idle for 30 s is given back, and its runs with it.
source scripts/device/setup.sh
[ -d /tmp/qstash ] && { source scripts/device/quack.sh || exit 1; }
export R=/tmp/run$1; mkdir -p $R
setsid nohup bash scripts/device/drive.sh scripts/device/steps_$1.sh > $R/driver.out 2>&1 < /dev/null &
bash scripts/device/poll.sh $R 540
