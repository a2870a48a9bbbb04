#!/bin/sh
# Make headless Chromium available for the atlas' browser tests (tests/test_atlas.py): Debian's
# chromium package where apt-get is there; otherwise say why those tests will be skipped.
# Never fails: without a browser only the browser tests are skipped (they say so).
find_chromium() {
    command -v chromium 2>/dev/null || command -v chromium-browser 2>/dev/null
}

if BROWSER=$(find_chromium); then
    echo "Chromium: $BROWSER"
    exit 0
fi
if command -v apt-get >/dev/null 2>&1; then
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO="sudo -n"
    echo "Chromium: installing Debian's chromium package (a few minutes the first time)"
    if $SUDO apt-get install -y -q chromium >/dev/null 2>&1 || \
       { $SUDO apt-get update -q >/dev/null 2>&1 && $SUDO apt-get install -y -q chromium >/dev/null 2>&1; }; then
        BROWSER=$(find_chromium) && { echo "Chromium: $BROWSER"; exit 0; }
    fi
    echo "Chromium: apt-get could not install chromium (no root, no sudo, or offline);" \
         "the atlas' browser tests will be skipped" >&2
    exit 0
fi
echo "Chromium: no chromium on PATH and no apt-get to install it; the atlas' browser tests" \
     "will be skipped (install Chromium to run them)" >&2
exit 0
