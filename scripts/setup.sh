#!/usr/bin/env bash
# Install everything Yixin Portal needs on a fresh Debian machine: Debian packages, the Python
# virtual environment (pinned requirements), the front-end bundle (npm lockfile) and translations.
# Idempotent: a second run only checks.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(chromium fonts-noto-cjk poppler-utils dcm2niix gettext dcmtk bubblewrap orthanc orthanc-dicomweb)
missing=()
for pkg in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if ((${#missing[@]})); then
  echo "==> apt-get install ${missing[*]}"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi

PYTHON=${PYTHON:-python3.11}
command -v "$PYTHON" >/dev/null || PYTHON=python3
if [ ! -x .venv/bin/python ]; then
  echo "==> creating .venv with $PYTHON"
  "$PYTHON" -m venv .venv
  .venv/bin/pip install -q --upgrade pip wheel
fi
stamp=.venv/.requirements.sha256
want=$(cat requirements.txt requirements-reference.txt | sha256sum | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "==> pip install -r requirements.txt"
  # torch is pinned to the CPU build on disk; installing it first keeps pip from pulling CUDA wheels.
  .venv/bin/pip install -q "$(grep '^torch==' requirements.txt)"
  .venv/bin/pip install -q -r requirements.txt
  # pyradiomics (the reference for measurement tests) builds from source against numpy.
  .venv/bin/pip install -q "$(grep '^versioneer==' requirements-reference.txt)"
  .venv/bin/pip install -q --no-build-isolation -r requirements-reference.txt
  echo "$want" > "$stamp"
fi

stamp=static/build/.lock.sha256
want=$(cat package-lock.json frontend/build.mjs $(find frontend/src -type f | sort) | sha256sum | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "==> npm ci && npm run build"
  npm ci --no-audit --no-fund --loglevel=error
  npm run build --silent
  echo "$want" > "$stamp"
fi

.venv/bin/python manage.py compilemessages --ignore=.venv --ignore=node_modules -v 0
