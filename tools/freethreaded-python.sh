#!/usr/bin/env bash
# slither's free-threaded interpreter for development and CI: builds CPython with --disable-gil
# (PEP 703) from Debian's python3.X source package, once per machine, and prints the interpreter's
# path on its last line. Takes about 5 minutes on 2 cores; afterwards it answers at once.
#
#   PY_FT=$(tools/freethreaded-python.sh | tail -n 1)         # 3.13t, the build slither tests
#   PY_FT=$(tools/freethreaded-python.sh 3.14 | tail -n 1)    # 3.14t, where a mirror serves its source
#
# Version: $1, else $SLITHER_FT_VERSION, else 3.13. Installs into $SLITHER_FT_PREFIX, else
# ~/.cache/slither/python-ft (3.13) or ~/.cache/slither/python-ft-<version>.
# Exit status 3 means no source for that version could be had here: callers skip their
# free-threaded checks and say so. Any other non-zero status is a failed build.
# Needs root for apt-get (build dependencies and the source download).
set -euo pipefail

version=${1:-${SLITHER_FT_VERSION:-3.13}}
case "$version" in
  3.1[3-9]) ;;
  *) echo "freethreaded-python: free threading exists from 3.13 on, not $version" >&2; exit 2 ;;
esac
if [ "$version" = "3.13" ]; then
  prefix=${SLITHER_FT_PREFIX:-$HOME/.cache/slither/python-ft}
else
  prefix=${SLITHER_FT_PREFIX:-$HOME/.cache/slither/python-ft-$version}
fi
python="$prefix/bin/python${version}t"

# Already built, and really without a GIL: nothing to do.
if [ -x "$python" ] && "$python" -c 'import sys; sys.exit(sys._is_gil_enabled())' 2>/dev/null; then
  echo "$python"
  exit 0
fi

scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
log="$scratch/build.log"
say() { echo "freethreaded-python: $*" >&2; }

# The Debian mirror this machine's apt already uses.
mirror=$(grep -h -m1 '^URIs:' /etc/apt/sources.list.d/*.sources 2>/dev/null | awk '{print $2}' || true)
[ -n "$mirror" ] || mirror=$(grep -h -m1 '^deb ' /etc/apt/sources.list 2>/dev/null | awk '{print $2}' || true)
if [ -z "$mirror" ]; then say "no Debian mirror is configured for apt"; exit 3; fi

say "installing the compiler and CPython's build dependencies"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >>"$log" 2>&1 || true
apt-get install -y -qq build-essential pkg-config libssl-dev zlib1g-dev libbz2-dev libreadline-dev \
  libsqlite3-dev libffi-dev liblzma-dev uuid-dev >>"$log" 2>&1

# A private apt configuration that knows only source indexes, so the system's stays untouched.
say "looking for Debian's python$version source package"
apt_root="$scratch/apt"
mkdir -p "$apt_root/lists/partial" "$apt_root/cache/archives/partial" "$apt_root/parts" "$scratch/src"
for suite in sid forky trixie; do
  echo "deb-src [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $mirror $suite main"
done >"$apt_root/sources.list"
apt_opts=(-o "Dir::Etc::SourceList=$apt_root/sources.list" -o "Dir::Etc::SourceParts=$apt_root/parts"
          -o "Dir::State::Lists=$apt_root/lists" -o "Dir::Cache=$apt_root/cache")
apt-get "${apt_opts[@]}" update -qq >>"$log" 2>&1 || true

tarball=""
# Newest version first; an index may still list versions whose files the mirror no longer has.
for candidate in $(apt-cache "${apt_opts[@]}" showsrc "python$version" 2>/dev/null \
                   | awk '/^Version:/{print $2}' | sort -rV | uniq); do
  if (cd "$scratch/src" && apt-get "${apt_opts[@]}" source --download-only "python$version=$candidate" >>"$log" 2>&1); then
    tarball=$(ls "$scratch"/src/python"$version"_*.orig.tar.* 2>/dev/null | head -n1)
    [ -n "$tarball" ] && break
  fi
done
if [ -z "$tarball" ]; then
  say "the mirror serves no python$version source (see $log)"
  exit 3
fi

say "building $(basename "$tarball") with --disable-gil into $prefix"
mkdir -p "$scratch/build"
tar xf "$tarball" -C "$scratch/build" --strip-components=1
(cd "$scratch/build" \
  && ./configure --disable-gil --prefix="$prefix" --with-ensurepip=install >>"$log" 2>&1 \
  && make -j"$(nproc)" >>"$log" 2>&1 \
  && make install >>"$log" 2>&1) || { tail -n 30 "$log" >&2; exit 1; }

"$python" -c 'import sys; assert not sys._is_gil_enabled(), "the GIL is on"; print(sys.version)' >&2
echo "$python"
