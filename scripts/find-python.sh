#!/usr/bin/env bash
# Prints the path of a working Python 3.12 (the Lambda runtime), or exits 1.
# Tries, in order: $PYTHON, python3.12 on PATH, pyenv's 3.12.x, then 3.13 as a last resort.
set -u
try() { [ -n "$1" ] && "$1" -c 'import sys; assert sys.version_info[:2] >= (3, 12)' >/dev/null 2>&1 && { command -v "$1"; exit 0; }; }
try "${PYTHON:-}"
try python3.12
if command -v pyenv >/dev/null 2>&1; then
  for v in $(pyenv versions --bare 2>/dev/null | grep -E '^3\.12(\.|$)' | sort -rV) \
           $(pyenv versions --bare 2>/dev/null | grep -E '^3\.13(\.|$)' | sort -rV); do
    try "$(pyenv prefix "$v" 2>/dev/null)/bin/python3"
  done
fi
try /usr/bin/python3.12
try python3.13
echo "no Python 3.12 found: install it (pyenv install 3.12) or set PYTHON=/path/to/python3.12" >&2
exit 1
