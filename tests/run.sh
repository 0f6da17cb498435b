#!/usr/bin/env bash
# Set up everything the tests need on a fresh Debian machine, then run them:
#   bash tests/run.sh [pytest args]
# Installs Debian's chromium (for the browser test) when it is missing, makes .venv,
# installs requirements.txt and requirements-dev.txt into it, and runs pytest offline.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ ! -x /usr/bin/chromium ]; then
    sudo_=""; [ "$(id -u)" = 0 ] || sudo_="sudo"
    $sudo_ apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo_ apt-get install -y -qq chromium >/dev/null
fi

[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/pip install -q --disable-pip-version-check -r requirements.txt -r requirements-dev.txt

export HF_HUB_OFFLINE=1 HF_HUB_DISABLE_TELEMETRY=1 GRADIO_ANALYTICS_ENABLED=False
exec .venv/bin/python -m pytest -q "$@"
