#!/usr/bin/env bash
# Installs the Debian packages the test suite and `make bench` run for real, if any is missing:
#   postgresql, redis-server  - the distributed (CeleryExecutor) end-to-end test's metadata DB and broker
#   chromium, chromium-driver - the dashboard plugin's browser test (headless)
#   wrk                       - the HTTP load generator `make bench` compares the replay DAG with
# Needs root (or sudo). Does nothing when all are installed.
set -euo pipefail

packages=(postgresql redis-server chromium chromium-driver wrk)
missing=()
for pkg in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
[ ${#missing[@]} -eq 0 ] && exit 0

echo "Installing Debian packages: ${missing[*]}"
sudo=""
if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null || { echo "error: installing ${missing[*]} needs root or sudo" >&2; exit 1; }
    sudo="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
# policy-rc.d keeps Debian from starting the system-wide postgresql/redis services:
# the tests start their own instances on 127.0.0.1 and stop them by PID.
if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' | $sudo tee /usr/sbin/policy-rc.d >/dev/null
    $sudo chmod +x /usr/sbin/policy-rc.d
    trap '$sudo rm -f /usr/sbin/policy-rc.d' EXIT
fi
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "Installed: ${missing[*]}"
