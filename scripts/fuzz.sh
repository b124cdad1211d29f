#!/usr/bin/env bash
# Runs the fuzz targets of fuzz/ (cargo-fuzz, libFuzzer) for SECONDS each:
#   scripts/fuzz.sh [SECONDS] [TARGET...]     (default 10 s, every target)
# On the stable toolchain: libFuzzer's sanitizer flags are nightly features,
# which RUSTC_BOOTSTRAP=1 unlocks. Each target starts from fuzz/seeds/<t>
# (inputs taken from the tests) and keeps what it finds in fuzz/corpus/<t>;
# a crash, hang (-timeout) or blow-up (-rss_limit_mb) fails the run and
# leaves its input in fuzz/artifacts/<t>. Prints executions per target.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
secs="${1:-10}"
shift || true
export RUSTC_BOOTSTRAP=1
export CARGO_TARGET_DIR="${FUZZ_TARGET_DIR:-$HOME/.cache/intercloud-fuzz-target}"
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  mapfile -t targets < <(cargo fuzz list)
fi
# Built with the address sanitizer and debug assertions; once for all.
cargo fuzz build --debug-assertions
status=0
for t in "${targets[@]}"; do
  mkdir -p "corpus/$t" "artifacts/$t"
  log=$(mktemp)
  set +e
  cargo fuzz run --debug-assertions "$t" "corpus/$t" "seeds/$t" -- \
    -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -max_len=65536 \
    -artifact_prefix="artifacts/$t/" -print_final_stats=1 >"$log" 2>&1
  rc=$?
  set -e
  runs=$(grep -Eo 'stat::number_of_executed_units: *[0-9]+' "$log" | grep -Eo '[0-9]+$' || echo 0)
  if [ "$rc" -ne 0 ]; then
    echo "== $t: FAILED after $runs executions"
    grep -E 'ERROR|panicked|SUMMARY|Test unit written' "$log" | head -20
    status=1
  else
    echo "== $t: $runs executions in ${secs}s, no crash, hang or blow-up"
  fi
  rm -f "$log"
done
exit "$status"
