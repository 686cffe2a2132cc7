# shellcheck shell=bash
# Sourced by build.sh and test.sh. container_engine prints the container engine to use: $SPIDER_ENGINE
# if set, else podman where it is installed, else docker where its daemon answers; else it says why
# on stderr and returns 1.
container_engine() {
    if [[ -n "${SPIDER_ENGINE:-}" ]]; then
        echo "$SPIDER_ENGINE"
    elif command -v podman >/dev/null; then
        echo podman
    elif command -v docker >/dev/null && docker info >/dev/null 2>&1; then
        echo docker
    else
        echo "no container engine: install podman (Debian: apt-get install podman runc) or start Docker" >&2
        return 1
    fi
}
