#!/usr/bin/env bash
# Install the peers (anomalib) into their own virtual environment, never into nextpatch's.
#
#   bash benchmarks/peers/setup.sh            # venv in benchmarks/peers/.venv (or $PEERS_VENV)
#
# anomalib 2.7.0 needs torchvision, and PyPI's torchvision does not import beside the torch 2.13.0
# that nextpatch pins on these machines, so this venv takes torch 2.14.1 + torchvision 0.29.1
# (about 5.5 GB). nextpatch itself is installed there too (editable, its torch>=2.1 is satisfied) so
# that peers are scored by nextpatch's own metric code. HF_HUB_OFFLINE=1 makes hub look-ups fail at once.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
venv="${PEERS_VENV:-$here/.venv}"
python3 -m venv "$venv"
py="$venv/bin/python"
"$py" -m pip install -q --upgrade pip
"$py" -m pip install -q "torch==2.14.1" "torchvision==0.29.1"
"$py" -m pip install -q "anomalib==2.7.0"
"$py" -m pip install -q -e "$here/../.."
HF_HUB_OFFLINE=1 "$py" -c "import anomalib, torch, torchvision, nextpatch; print(f'peers venv ready: anomalib {anomalib.__version__}, torch {torch.__version__}, torchvision {torchvision.__version__}, nextpatch {nextpatch.__version__}')"
