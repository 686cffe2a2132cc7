#!/usr/bin/env bash
# Training throughput of an earlier commit and of this tree, side by side in one run:
#   scripts/throughput_ab.sh BASE_REV [CONFIG] [ROUNDS]     e.g. scripts/throughput_ab.sh 96cce1d train/configs/contrast_ft2.json 2
# Alternates BASE_REV (checked out in a temporary worktree) and this tree, ROUNDS times each, with
# python -m train.throughput --workers 2 --steps 20 (this tree also with --compile; BASE_REV too with
# BASE_COMPILE=1, for a base that has --compile).
set -euo pipefail
cd "$(dirname "$0")/.."
base_rev=${1:?usage: scripts/throughput_ab.sh BASE_REV [CONFIG] [ROUNDS]}
config=${2:-train/configs/contrast_ft2.json}
rounds=${3:-2}
root=$PWD
python=${PYTHON:-$root/.venv/bin/python}
base=$(mktemp -d)
trap 'git worktree remove --force "$base"' EXIT
git worktree add --quiet --detach "$base" "$base_rev"
for ((round = 1; round <= rounds; round++)); do
    echo "== round $round: $base_rev"
    (cd "$base" && PYTHONPATH=$PWD "$python" -m train.throughput --config "$root/$config" --workers 2 --steps 20 ${BASE_COMPILE:+--compile} | grep slices/s)
    echo "== round $round: this tree"
    "$python" -m train.throughput --config "$config" --workers 2 --steps 20 --compile | grep slices/s
done
