#!/usr/bin/env bash
# build_n2p2.sh -- build n2p2 (https://github.com/CompPhysVienna/n2p2) from its
# public source, OUTSIDE this repository, for use as a reference oracle in
# tests/benchmarks of hdnnp.  No n2p2 code is vendored into hdnnp.
#
# Builds: libnnp, libnnptrain and the applications nnp-predict, nnp-dataset,
# nnp-scaling (static libraries, n2p2's default GNU flags from
# src/makefile.gnu: g++ -O3 -march=native -std=c++11 -DEIGEN_DONT_PARALLELIZE).
# The only change from n2p2's defaults is the link line for BLAS:
#   PROJECT_LDFLAGS_BLAS="-lgsl -lgslcblas"   (default adds -lblas, which is
#   not needed because EIGEN_USE_BLAS is off; this avoids a libblas-dev dep).
# Note: -march=native makes the binaries specific to the building CPU.
#
# Usage:
#   scripts/build_n2p2.sh [--install-deps] [BUILD_DIR]
#
#   BUILD_DIR       where n2p2 is cloned if N2P2_SRC is not given
#                   (default: ./n2p2-build)
#   --install-deps  run apt-get to install the Debian packages listed below
#                   (needs root); without it nothing is installed.
#
# Environment:
#   N2P2_SRC        existing n2p2 source tree (a git work tree, or a plain
#                   copy); if unset, n2p2 is cloned into BUILD_DIR.
#   N2P2_COMMIT     commit to build (default below, master of 2024-11-25,
#                   after v2.3.0).  Set to the empty string to build whatever
#                   is checked out in N2P2_SRC.  If N2P2_SRC is a git tree at
#                   a different commit, it is checked out (detached HEAD).
#   N2P2_REPO_URL   clone URL (default https://github.com/CompPhysVienna/n2p2)
#   N2P2_JOBS       parallel make jobs (default 2)
#   N2P2_EIGEN      Eigen include dir (default /usr/include/eigen3/)
#   N2P2_CLEAN      1: remove previous n2p2 build products first (done
#                   automatically when this script checks out another commit,
#                   since n2p2's makefiles do not rebuild existing binaries)
#
# On success the last line printed on stdout is the bin directory holding
# nnp-predict, nnp-dataset and nnp-scaling.
#
# Debian 12 (bookworm) packages needed:
#   g++ make git libeigen3-dev libgsl-dev libmpich-dev (pulls in mpich)
# libnnptrain (needed by nnp-dataset) includes <mpi.h> unconditionally and the
# dataset applications are compiled with mpic++, so an MPI is required; MPICH
# was chosen as the lighter of Debian's two MPIs (OpenMPI works as well).
# nnp-dataset runs fine without mpirun (singleton MPI init): `nnp-dataset 0`.
#
# Examples:
#   N2P2_SRC=/work/n2p2-src scripts/build_n2p2.sh
#   scripts/build_n2p2.sh --install-deps /tmp/n2p2-build
set -euo pipefail

DEFAULT_COMMIT=61daa0dfd065c842eaabc40ab283658510e066a5
DEBIAN_PACKAGES=(g++ make git libeigen3-dev libgsl-dev libmpich-dev)

install_deps=0
build_dir=""
for arg in "$@"; do
    case "$arg" in
        --install-deps) install_deps=1 ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'; exit 0 ;;
        -*) echo "unknown option: $arg" >&2; exit 2 ;;
        *)
            if [[ -n "$build_dir" ]]; then
                echo "only one BUILD_DIR may be given" >&2; exit 2
            fi
            build_dir="$arg" ;;
    esac
done
build_dir="${build_dir:-./n2p2-build}"

commit="${N2P2_COMMIT-$DEFAULT_COMMIT}"
repo_url="${N2P2_REPO_URL:-https://github.com/CompPhysVienna/n2p2}"
jobs="${N2P2_JOBS:-2}"
eigen="${N2P2_EIGEN:-/usr/include/eigen3/}"

log() { echo "[build_n2p2] $*" >&2; }

if [[ "$install_deps" == 1 ]]; then
    log "installing Debian packages: ${DEBIAN_PACKAGES[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update
    apt-get install -y --no-install-recommends "${DEBIAN_PACKAGES[@]}"
fi

# Tools check (clear message instead of a deep make failure).
for tool in g++ make mpic++; do
    command -v "$tool" >/dev/null 2>&1 || {
        echo "missing '$tool'; install: ${DEBIAN_PACKAGES[*]} (or use --install-deps)" >&2
        exit 1
    }
done
[[ -f "$eigen/Eigen/Core" ]] || { echo "Eigen not found in $eigen (libeigen3-dev)" >&2; exit 1; }
[[ -f /usr/include/gsl/gsl_rng.h ]] || log "warning: /usr/include/gsl not found (libgsl-dev)"

# Source tree.
if [[ -n "${N2P2_SRC:-}" ]]; then
    src="$N2P2_SRC"
    [[ -f "$src/src/makefile" ]] || { echo "N2P2_SRC=$src is not an n2p2 source tree" >&2; exit 1; }
else
    src="$build_dir"
    if [[ ! -f "$src/src/makefile" ]]; then
        log "cloning $repo_url into $src"
        git clone --no-checkout "$repo_url" "$src"
        git -C "$src" checkout --detach "${commit:-HEAD}"
    fi
fi
src="$(cd "$src" && pwd)"

if [[ -n "$commit" ]]; then
    if git -C "$src" rev-parse --git-dir >/dev/null 2>&1; then
        head="$(git -C "$src" rev-parse HEAD)"
        want="$(git -C "$src" rev-parse "$commit^{commit}")"
        if [[ "$head" != "$want" ]]; then
            log "checking out $want in $src (was $head)"
            git -C "$src" checkout --detach "$want"
            N2P2_CLEAN=1
        fi
    else
        log "warning: $src is not a git tree; cannot verify commit $commit"
    fi
fi
if git -C "$src" rev-parse --git-dir >/dev/null 2>&1; then
    log "n2p2 source: $src at $(git -C "$src" rev-parse HEAD)"
fi

# Build.  Variables given on the make command line propagate to sub-makes.
make_args=(COMP=gnu MODE=static "PROJECT_EIGEN=$eigen" "PROJECT_LDFLAGS_BLAS=-lgsl -lgslcblas")
cd "$src/src"
if [[ "${N2P2_CLEAN:-0}" == 1 ]]; then
    log "cleaning previous build products"
    make clean-libnnp clean-libnnptrain clean-nnp-predict clean-nnp-dataset \
        clean-nnp-scaling COMP=gnu >&2
fi
log "make libnnp"
make -j"$jobs" libnnp "${make_args[@]}" >&2
log "make libnnptrain"
make -j"$jobs" libnnptrain "${make_args[@]}" >&2
log "make nnp-predict nnp-dataset nnp-scaling"
make -j"$jobs" nnp-predict nnp-dataset nnp-scaling "${make_args[@]}" >&2

bin="$src/bin"
for exe in nnp-predict nnp-dataset nnp-scaling; do
    [[ -x "$bin/$exe" ]] || { echo "build finished but $bin/$exe is missing" >&2; exit 1; }
done
echo "$bin"
