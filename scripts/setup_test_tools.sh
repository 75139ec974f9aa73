#!/usr/bin/env bash
# Tools the test suite uses beyond the Python packages: Debian's chromium (headless rendering of the HTML
# report) and, when its setup script exists, the MONAI Label app. Idempotent and quiet: a no-op when
# everything is present. Without root the browser is not installed and its tests skip with a reason.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v chromium >/dev/null 2>&1; then
    if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
        echo "setup_test_tools: installing chromium (Debian package) for the report rendering tests"
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq >/dev/null
        apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core >/dev/null
    else
        echo "setup_test_tools: chromium is missing and cannot be installed here (needs root and apt-get);" \
             "the report rendering tests will skip"
    fi
fi

if [ -f scripts/setup_monailabel.sh ]; then
    bash scripts/setup_monailabel.sh
fi
