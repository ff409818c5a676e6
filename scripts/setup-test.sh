#!/usr/bin/env bash
# Test-only system packages: Debian's chromium + chromium-driver for the browser test of the
# web page (tests/test_web.py, driven by Selenium from requirements.txt). Called by
# `make test`; idempotent. Exits non-zero when it cannot provide both programs, so a CI run
# stops here instead of quietly skipping the browser test.
set -uo pipefail

have_browser() {
  { [ -x /usr/bin/chromium ] || command -v chromium >/dev/null 2>&1; } &&
    { [ -x /usr/bin/chromedriver ] || command -v chromedriver >/dev/null 2>&1; }
}
fail() {
  echo "[setup-test] $1; install chromium and chromedriver yourself (tests/test_web.py fails without them under make test)" >&2
  exit 1
}

if have_browser; then
  exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
  fail "no apt-get here"
fi
SUDO=""
if [ "$(id -u)" != "0" ]; then
  if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    SUDO="sudo -n"
  else
    fail "not root and no password-less sudo: cannot apt-get install chromium chromium-driver"
  fi
fi
echo "[setup-test] installing chromium and chromium-driver (Debian packages) for the browser test"
export DEBIAN_FRONTEND=noninteractive
if ! { $SUDO apt-get update -qq && $SUDO apt-get install -y -qq chromium chromium-driver >/dev/null; }; then
  fail "apt-get could not install chromium chromium-driver"
fi
have_browser || fail "chromium or chromedriver is still missing after apt-get install"
