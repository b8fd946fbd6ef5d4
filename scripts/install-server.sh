#!/bin/sh
# Installs the server (serving/, already in the working directory) into the image's Python and the
# eks-neuron-serve command beside it. Only the server: the project's other package (nchart, the chart
# tooling) and its dependencies stay out of the image.
set -eu
site=$(python3 -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
scripts=$(python3 -c 'import sysconfig; print(sysconfig.get_paths()["scripts"])')
python=$(python3 -c 'import sys; print(sys.executable)')
rm -rf "$site/serving"
cp -r serving "$site/serving"
find "$site/serving" -name '__pycache__' -prune -exec rm -rf {} +
# Bytecode now, so a read-only root never needs to write it.
"$python" -m compileall -q "$site/serving"
printf '#!%s\nfrom serving.cli import main\n\nmain()\n' "$python" > "$scripts/eks-neuron-serve"
chmod 0755 "$scripts/eks-neuron-serve"
"$scripts/eks-neuron-serve" --help >/dev/null
