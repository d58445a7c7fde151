#!/usr/bin/env bash
# The report's browser test renders the committee report in Debian's chromium (headless). Install
# it when absent and we may (root with apt-get, as CI runs); otherwise say so loudly: the test then
# skips locally, and fails under CI (CI=1) so that CI never silently skips it.
set -uo pipefail
if command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1; then
    exit 0
fi
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing Debian's chromium for the report's browser test (apt-get) ..." >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y --no-install-recommends chromium >/dev/null 2>&1 \
        || { apt-get update >/dev/null 2>&1 && apt-get install -y --no-install-recommends chromium >/dev/null 2>&1; } \
        || echo "WARNING: apt-get could not install chromium: the browser test will not run" >&2
else
    echo "WARNING: chromium is absent and cannot be installed here (needs root and apt-get):" \
         "the report's browser test will be skipped (CI installs it)" >&2
fi
exit 0
