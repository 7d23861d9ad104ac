#!/usr/bin/env bash
# Load-time cost of DNSSEC signing (src/dnssec): `gslbd check` (the same builder as serve and
# reload) on the lab's yourcompany.com zone and on generated zones of 10k and 100k records
# (benches/compare/gen_zone.py), each unsigned and signed with an ECDSA P-256 CSK and with an
# Ed25519 CSK. Prints wall seconds of the whole check (read, compile, sign).
#
# Usage: benches/dnssec-sign.sh [path/to/gslbd]   (default target/release/gslbd)
# No network: files only.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
bin=${1:-$here/../target/release/gslbd}
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT

zone_cfg() { # name file keys...
  local name=$1 file=$2; shift 2
  printf '[[zone]]\nname = "%s"\nfile = "%s"\n' "$name" "$file"
  if [ $# -gt 0 ]; then
    local list; list=$(printf '"%s", ' "$@"); list=${list%, }
    printf 'dnssec = { keys = [%s] }\n' "$list"
  fi
  printf '\n[[listener]]\nname = "all"\naddresses = ["127.0.28.1:0"]\nzones = ["*"]\n'
}

timed() { # config
  local t0 t1
  t0=$(date +%s.%N)
  "$bin" check --config "$1" >/dev/null 2>&1 || { echo "check failed: $1" >&2; "$bin" check --config "$1" >&2; exit 1; }
  t1=$(date +%s.%N)
  echo "$t1 - $t0" | bc
}

cp "$here"/../zones/yourcompany.com*.zone "$dir/"; mv "$dir/yourcompany.com.zone" "$dir/lab.zone"
python3 "$here/compare/gen_zone.py" 10000 "$dir/z10k.zone" "$dir/q10k" 10 >/dev/null
python3 "$here/compare/gen_zone.py" 100000 "$dir/z100k.zone" "$dir/q100k" 10 >/dev/null

printf '%-18s %8s %10s %10s %10s\n' zone records unsigned "ecdsa-13" "ed25519-15"
for spec in "lab:yourcompany.com.:lab.zone" "10k:bench.example.:z10k.zone" "100k:bench.example.:z100k.zone"; do
  IFS=: read -r label name file <<<"$spec"
  k13=$("$bin" dnssec keygen --zone "$name" --algorithm 13 --out "$dir" 2>&1 >/dev/null | sed 's/^wrote //; s/\.key and.*//')
  k15=$("$bin" dnssec keygen --zone "$name" --algorithm 15 --out "$dir" 2>&1 >/dev/null | sed 's/^wrote //; s/\.key and.*//')
  zone_cfg "$name" "$file" > "$dir/plain.toml"
  zone_cfg "$name" "$file" "$k13" > "$dir/k13.toml"
  zone_cfg "$name" "$file" "$k15" > "$dir/k15.toml"
  records=$(grep -cv '^\s*\($\|;\|\$\)' "$dir/$file")
  printf '%-18s %8s %10.2f %10.2f %10.2f\n' "$label" "$records" \
    "$(timed "$dir/plain.toml")" "$(timed "$dir/k13.toml")" "$(timed "$dir/k15.toml")"
done
