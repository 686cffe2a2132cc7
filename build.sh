#!/usr/bin/env bash
# Build the grand-challenge container image: ./build.sh [--save]
#   --save  also write dist/<image>_<tag>.tar.gz, the gzipped image to upload to grand-challenge
# Image name and tag: SPIDER_IMAGE (default spider-segment), SPIDER_TAG (default: git short hash).
set -euo pipefail
cd "$(dirname "$0")"

save=0
for arg in "$@"; do
    case "$arg" in
        --save) save=1 ;;
        -h | --help) sed -n '2,4s/^# \{0,1\}//p' "$0"; exit 0 ;;
        *) echo "build.sh: unknown argument $arg (try --help)" >&2; exit 2 ;;
    esac
done

image="${SPIDER_IMAGE:-spider-segment}"
tag="${SPIDER_TAG:-$(git rev-parse --short HEAD 2>/dev/null || echo latest)}"
for model in algorithm/resources/models/*/; do
    if [[ ! -f "$model/config.json" || ! -f "$model/model.onnx" ]]; then
        echo "build.sh: no model in $model (config.json, model.onnx): run ./export.sh RUN_DIR $model first" >&2
        exit 1
    fi
    if ! compgen -G "$model/*.engine" >/dev/null; then
        echo "build.sh: note: no TensorRT engine in $model: the container will run ONNX Runtime there (README: building the TensorRT engine)"
    fi
done

docker build --platform linux/amd64 --tag "$image:$tag" --tag "$image:latest" .
echo "built $image:$tag"

if ((save)); then
    mkdir -p dist
    out="dist/${image}_${tag}.tar.gz"
    docker save "$image:$tag" | gzip -c >"$out"
    echo "wrote $out ($(du -h "$out" | cut -f1)): upload it as a new container image of the algorithm on grand-challenge"
fi
