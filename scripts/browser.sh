#!/usr/bin/env bash
# Headless Chromium for the dashboard test. Under CI=true it is installed from Debian's packages when
# missing (the browser test must run there); elsewhere the test skips with a reason when it is absent.
set -u
if [ -x /usr/bin/chromium ]; then
  echo "browser: chromium present"
  exit 0
fi
case "${CI:-}" in
  true|1|yes)
    if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
      echo "browser: installing chromium from Debian's packages"
      (apt-get install -y -q chromium chromium-driver >/dev/null 2>&1 ||
        (apt-get update -q >/dev/null 2>&1 && apt-get install -y -q chromium chromium-driver >/dev/null 2>&1)) ||
        { echo "browser: could not install chromium" >&2; exit 1; }
      echo "browser: chromium installed"
    else
      echo "browser: chromium missing and cannot be installed here" >&2
      exit 1
    fi
    ;;
  *) echo "browser: chromium not installed; the dashboard browser test will skip (apt-get install chromium)";;
esac
