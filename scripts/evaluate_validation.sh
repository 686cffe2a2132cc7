#!/usr/bin/env bash
# Segment the validation subset of a SPIDER-layout folder with spider-segment and score it with
# spider-evaluate (class-level and official metrics):
#   scripts/evaluate_validation.sh [DATA_DIR] [OUT_DIR] [extra spider-segment options...]
# Defaults: ../shared/data/spider-t2space and out/validation. Writes OUT_DIR/pred/*.mha,
# OUT_DIR/pred/qc/, OUT_DIR/summary.json and OUT_DIR/cases.csv.
set -euo pipefail
cd "$(dirname "$0")/.."
DATA="${1:-../shared/data/spider-t2space}"
OUT="${2:-out/validation}"
shift $(( $# > 2 ? 2 : $# ))
BIN="${BIN:-.venv/bin}"
rm -rf "$OUT/images" "$OUT/masks"
mkdir -p "$OUT/images" "$OUT/masks"
awk -F, 'NR > 1 && $2 == "validation" {print $1}' "$DATA/overview.csv" | while read -r name; do
    ln -s "$(realpath "$DATA/images/$name.mha")" "$OUT/images/$name.mha"
    ln -s "$(realpath "$DATA/masks/$name.mha")" "$OUT/masks/$name.mha"
done
"$BIN/spider-segment" -i "$OUT/images" -o "$OUT/pred" --qc "$@"
"$BIN/spider-evaluate" "$OUT/masks" "$OUT/pred" --json "$OUT/summary.json" --csv "$OUT/cases.csv"
