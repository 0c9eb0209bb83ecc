#!/bin/bash
# Binaryen's post-processing of a module cargo built, used by `make build` and the benchmark's
# module variants (mk/bench.mk):
#
#   WASM_FEATURES=... WASM_OPT_FLAGS=... mk/wasm-post.sh IN OUT [EXPORTS]
#
# With EXPORTS (a file: one export name per line, `#` comments; src/adapter/exports.txt),
# wasm-metadce first removes every export not listed, and the code only those reached; a
# listed export missing from the module is an error (Envoy needs every one of them). Then
# wasm-opt $WASM_OPT_FLAGS writes OUT.
set -euo pipefail
in=$1 out=$2 keep=${3:-}
: "${WASM_FEATURES:?}" "${WASM_OPT_FLAGS:?}"

exports() { wasm-dis "$1" | sed -n 's/^ (export "\([^"]*\)".*/\1/p' | sort; }

src=$in
if [ -n "$keep" ]; then
  names=$(sed 's/#.*//' "$keep" | tr -s ' \t' '\n' | sed '/^$/d' | sort -u)
  # wasm-metadce's reachability graph: every listed export is a root.
  graph="$out.graph.json"
  awk 'BEGIN { printf "[" } { printf "%s{\"name\": \"%s\", \"root\": true, \"export\": \"%s\"}",
       sep, $1, $1; sep = ",\n " } END { print "]" }' <<<"$names" >"$graph"
  src="$out.metadce"
  # shellcheck disable=SC2086
  wasm-metadce "$in" --graph-file "$graph" $WASM_FEATURES -o "$src" >/dev/null
  missing=$(comm -23 <(echo "$names") <(exports "$src"))
  if [ -n "$missing" ]; then
    echo "wasm-post: $keep lists exports $in does not have: $(echo $missing)" >&2
    exit 1
  fi
  removed=$(comm -13 <(echo "$names") <(exports "$in"))
  echo "wasm-metadce: $(wc -w <<<"$removed") exports removed: $(echo $removed)"
fi
# shellcheck disable=SC2086
wasm-opt $WASM_OPT_FLAGS -o "$out" "$src"
rm -f "$out.metadce" "$out.graph.json"
