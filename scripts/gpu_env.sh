# shellcheck shell=bash
# Sourced by the GPU scripts: make SimpleITK and cc3d importable on a machine that lacks them,
# from the wheels carried in .whl/ (see the device notes).
if ! python3 -c "import SimpleITK, cc3d" 2>/dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
fi
export PYTHONPATH="/tmp/site:$PWD${PYTHONPATH:+:$PYTHONPATH}"
