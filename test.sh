#!/usr/bin/env bash
# Run the sample cases in test/cases and check each output against its expected output (same grid,
# same label set, Dice >= 0.99 per structure) and its truth (class Dice >= the case's floors.json).
#   ./test.sh [CASE_DIR ...]          the built image, the way grand-challenge runs it: no network,
#                                     GPU if present, /input read-only, empty tmpfs /tmp, memory limit
#   ./test.sh --local [CASE_DIR ...]  the same entry point, python -m algorithm -i INPUT -o OUTPUT, without Docker,
#                                     on the image's backends (ONNX Runtime: the image holds no OpenVINO)
# Image: SPIDER_IMAGE (default spider-segment:latest); memory limit: SPIDER_MEMORY (default 15g).
set -euo pipefail
cd "$(dirname "$0")"

mode=docker
cases=()
for arg in "$@"; do
    case "$arg" in
        --local) mode=local ;;
        -h | --help) sed -n '2,8s/^# \{0,1\}//p' "$0"; exit 0 ;;
        -*) echo "test.sh: unknown option $arg (try --help)" >&2; exit 2 ;;
        *) cases+=("${arg%/}") ;;
    esac
done
if ((${#cases[@]} == 0)); then
    for dir in test/cases/*/; do cases+=("${dir%/}"); done
fi
if [[ -f .venv/bin/activate && -z "${VIRTUAL_ENV:-}" ]]; then
    # shellcheck disable=SC1091
    . .venv/bin/activate
fi

image="${SPIDER_IMAGE:-spider-segment:latest}"
docker_args=(--rm --network none --memory "${SPIDER_MEMORY:-15g}" --memory-swap "${SPIDER_MEMORY:-15g}"
    --shm-size 128m --tmpfs "/tmp:rw,exec,size=2g")
if [[ "$mode" == docker ]] && command -v nvidia-smi >/dev/null && nvidia-smi -L >/dev/null 2>&1; then
    docker_args+=(--gpus all)
fi

work="$(mktemp -d)"
cleanup() {
    # outputs written by the container's user may not be removable by this one
    rm -rf "$work" 2>/dev/null || docker run --rm --user 0 -v "$work:/w" --entrypoint sh "$image" -c 'rm -rf /w/*' >/dev/null 2>&1 || true
    rm -rf "$work" 2>/dev/null || true
}
trap cleanup EXIT

passed=0 failed=0
if [[ "$mode" == local ]]; then
    # the expected outputs must have been made with the model the entry point runs here
    if line="$(python -m algorithm.samples check-model --cases "$(dirname "${cases[0]}")")"; then
        echo "$line"
    else
        echo "$line"
        failed=$((failed + 1))
    fi
fi
for case_dir in "${cases[@]}"; do
    name="$(basename "$case_dir")"
    out="$work/$name"
    mkdir -p "$out" && chmod 777 "$out"
    start=$(date +%s%N)
    status=0
    if [[ "$mode" == docker ]]; then
        docker run "${docker_args[@]}" -v "$(realpath "$case_dir/input"):/input:ro" -v "$out:/output" "$image" >"$work/$name.log" 2>&1 || status=$?
    else
        python -m algorithm -i "$case_dir/input" -o "$out" --backend onnxruntime >"$work/$name.log" 2>&1 || status=$?
    fi
    seconds=$(( ($(date +%s%N) - start) / 1000000 ))
    seconds="$((seconds / 1000)).$(printf '%03d' $((seconds % 1000)))"
    if ((status != 0)); then
        echo "FAIL $name: entry point exited with $status (${seconds} s); last lines of its log:"
        tail -n 5 "$work/$name.log" | sed 's/^/    /'
        failed=$((failed + 1))
    elif line="$(python -m algorithm.samples compare "$case_dir" "$out")"; then
        echo "$line (${seconds} s)"
        passed=$((passed + 1))
    else
        echo "$line (${seconds} s)"
        failed=$((failed + 1))
    fi
done
echo "$mode: $passed passed, $failed failed"
((failed == 0 && passed > 0))
