#!/usr/bin/env bash
# The operator page's browser tests (tests/opsapi/test_browser.py) drive Debian's chromium through
# Playwright; never a downloaded browser. `make test` runs this first: it installs chromium with
# apt-get when it is missing and it can (root, or password-less sudo). When it cannot, it writes
# why to $1, and the browser tests skip with that reason instead of failing.
set -uo pipefail
reason_file=${1:?usage: ensure-chromium.sh REASON_FILE}
rm -f "$reason_file"
chromium_bin() { command -v chromium 2>/dev/null || { [ -x /usr/bin/chromium ] && echo /usr/bin/chromium; }; }
[ -n "$(chromium_bin)" ] && exit 0
unavailable() { echo "warning: $1; the browser tests will be skipped" >&2; echo "$1" >"$reason_file"; exit 0; }
command -v apt-get >/dev/null 2>&1 || unavailable "chromium is not installed and there is no apt-get to install it"
if [ "$(id -u)" = 0 ]; then as_root=(); elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then as_root=(sudo -n)
else unavailable "chromium is not installed and installing it needs root (apt-get install chromium)"; fi
echo "installing Debian's chromium for the browser tests (apt-get install chromium)"
log=$(mktemp)
if ! { "${as_root[@]}" apt-get update -qq && DEBIAN_FRONTEND=noninteractive "${as_root[@]}" apt-get install -y -qq chromium; } >"$log" 2>&1; then
  unavailable "apt-get install chromium failed: $(tail -n 3 "$log" | tr '\n' ' ')"
fi
rm -f "$log"
[ -n "$(chromium_bin)" ] || unavailable "apt-get installed chromium but no chromium binary is on PATH"
