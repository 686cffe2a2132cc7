#!/usr/bin/env bash
# Run the sample cases in test/cases and check each output against its expected output (same grid,
# same label set, Dice >= 0.99 per structure) and its truth (class Dice >= the case's floors.json).
#   ./test.sh [--container] [CASE_DIR ...]  the built image, one container start per case, under
#             grand-challenge's rules: no network, read-only root and /input, writable /output, empty
#             tmpfs /tmp, non-root user, a memory limit; the GPU if present
#   ./test.sh --local [CASE_DIR ...]  the same entry point, python -m algorithm -i INPUT -o OUTPUT, without
#             a container, on the image's backends (ONNX Runtime: the image holds no OpenVINO)
# Engine: podman where installed, else docker (SPIDER_ENGINE overrides). Image: SPIDER_IMAGE (default
# spider-segment:latest where a GPU is visible, else spider-segment:cpu, made by ./build.sh --cpu);
# memory limit: SPIDER_MEMORY (default 15g). SPIDER_KEEP_OUTPUT=DIR keeps each output and log in DIR/<mode>/.
set -euo pipefail
cd "$(dirname "$0")"
# shellcheck source=scripts/container_engine.sh
. scripts/container_engine.sh

mode=container
cases=()
for arg in "$@"; do
    case "$arg" in
        --local) mode=local ;;
        --container) mode=container ;;
        -h | --help) sed -n '2,11s/^# \{0,1\}//p' "$0"; exit 0 ;;
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

run_args=(--rm --network none --read-only --tmpfs "/tmp:rw,exec,size=2g" --user 10001:10001
    --memory "${SPIDER_MEMORY:-15g}" --memory-swap "${SPIDER_MEMORY:-15g}" --shm-size 128m)
image="${SPIDER_IMAGE:-spider-segment:cpu}"
if [[ "$mode" == container ]]; then
    engine="$(container_engine)"
    if command -v nvidia-smi >/dev/null && nvidia-smi -L >/dev/null 2>&1; then
        run_args+=(--gpus all)
        image="${SPIDER_IMAGE:-spider-segment:latest}"
    fi
    if ! "$engine" image inspect "$image" >/dev/null 2>&1; then
        echo "test.sh: no image $image in $engine: build it with ./build.sh (--cpu without a GPU)" >&2
        exit 1
    fi
    echo "image $image ($engine)"
fi

work="$(mktemp -d)"
cleanup() {
    # outputs written by the container's user may not be removable by this one
    rm -rf "$work" 2>/dev/null || "$engine" run --rm --user 0 -v "$work:/w" --entrypoint sh "$image" -c 'rm -rf /w/*' >/dev/null 2>&1 || true
    rm -rf "$work" 2>/dev/null || true
}
trap cleanup EXIT

passed=0 failed=0
# the expected outputs must have been made with the model the entry point runs (here: the one in this tree)
if line="$(python -m spider_tools.samples check-model --cases "$(dirname "${cases[0]}")")"; then
    echo "$line"
else
    echo "$line"
    failed=$((failed + 1))
fi
for case_dir in "${cases[@]}"; do
    name="$(basename "$case_dir")"
    out="$work/$name"
    mkdir -p "$out" && chmod 777 "$out"
    start=$(date +%s%N)
    status=0
    if [[ "$mode" == container ]]; then
        "$engine" run "${run_args[@]}" -v "$(realpath "$case_dir/input"):/input:ro" -v "$out:/output" "$image" >"$work/$name.log" 2>&1 || status=$?
    else
        python -m algorithm -i "$case_dir/input" -o "$out" --backend onnxruntime >"$work/$name.log" 2>&1 || status=$?
    fi
    seconds=$(( ($(date +%s%N) - start) / 1000000 ))
    seconds="$((seconds / 1000)).$(printf '%03d' $((seconds % 1000)))"
    if ((status != 0)); then
        echo "FAIL $name: entry point exited with $status (${seconds} s); last lines of its log:"
        tail -n 5 "$work/$name.log" | sed 's/^/    /'
        failed=$((failed + 1))
    elif line="$(python -m spider_tools.samples compare "$case_dir" "$out")"; then
        echo "$line (${seconds} s)"
        passed=$((passed + 1))
    else
        echo "$line (${seconds} s)"
        failed=$((failed + 1))
    fi
    if [[ -n "${SPIDER_KEEP_OUTPUT:-}" ]]; then
        mkdir -p "$SPIDER_KEEP_OUTPUT/$mode" && cp -r "$out" "$work/$name.log" "$SPIDER_KEEP_OUTPUT/$mode/"
    fi
done
echo "$mode: $passed passed, $failed failed"
((failed == 0 && passed > 0))
