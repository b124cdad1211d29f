#!/usr/bin/env bash
# Runs every test of intercloud on a fresh Debian machine: installs what the
# tests need (Debian packages, Rust components, cargo-fuzz), then checks
# formatting, clippy, and runs the unit and integration tests (including
# interop with the stock slixmpp client and both stock servers people run,
# Prosody and ejabberd), then each fuzz target for 10 s.
set -euo pipefail
cd "$(dirname "$0")/.."

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

need_apt=()
/usr/bin/python3 -c 'import slixmpp' 2>/dev/null || need_apt+=(python3-slixmpp)
[ -x /usr/bin/prosody ] || need_apt+=(prosody)
[ -x /usr/sbin/ejabberdctl ] || need_apt+=(ejabberd)
[ -x /usr/sbin/dnsmasq ] || need_apt+=(dnsmasq-base)
command -v cc >/dev/null || need_apt+=(gcc)
command -v setpriv >/dev/null || need_apt+=(util-linux)
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "== installing ${need_apt[*]}"
  as_root apt-get update -q
  # Keep Debian from starting its own Prosody and ejabberd services: the
  # interop tests run ones of their own on loopback addresses.
  started_policy=
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' | as_root tee /usr/sbin/policy-rc.d >/dev/null
    as_root chmod +x /usr/sbin/policy-rc.d
    started_policy=1
  fi
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${need_apt[@]}"
  if [ -n "$started_policy" ]; then as_root rm -f /usr/sbin/policy-rc.d; fi
fi
# Interop tests must fail, never silently skip, when their peer is missing.
/usr/bin/python3 -c 'import slixmpp'
[ -x /usr/bin/prosody ]
[ -x /usr/sbin/ejabberdctl ]
[ -x /usr/sbin/dnsmasq ]

# kubernetes-validate (PyPI) checks the Kubernetes manifests offline against
# the official schemas (tests/manifests.rs); kept beside the cargo cache.
export INTERCLOUD_PYTHONPATH="${INTERCLOUD_PYTHONPATH:-$HOME/.cache/intercloud-py}"
if ! PYTHONPATH="$INTERCLOUD_PYTHONPATH" python3 -c 'import kubernetes_validate' 2>/dev/null; then
  echo "== installing kubernetes-validate into $INTERCLOUD_PYTHONPATH"
  python3 -m pip --version >/dev/null 2>&1 || { as_root apt-get update -q; as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q python3-pip; }
  python3 -m pip install --quiet --disable-pip-version-check --target "$INTERCLOUD_PYTHONPATH" 'kubernetes-validate==1.37.0' \
    || python3 -m pip install --quiet --disable-pip-version-check --break-system-packages --target "$INTERCLOUD_PYTHONPATH" 'kubernetes-validate==1.37.0'
fi
PYTHONPATH="$INTERCLOUD_PYTHONPATH" python3 -c 'import kubernetes_validate'

cargo fmt --version >/dev/null 2>&1 || rustup component add rustfmt
cargo clippy --version >/dev/null 2>&1 || rustup component add clippy

# One shared target dir, so repeated runs rebuild only what changed.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/intercloud-target}"

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy (the production build, and the tests' build with test-only faults)"
cargo clippy --workspace --all-targets -- -D warnings
cargo clippy --workspace --all-targets --features intercloud/test-faults -- -D warnings
echo "== the production build refuses test-only faults"
cargo test -p intercloud --lib -- test_only_faults
echo "== cargo test"
log=$(mktemp)
trap 'rm -f "$log"' EXIT
set +e
cargo test --workspace --features intercloud/test-faults -- --test-threads=2 2>&1 | tee "$log"
rc=${PIPESTATUS[0]}
set -e
passed=$(grep -Eo '^test result: .* ([0-9]+) passed' "$log" | grep -Eo '[0-9]+ passed' | awk '{s+=$1} END {print s+0}')
failed=$(grep -Eo '[0-9]+ failed;' "$log" | awk '{s+=$1} END {print s+0}')
echo
echo "all tests: $passed passed, $failed failed"
[ "$rc" -eq 0 ] || exit "$rc"

# Every parser a peer feeds, fuzzed briefly (10 s each, a minute in all), so
# that a regression surfaces; scripts/fuzz.sh SECONDS runs them longer.
echo "== fuzz targets (scripts/fuzz.sh 10)"
bash scripts/fuzz.sh 10
