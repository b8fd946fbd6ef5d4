#!/usr/bin/env bash
# The Neuron path end to end on one Neuron instance: compile, serve, load at concurrency 1 and 2,
# neuron-monitor's figures, one report (bench/serving/neuron_smoke.py; --help for its options). Run it
# where the Neuron SDK 2.31 is: the server's neuron image, or a Neuron Deep Learning AMI's venv.
set -euo pipefail
repo_root=$(cd "$(dirname "$0")/.." && pwd)
export PYTHONPATH="$repo_root/bench/serving:$repo_root:$repo_root/tools${PYTHONPATH:+:$PYTHONPATH}"
exec "${PYTHON:-python3}" "$repo_root/bench/serving/neuron_smoke.py" "$@"
