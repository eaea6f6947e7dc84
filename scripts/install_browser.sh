#!/usr/bin/env bash
# Headless browser of the web UI test (test/integration/test_web_ui.py): Debian's chromium.
# Idempotent: does nothing when /usr/bin/chromium exists. Playwright drives this binary through
# executable_path, so `playwright install` (a browser download) is never needed.
set -euo pipefail

CHROMIUM=${VLN_CHROMIUM:-/usr/bin/chromium}
log() { printf '[install_browser] %s\n' "$*"; }

if [ -x "$CHROMIUM" ]; then
  log "chromium present: $CHROMIUM"
  exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
  log "no $CHROMIUM and no apt-get: install chromium with your package manager"
  exit 1
fi
SUDO=
if [ "$(id -u)" != 0 ]; then
  command -v sudo >/dev/null 2>&1 || { log 'need root (or sudo) to apt-get install chromium'; exit 1; }
  SUDO=sudo
fi
log 'installing Debian chromium (apt-get)'
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -q
$SUDO apt-get install -y -q chromium
[ -x "$CHROMIUM" ] || { log "apt-get finished but $CHROMIUM is missing"; exit 1; }
log "installed: $("$CHROMIUM" --version 2>/dev/null | head -1)"
