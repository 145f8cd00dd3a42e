#!/usr/bin/env bash
# Set up a fresh Debian machine for diffusion-reward: system libraries for headless
# MuJoCo rendering, a virtual environment in .venv, and the package with its test and SB3 extras.
# A second run checks, finds everything in place, and changes nothing.
set -euo pipefail
cd "$(dirname "$0")/.."

SYSTEM_PACKAGES=(libegl1 libgl1 libegl-mesa0 libosmesa6)
missing=()
for pkg in "${SYSTEM_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        echo "setup: installing system libraries for headless rendering: ${missing[*]}"
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
    else
        echo "setup: missing system libraries for headless rendering: ${missing[*]}"
        echo "setup: install them with: sudo apt-get install ${missing[*]}   (continuing without them)"
    fi
fi

PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    echo "setup: creating virtual environment .venv"
    "$PYTHON" -m venv .venv
fi
stamp=".venv/.setup-stamp"
want="$(cat pyproject.toml scripts/setup.sh | sha256sum | cut -d' ' -f1)"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
    echo "setup: environment up to date (.venv)"
    exit 0
fi
echo "setup: installing diffusion-reward and its dependencies into .venv"
.venv/bin/python -m pip install -q --upgrade pip
# The CPU build of PyTorch first, so that the package's torch requirement is already met.
.venv/bin/python -m pip install -q "torch==2.13.0"
.venv/bin/python -m pip install -q -e ".[test,sb3]"
echo "$want" > "$stamp"
echo "setup: done"
