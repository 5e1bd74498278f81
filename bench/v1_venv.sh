#!/usr/bin/env bash
# Builds the landed slither v1 (commit 1af801d) in release mode into a fresh venv at $1, for bench/core_v2.py.
#   bench/v1_venv.sh /tmp/v1 && python bench/core_v2.py --v1-python /tmp/v1/bin/python
set -euo pipefail
dest=${1:?usage: bench/v1_venv.sh VENV_DIR [COMMIT]}
commit=${2:-1af801d}
repo=$(git -C "$(dirname "$0")" rev-parse --show-toplevel)
src="$dest-src"
rm -rf "$src" && mkdir -p "$src"
git -C "$repo" archive "$commit" | tar -x -C "$src"
python3 -m venv "$dest"
"$dest/bin/pip" install -q "maturin>=1.7,<2" "cloudpickle>=2.0"
(cd "$src" && VIRTUAL_ENV="$dest" PATH="$dest/bin:$PATH" CARGO_TARGET_DIR="$dest-target" maturin develop --release --quiet)
"$dest/bin/python" -c "import slither; print('v1 at', slither.__file__)"
