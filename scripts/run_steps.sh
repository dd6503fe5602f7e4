#!/usr/bin/env bash
# Run a list of benchmark steps one after another on the machine that has the GPU, each with its own time limit:
#
#   bash scripts/run_steps.sh STEPS OUT [NAMES]
#
# STEPS holds one step a line, "NAME LIMIT_SECONDS COMMAND ..." (blank lines and '#' comments skipped); the
# command runs in the repository root under bash, its output in OUT/NAME.log. A failing or timed-out step never
# stops the list. OUT/steps.tsv gets "name<TAB>exit code<TAB>seconds" per step, and the table prints at the end
# with each log's last lines. NAMES (comma-separated) runs only those steps, so one file can hold a measurement that
# takes several calls on one warm machine (e.g. "setup,record" in one call, then "golf,collect"). docs/benchmarks.md
# names the step file behind each figure (docs/steps/).
set -u
steps=$1 out=$2 only=${3:-}
mkdir -p "$out"
: > "$out/steps.tsv"
while read -r name limit cmd; do
  [[ -z "$name" || "$name" == \#* ]] && continue
  [[ -n "$only" && ",$only," != *",$name,"* ]] && continue
  t0=$(date +%s)
  timeout -k 20 "$limit" bash -c "$cmd" > "$out/$name.log" 2>&1
  rc=$?
  printf '%s\t%s\t%s\n' "$name" "$rc" "$(( $(date +%s) - t0 ))" >> "$out/steps.tsv"
  echo "=== $name rc=$rc $(( $(date +%s) - t0 ))s"
done < "$steps"
column -t "$out/steps.tsv" 2>/dev/null || cat "$out/steps.tsv"
for f in "$out"/*.log; do echo "--- $f"; tail -n 6 "$f"; done
