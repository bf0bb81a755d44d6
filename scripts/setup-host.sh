#!/usr/bin/env bash
# Install what the host needs to build the guest image and run the tests, and nothing else:
# Debian packages (QEMU, nbdkit for the power-cut disk server) and a project venv.
# Idempotent and quiet when everything is already there, so `make` can call it every time.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(qemu-system-arm qemu-system-misc qemu-utils qemu-user-static nbdkit nbdkit-plugin-python)
VENV=${VENV:-.venv}
PYTHON=${PYTHON:-python3}

missing=()
for pkg in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if ((${#missing[@]})); then
  if [ "$(id -u)" -ne 0 ]; then
    echo "setup: missing Debian packages: ${missing[*]}" >&2
    echo "setup: run as root, or: sudo apt-get install ${missing[*]}" >&2
    exit 1
  fi
  echo "setup: installing Debian packages: ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

stamp="$VENV/.installed"
if [ ! -x "$VENV/bin/python" ]; then
  echo "setup: creating $VENV"
  "$PYTHON" -m venv "$VENV"
fi
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  echo "setup: installing Python packages into $VENV"
  "$VENV/bin/pip" install -q --disable-pip-version-check -e '.[dev]'
  touch "$stamp"
fi
