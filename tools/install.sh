#!/usr/bin/env bash
# Installs everything tflm_training needs on Debian 12 and builds the host
# library: the Arm toolchain and QEMU (Debian packages), then the pinned Python
# packages into the current Python environment; installing this package
# compiles the C runtime (setup.py).
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-$(command -v python || command -v python3)}
DEBIAN_PACKAGES=(gcc make gcc-arm-none-eabi libnewlib-arm-none-eabi qemu-system-arm)

missing=()
for package in "${DEBIAN_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" \
    || missing+=("$package")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "Installing Debian packages: ${missing[*]}"
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO=sudo
  $SUDO apt-get update -q
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

echo "Installing Python packages (pinned in setup.cfg) and building the host library"
"$PYTHON" -m pip install -q --upgrade pip
"$PYTHON" -m pip install -q -e ".[pipeline,planning,test]"
echo "Installed. Run the tests with: python -m pytest tests"
