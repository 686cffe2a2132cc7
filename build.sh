#!/usr/bin/env bash
# Build the grand-challenge container image: ./build.sh [--cpu] [--save]
#   --cpu   the CPU flavour (ONNX Runtime on the CPU), tagged spider-segment:cpu; buildable with no GPU
#           and no registry: a Debian base made here by debootstrap (once), the wheels downloaded here
#           into build/wheels and installed with --no-index, the build itself without network
#   --save  also write dist/<image>_<tag>.tar.gz, the gzipped image to upload to grand-challenge
# Engine: podman where installed, else docker (SPIDER_ENGINE overrides). Image name: SPIDER_IMAGE
# (default spider-segment); GPU tag: SPIDER_TAG (default: git short hash), also tagged latest.
set -euo pipefail
cd "$(dirname "$0")"
# shellcheck source=scripts/container_engine.sh
. scripts/container_engine.sh

cpu=0 save=0
for arg in "$@"; do
    case "$arg" in
        --cpu) cpu=1 ;;
        --save) save=1 ;;
        -h | --help) sed -n '2,9s/^# \{0,1\}//p' "$0"; exit 0 ;;
        *) echo "build.sh: unknown argument $arg (try --help)" >&2; exit 2 ;;
    esac
done
engine="$(container_engine)"

image="${SPIDER_IMAGE:-spider-segment}"
models=()
for config in algorithm/resources/models/*/config.json; do
    [[ -f "$config" ]] && models+=("$(dirname "$config")")
done
if ((${#models[@]} == 0)); then
    echo "build.sh: no model folder in algorithm/resources/models (config.json, model.onnx): run ./export.sh RUN_DIR first" >&2
    exit 1
fi
for model in "${models[@]}"; do
    if [[ ! -f "$model/model.onnx" ]]; then
        echo "build.sh: $model has a config.json but no model.onnx: run ./export.sh RUN_DIR $model" >&2
        exit 1
    fi
    if ((!cpu)) && ! compgen -G "$model/*.engine" >/dev/null; then
        echo "build.sh: note: no TensorRT engine in $model: the container will run ONNX Runtime (docs: building the TensorRT engine)"
    fi
done

mkdir -p build/wheels  # bound into the build; the GPU flavour installs from PyPI and leaves it unused
build_args=()
if ((cpu)); then
    tags=("$image:cpu")
    # the base's Python (Debian 12: 3.11) decides which wheels fit
    base="${SPIDER_CPU_BASE:-localhost/spider-base:bookworm}"
    runtime="onnxruntime==1.32.0"
    if ! "$engine" image inspect "$base" >/dev/null 2>&1; then
        echo "making the base image $base with debootstrap (once; about a minute)"
        command -v debootstrap >/dev/null || { echo "build.sh: debootstrap is not installed (apt-get install debootstrap)" >&2; exit 1; }
        rootfs="$(mktemp -d)"
        debootstrap --variant=minbase --include=python3,python3-venv bookworm "$rootfs" >/dev/null
        tar -C "$rootfs" -c . | "$engine" import - "$base" >/dev/null
        rm -rf "$rootfs"
    fi
    if [[ -f .venv/bin/activate && -z "${VIRTUAL_ENV:-}" ]]; then
        # shellcheck disable=SC1091
        . .venv/bin/activate
    fi
    python -m pip download -q --only-binary=:all: --python-version 3.11 --implementation cp \
        --platform manylinux_2_28_x86_64 --platform manylinux2014_x86_64 \
        -d build/wheels -r requirements-image.txt "$runtime"
    build_args=(--network none --build-arg "BASE_IMAGE=$base" --build-arg "RUNTIME_PACKAGES=$runtime"
        --build-arg "RUNTIME_CHECK=import onnxruntime" --build-arg "PIP_SOURCE=--no-index --find-links /wheels")
else
    tags=("$image:${SPIDER_TAG:-$(git rev-parse --short HEAD 2>/dev/null || echo latest)}" "$image:latest")
fi

start=$(date +%s)
"$engine" build --platform linux/amd64 "${build_args[@]}" "${tags[@]/#/--tag=}" .
echo "built ${tags[0]} with $engine in $(($(date +%s) - start)) s ($("$engine" image inspect --format '{{.Size}}' "${tags[0]}" | awk '{printf "%.0f MB", $1 / 1e6}'))"

if ((save)); then
    mkdir -p dist
    out="dist/${tags[0]/:/_}.tar.gz"
    "$engine" save "${tags[0]}" | gzip -c >"$out"
    echo "wrote $out ($(du -h "$out" | cut -f1)): upload it as a new container image of the algorithm on grand-challenge"
fi
