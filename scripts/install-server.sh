#!/bin/sh
# Installs the model server into the image's Python, in two layers:
#   install-server.sh requirements [--cpu-only | --keep-base-torch]
#       the pinned requirements (/src/requirements.txt, from serving/pyproject.toml; for
#       --keep-base-torch /src/requirements-without-torch.txt)
#       --cpu-only        then removes the CUDA libraries PyPI's torch brings that CPU inference never
#                         loads (in the same layer, so the image is smaller by them), and checks torch
#       --keep-base-torch leaves torch (and the Neuron packages) as the base image has them: they
#                         become constraints, so nothing from PyPI replaces them
#   install-server.sh package
#       the eks-neuron-serve distribution (/src/serving) itself, a plain pip install without its
#       dependencies (the layer before holds them, pinned); pip compiles its bytecode, so a read-only
#       root never needs to write it
# From a wheelhouse where the build mounts one (WHEELS_DIR), else from the index.
set -eu
what=${1:-}
mode=${2:-}
if [ -f /run/secrets/pipcert ]; then
  # TLS to PyPI may be intercepted where the image is built: the host's CA bundle, as a build secret.
  export PIP_CERT=/run/secrets/pipcert
fi
if [ -n "${WHEELS_DIR:-}" ] && ls "$WHEELS_DIR"/*.whl >/dev/null 2>&1; then
  pip_install() { pip install --disable-pip-version-check --no-cache-dir --no-index --find-links "$WHEELS_DIR" "$@"; }
else
  pip_install() { pip install --disable-pip-version-check --cache-dir "${PIP_CACHE_DIR:-/root/.cache/pip}" "$@"; }
fi

case "$what $mode" in
  "requirements --keep-base-torch")
    pip freeze | grep -Ei '^(torch|torch-neuronx|torchvision|neuronx-cc|libneuronxla)==' >/tmp/constraints.txt
    pip_install -c /tmp/constraints.txt -r /src/requirements-without-torch.txt
    rm /tmp/constraints.txt
    ;;
  "requirements " | "requirements --cpu-only")
    pip_install -r /src/requirements.txt
    ;;
  "package ")
    pip_install --no-deps /src/serving
    eks-neuron-serve --help >/dev/null
    exit 0
    ;;
  *)
    echo "install-server: usage: install-server.sh requirements [--cpu-only | --keep-base-torch] | package" >&2
    exit 2
    ;;
esac

if [ "$mode" = "--cpu-only" ]; then
  site=$(python3 -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
  rm -rf "$site"/triton "$site"/nvidia/cusolver "$site"/nvidia/cuda_nvrtc "$site"/nvidia/nvtx \
    "$site"/nvidia/cudnn/lib/libcudnn_engines* "$site"/nvidia/cublas/lib/libnvblas* \
    "$site"/nvidia/cufft/lib/libcufftw*
  python3 -c 'import torch; assert torch.ones(2).sum().item() == 2'
fi
