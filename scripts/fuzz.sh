#!/usr/bin/env bash
# fuzz.sh -- run every libFuzzer target in a build's bin folder for a while.
# Usage: scripts/fuzz.sh BIN_DIR SECONDS
#
# Each fuzz_* binary gets a corpus in <build>/corpus/<name> (the build folder
# is the parent of BIN_DIR, ignored by git), seeded by the target itself when
# it honours PS_FUZZ_SEED_DIR, and crash artifacts in <build>/artifacts/.
# Prints one summary line per target; exits nonzero if any target crashed,
# leaked, timed out or failed to run.
set -uo pipefail

if [ $# -ne 2 ] || ! [[ $2 =~ ^[0-9]+$ ]]; then
  echo "usage: $0 BIN_DIR SECONDS" >&2
  exit 2
fi
bin_dir=$1
seconds=$2
build_dir=$(cd "$bin_dir/.." && pwd)
shopt -s nullglob
targets=("$bin_dir"/fuzz_*)
if [ ${#targets[@]} -eq 0 ]; then
  echo "fuzz.sh: no fuzz_* binaries in $bin_dir (build with -DPS_FUZZ=ON and clang)" >&2
  exit 1
fi

stat_of() { # stat_of LOG NAME -> the value of libFuzzer's stat::NAME, or "?"
  local v
  v=$(grep -Eo "stat::$2: *[0-9]+" "$1" | tail -1 | grep -Eo '[0-9]+$')
  echo "${v:-?}"
}

failed=0
for bin in "${targets[@]}"; do
  [ -x "$bin" ] || continue
  name=$(basename "$bin")
  corpus="$build_dir/corpus/$name"
  artifacts="$build_dir/artifacts/$name"
  log="$build_dir/fuzz-$name.log"
  mkdir -p "$corpus" "$artifacts"
  start=$(date +%s)
  PS_FUZZ_SEED_DIR="$corpus" "$bin" "$corpus" \
    -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
    -print_final_stats=1 -artifact_prefix="$artifacts/" >"$log" 2>&1
  rc=$?
  elapsed=$(( $(date +%s) - start ))
  crashes=$(find "$artifacts" -type f -newermt "@$start" | wc -l)
  execs=$(stat_of "$log" number_of_executed_units)
  rss=$(stat_of "$log" peak_rss_mb)
  units=$(find "$corpus" -type f | wc -l)
  verdict=ok
  if [ $rc -ne 0 ] || [ "$crashes" -ne 0 ]; then
    verdict=FAIL
    failed=1
  fi
  echo "fuzz $name: $verdict rc=$rc execs=$execs seconds=$elapsed crashes=$crashes" \
       "corpus=$units peak_rss_mb=$rss log=$log"
  if [ $verdict = FAIL ]; then
    grep -E "ERROR|SUMMARY|Test unit written" "$log" | head -20 >&2
  fi
done
exit $failed
