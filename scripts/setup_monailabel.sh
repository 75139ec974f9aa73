#!/usr/bin/env bash
# Build .venv-label: a MONAI Label 0.8.5 server environment for apps/monailabel_wsseg, layered on the main .venv.
#
# Why a second environment: monailabel's own metadata pulls sam2 (a source build that wants torch at build
# time) and pydicom-seg's numpy<2, which would downgrade the project's numpy 2.4. So monailabel goes in with
# --no-deps, beside the pinned run-time closure of the pyproject "label" extra, and the main environment's
# site-packages (torch, monai, numpy, monai_wsseg, openslide) are added to its path by a .pth file: nothing of
# the main environment is installed twice and nothing in it changes.
#
# Usage: scripts/setup_monailabel.sh            (fast no-op when .venv-label is already built from the same pins)
# Env:   WSSEG_MAIN_VENV (default .venv), WSSEG_LABEL_VENV (default .venv-label)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
MAIN="${WSSEG_MAIN_VENV:-$ROOT/.venv}"
LABEL="${WSSEG_LABEL_VENV:-$ROOT/.venv-label}"
MONAILABEL="monailabel==0.8.5"

die() { echo "setup_monailabel: $*" >&2; exit 1; }

[ -x "$MAIN/bin/python" ] || die "main environment $MAIN not found; build it first (README, Install)"
"$MAIN/bin/python" -c "
import importlib.util, sys
sys.exit(any(importlib.util.find_spec(m) is None for m in ('monai_wsseg', 'monai', 'torch', 'openslide')))
" 2>/dev/null || die "$MAIN lacks one of monai_wsseg, monai, torch or openslide; install the project there first: pip install -e '.[openslide]'"

PINS="$("$MAIN/bin/python" - "$ROOT/pyproject.toml" <<'EOF'
import re, sys
text = open(sys.argv[1], encoding="utf-8").read()
try:
    import tomllib
    pins = tomllib.loads(text)["project"]["optional-dependencies"]["label"]
except ImportError:  # Python 3.10: the extra is a flat list of quoted pins
    pins = re.findall(r'"([^"]+)"', re.search(r"^label = \[(.*?)^\]", text, re.S | re.M).group(1))
print("\n".join(pins))
EOF
)" || die "cannot read the 'label' extra from $ROOT/pyproject.toml"
MAIN_SITE="$("$MAIN/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
WANT="$(printf '%s\n%s\n%s\n' "$MONAILABEL" "$PINS" "$MAIN_SITE" | sha256sum | cut -c1-16)"
STAMP="$LABEL/.wsseg-label-stamp"

# Importing monailabel pulls in torch (seconds); its installed metadata is enough to tell the build is intact.
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$WANT" ] \
  && "$LABEL/bin/python" -c "import importlib.metadata as m; m.version('monailabel'); m.version('torch')" 2>/dev/null; then
  exit 0  # built from these pins on this main environment
fi

LOG="$(mktemp -t setup_monailabel.XXXXXX.log)"
trap 'rm -f "$LOG"' EXIT
fail() { tail -n 25 "$LOG" >&2; die "$1 (log above)"; }

# A stale or half-built environment is rebuilt from scratch rather than patched.
rm -rf "$LABEL"
BASE_PY="$("$MAIN/bin/python" -c '
import os, sys
print(getattr(sys, "_base_executable", "") or os.path.join(sys.base_prefix, "bin", "python3"))')"
"$BASE_PY" -m venv "$LABEL" >"$LOG" 2>&1 || fail "cannot create $LABEL with $BASE_PY"
LABEL_SITE="$("$LABEL/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
# addsitedir (not a bare path line) so the main environment's own .pth files run too (the editable monai_wsseg).
printf "import site; site.addsitedir(%s)\n" "'$MAIN_SITE'" >"$LABEL_SITE/_wsseg_main_venv.pth"

REQS="$LABEL/label-requirements.txt"
printf '%s\n%s\n' "$PINS" "$MONAILABEL" >"$REQS"
"$LABEL/bin/python" -m pip install --quiet --disable-pip-version-check --no-deps -r "$REQS" >>"$LOG" 2>&1 \
  || fail "pip install into $LABEL failed"

# What the server imports at start-up, plus the project through the main environment.
"$LABEL/bin/python" -c "
import monailabel.main, monailabel.endpoints.infer, monailabel.endpoints.wsi_infer, monailabel.interfaces.app
import numpy, monai, monai_wsseg.inference.region
assert numpy.__version__.startswith('2.'), numpy.__version__
" >>"$LOG" 2>&1 || fail "$LABEL was built but MONAI Label does not import"

echo "$WANT" >"$STAMP"
echo "setup_monailabel: $LABEL ready ($MONAILABEL on $(basename "$MAIN")'s torch/monai/numpy)"
