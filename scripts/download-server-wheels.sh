#!/usr/bin/env bash
# Downloads the model server's requirements (serving/pyproject.toml's dependencies, and its build
# backend: the image builds the server package offline), and the pod usage exporter's
# (pod-usage-exporter/pyproject.toml), as wheels into a
# wheelhouse, once: files already there are not downloaded again. The host's virtualenv and the server
# image both install from it, so torch (0.8 GB) and the CUDA libraries it brings (2.7 GB) cross the
# network once per machine. (pip's own cache does not help where the index's answers are not cacheable.)
#
#   scripts/download-server-wheels.sh DEST [PYTHON_VERSION]   (default: the running python's)
set -euo pipefail

dest=$1
python_version=${2:-}
repo_root=$(cd "$(dirname "$0")/.." && pwd)
python=${PYTHON:-$repo_root/.venv/bin/python}
[[ -x "$python" ]] || python=python3
mkdir -p "$dest"
# Both variants: the server's dependencies, and the Neuron image's library pins (the neuron-standin
# image); and the build backend.
requirements=$(mktemp)
neuron_requirements=$(mktemp)
build_requirements=$(mktemp)
exporter_requirements=$(mktemp)
trap 'rm -f "$requirements" "$neuron_requirements" "$build_requirements" "$exporter_requirements"' EXIT
"$python" "$repo_root/scripts/serving-requirements.py" >"$requirements"
"$python" "$repo_root/scripts/serving-requirements.py" --variant neuron >"$neuron_requirements"
"$python" "$repo_root/scripts/serving-requirements.py" --build-system >"$build_requirements"
"$python" -c 'import sys, tomllib; print("\n".join(tomllib.load(open(sys.argv[1], "rb"))["project"]["dependencies"]))' \
  "$repo_root/pod-usage-exporter/pyproject.toml" >"$exporter_requirements"
target=()
if [[ -n "$python_version" ]]; then
  # Wheels for another Python (the image's), for Linux x86-64.
  target=(--python-version "$python_version" --implementation cp --only-binary=:all:
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64
    --platform linux_x86_64)
fi
started=$SECONDS
before=$(find "$dest" -name '*.whl' | wc -l)
for list in "$requirements" "$neuron_requirements" "$build_requirements" "$exporter_requirements"; do
  "$python" -m pip download --quiet --disable-pip-version-check --dest "$dest" --find-links "$dest" "${target[@]}" -r "$list"
done
after=$(find "$dest" -name '*.whl' | wc -l)
echo "server wheels in $dest: $after ($((after - before)) new) in $((SECONDS - started))s" >&2
