#!/bin/bash
# The release module of another commit, as that commit's `make build` shipped it, for the
# before/after benchmark (make bench-before-after, mk/bench.mk):
#
#   mk/base-module.sh COMMIT OUT
#
# Builds COMMIT in a temporary detached git worktree under target/bench/, copies its release
# wasm to OUT, and removes the worktree (also on failure). OUT is kept: a second run with the
# same commit reuses it. Beside OUT, OUT.commit holds the full commit hash it was built from.
#
# An older commit's Cargo.toml may have no [workspace] table; nested under this checkout (whose
# Cargo.toml is a workspace), cargo would then refuse to build it, so the copy gets an empty
# [workspace] table (the manifest marks itself as its own workspace root; the code, the lock
# file and the build commands are the commit's).
set -euo pipefail
rev=$1 out=$2
sha=$(git rev-parse --verify "$rev^{commit}")
if [ -f "$out" ] && [ "$(cat "$out.commit" 2>/dev/null)" = "$sha" ]; then
  ls -l "$out" | awk -v c="${sha:0:7}" '{print "base module " $NF " (" $5 " bytes, commit " c ", kept)"}'
  exit 0
fi
dir=target/bench/base-src-${sha:0:12}
cleanup() { git worktree remove --force "$dir" 2>/dev/null || rm -rf "$dir"; git worktree prune; }
trap cleanup EXIT
cleanup
mkdir -p "$(dirname "$out")" target/bench
git worktree add --detach "$dir" "$sha" >/dev/null
grep -q '^\[workspace\]' "$dir/Cargo.toml" || printf '\n[workspace]\n' >>"$dir/Cargo.toml"
echo "building commit ${sha:0:7} in $dir (its own make build)"
make -C "$dir" build
cp "$dir/target/wasm32-wasip1/release/ai_circuit_breaker.wasm" "$out.tmp"
mv "$out.tmp" "$out"
echo "$sha" >"$out.commit"
ls -l "$out" | awk -v c="${sha:0:7}" '{print "base module " $NF " (" $5 " bytes, commit " c ")"}'
