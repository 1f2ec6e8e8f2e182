#!/usr/bin/env bash
# Installs the system packages hdh's tests and demo need, from Debian's archive, only when
# they are missing: PostgreSQL (server binaries), Node.js with npm (for Azurite and htmx),
# bubblewrap (the sandbox of project jobs), Chromium (the browser tests of the web pages);
# with HDH_BENCH=1 also rclone (bench/migrate.py's peer).
# Python packages come from PyPI through uv, Azurite and htmx from npm; see the Makefile.
set -euo pipefail

need=()
compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null || need+=(postgresql)
command -v node >/dev/null || need+=(nodejs)
command -v npm >/dev/null || need+=(npm)
command -v bwrap >/dev/null || need+=(bubblewrap)
command -v chromium >/dev/null || need+=(chromium)
python3 -c 'import venv, ensurepip' 2>/dev/null || need+=(python3-venv)
if [ "${HDH_BENCH:-0}" = 1 ]; then
  command -v rclone >/dev/null || need+=(rclone)
fi

if [ ${#need[@]} -eq 0 ]; then
  exit 0
fi
echo "Installing Debian packages: ${need[*]}"
if [ "$(id -u)" -eq 0 ]; then
  SUDO=""
elif command -v sudo >/dev/null; then
  SUDO="sudo"
else
  echo "Error: ${need[*]} missing and this account cannot install packages: ask an administrator to run 'apt-get install ${need[*]}'." >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -q
$SUDO apt-get install -y -q --no-install-recommends "${need[@]}"
