#!/usr/bin/env bash
# Runs the fuzz targets under AFL++ (cargo-afl), bounded in executions and in time.
#
#   tests/fuzz/fuzz.sh smoke   every seed and kept crash replayed, then a few thousand
#                              executions per target (make fuzz-smoke, part of make test)
#   tests/fuzz/fuzz.sh full    FUZZ_EXECS executions per target, each run stopped after
#                              FUZZ_SECONDS whatever the count (make fuzz)
#
# Environment (set by mk/fuzz.mk): CARGO_AFL (the cargo-afl binary), XDG_DATA_HOME (where
# cargo-afl built AFL++), FUZZ_BIN (the instrumented driver), FUZZ_OUT (AFL++'s output
# directories), FUZZ_TARGETS (default: every target the driver lists), FUZZ_EXECS,
# FUZZ_SECONDS, FUZZ_SMOKE_EXECS.
#
# Inputs: corpus/TARGET/ (seeds, committed) and regressions/TARGET/ (every crash input ever
# found, committed; each is also a unit test in src/tests/fuzz_found.rs). A crash or a hang
# fails the run: its input is copied to FUZZ_OUT/crashes/TARGET/ and the command that replays
# it is printed. The summary (executions, edges, crashes, hangs per target) is written to
# FUZZ_OUT/summary-MODE.md.
set -euo pipefail

mode=${1:?usage: fuzz.sh smoke|full}
here="$(cd "$(dirname "$0")" && pwd)"
: "${CARGO_AFL:?}" "${FUZZ_BIN:?}" "${FUZZ_OUT:?}"
execs=${FUZZ_EXECS:-1000000}
seconds=${FUZZ_SECONDS:-900}
case "$mode" in
  smoke) execs=${FUZZ_SMOKE_EXECS:-3000}; seconds=20 ;;
  full) ;;
  *) echo "usage: fuzz.sh smoke|full" >&2; exit 2 ;;
esac
targets=${FUZZ_TARGETS:-$("$FUZZ_BIN" --list)}

# AFL++ on a shared machine: no CPU binding (other runs may hold both cores), no UI, no
# complaints about the CPU governor or about core dumps going to a handler (crashes are
# still caught: the driver aborts on a panic).
export AFL_NO_UI=1 AFL_NO_AFFINITY=1 AFL_SKIP_CPUFREQ=1 AFL_I_DONT_CARE_ABOUT_MISSING_CRASHES=1

summary="$FUZZ_OUT/summary-$mode.md"
mkdir -p "$FUZZ_OUT"
{
  echo "| target | executions | time (s) | execs/s | edges: seeds | edges: found | of | crashes | hangs |"
  echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
} > "$summary"
failed=0
for t in $targets; do
  [ -d "$here/corpus/$t" ] || { echo "fuzz: target $t has no seeds in tests/fuzz/corpus/$t" >&2; exit 1; }
  # The seeds and the kept crashes, checked one by one first so a failure names its file.
  inputs=("$here/corpus/$t")
  [ -d "$here/regressions/$t" ] && inputs+=("$here/regressions/$t")
  "$FUZZ_BIN" "$t" "${inputs[@]}" > "$FUZZ_OUT/$t-replay.log" 2>&1 || {
    tail -n 30 "$FUZZ_OUT/$t-replay.log" >&2
    echo "fuzz: $t fails on a committed input (the last one named above)" >&2; exit 1; }

  in="$FUZZ_OUT/in/$t" out="$FUZZ_OUT/out/$t"
  rm -rf "$in" "$out"
  mkdir -p "$in" "$FUZZ_OUT/out"
  cp "$here/corpus/$t"/* "$in"/
  [ -d "$here/regressions/$t" ] && cp "$here/regressions/$t"/* "$in"/
  dict=()
  [ -f "$here/dict/$t.dict" ] && dict=(-x "$here/dict/$t.dict")
  start=$(date +%s)
  # -E: stop after that many executions; -V: and after that many seconds in any case.
  # -t 1000: an input running over 1 s is a hang; -m 512: over 512 MiB is a crash.
  # The outer timeout only guards against AFL++ itself not stopping.
  timeout --signal=INT --kill-after=30 $((seconds + 120)) \
    "$CARGO_AFL" afl fuzz -i "$in" -o "$out" -E "$execs" -V "$seconds" -t 1000 -m 512 "${dict[@]}" \
      -- "$FUZZ_BIN" "$t" > "$FUZZ_OUT/$t-$mode.log" 2>&1 || {
    echo "fuzz: afl-fuzz failed for $t; see $FUZZ_OUT/$t-$mode.log:" >&2
    tail -n 20 "$FUZZ_OUT/$t-$mode.log" >&2; exit 1; }
  took=$(( $(date +%s) - start ))
  stats="$out/default/fuzzer_stats"
  get() { awk -F' *: *' -v k="$1" '$1 == k {print $2}' "$stats"; }
  crashes=$(find "$out/default/crashes" -type f -name 'id*' | wc -l)
  hangs=$(find "$out/default/hangs" -type f -name 'id*' | wc -l)
  done_=$(get execs_done)
  # Coverage of the seeds alone, for comparison: what the run added is what fuzzing found.
  seeds=$("$CARGO_AFL" afl showmap -C -i "$here/corpus/$t" -o "$FUZZ_OUT/$t-seeds.map" -t 5000 \
    -- "$FUZZ_BIN" "$t" 2>&1 | grep -aoE 'Captured [0-9]+' | grep -oE '[0-9]+' || echo '?')
  echo "| $t | $done_ | $took | $(( done_ / (took > 0 ? took : 1) )) | $seeds | $(get edges_found) | $(get total_edges) | $crashes | $hangs |" >> "$summary"
  echo "fuzz: $t: $done_ executions in ${took}s, edges $seeds from the seeds, $(get edges_found)/$(get total_edges) found, $crashes crashes, $hangs hangs"
  if [ "$crashes" -gt 0 ] || [ "$hangs" -gt 0 ]; then
    failed=1
    mkdir -p "$FUZZ_OUT/crashes/$t"
    find "$out/default/crashes" "$out/default/hangs" -type f -name 'id*' -exec cp {} "$FUZZ_OUT/crashes/$t/" \;
    echo "fuzz: $t: inputs in $FUZZ_OUT/crashes/$t; replay: $FUZZ_BIN $t $FUZZ_OUT/crashes/$t" >&2
  fi
  if [ "$mode" = full ] && [ "$done_" -lt "$execs" ]; then
    echo "fuzz: $t stopped at the ${seconds}s limit after $done_ of $execs executions" >&2
  fi
done
cat "$summary"
exit $failed
