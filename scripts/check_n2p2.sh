#!/usr/bin/env bash
# check_n2p2.sh -- n2p2 itself as the oracle of hdnnp's n2p2 export and import.
#
# Builds n2p2 from its public source (scripts/build_n2p2.sh; nothing of n2p2 is vendored) unless
# N2P2_BIN names a directory holding nnp-predict, then checks, frame by frame, energies and forces
# to 1e-8 relative (scripts/check_n2p2.py):
#   1. export: the bundled Te potential (trained here by `hdnnp run --no-md`, or MODEL=path) and a
#      two-element Cu2S potential (trained here for a few epochs on n2p2's own Cu2S example data)
#      through n2p2's nnp-predict, and the round trip hdnnp -> n2p2 -> hdnnp (1e-12);
#   2. import: n2p2's example potentials Cu2S_PBE (softplus, types 2/3/9, sigma scaling,
#      normalisation) and H2O_RPBE-D3 (Bohr/Hartree) against nnp-predict on their input.data, and,
#      with MLEARN=path/to/ge_si_pbe_mlearn, the published mlearn Ge and Si potentials on 3 test frames.
#
# Usage (from the repository root, hdnnp installed in the active Python):
#   scripts/check_n2p2.sh [WORK_DIR]            (default WORK_DIR: ./n2p2-check)
# Environment: N2P2_BIN, N2P2_SRC (see build_n2p2.sh), MODEL, MLEARN.
# Exit status 0 when every check passes. CI does not run this (it has no n2p2): it checks golden
# values made with scripts/make_n2p2_golden.py instead.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
WORK=$(mkdir -p "${1:-n2p2-check}" && cd "${1:-n2p2-check}" && pwd)
if [[ -z "${N2P2_BIN:-}" ]]; then
    N2P2_BIN=$("$ROOT/scripts/build_n2p2.sh" "$WORK/n2p2-build" | tail -n 1)
fi
N2P2_SRC=${N2P2_SRC:-$WORK/n2p2-build}
[[ -d "$N2P2_SRC/examples" ]] || N2P2_SRC=$(cd "$N2P2_BIN/.." && pwd)
EXAMPLES="$N2P2_SRC/examples"
CHECK=(python "$ROOT/scripts/check_n2p2.py")
status=0

echo "== export: the bundled Te potential"
if [[ -z "${MODEL:-}" ]]; then
    (cd "$WORK" && mkdir -p data && ln -sfn "$ROOT/data/example" data/example \
        && hdnnp run --no-md --overwrite -q > te_run.log)
    MODEL="$WORK/model.h5"
fi
"${CHECK[@]}" export "$MODEL" "$(dirname "$MODEL")/prepared.h5:predict" --n2p2-bin "$N2P2_BIN" --frames 3 || status=1

echo "== export: a two-element Cu2S potential (trained here, 5 epochs)"
CU2S="$EXAMPLES/nnp-train/Cu2S_PBE/input.data"
(cd "$WORK" && hdnnp prepare --train-file "$CU2S" --predict-file "$CU2S" -o cu2s_prepared.h5 --overwrite -q \
    && hdnnp symmetry cu2s_prepared.h5 -o cu2s_symmetry.h5 --overwrite -q \
    && hdnnp train cu2s_symmetry.h5 -o cu2s_model.h5 --epochs 5 --overwrite -q)
"${CHECK[@]}" export "$WORK/cu2s_model.h5" "$CU2S" --n2p2-bin "$N2P2_BIN" --frames 3 || status=1

echo "== import: n2p2's example potentials"
"${CHECK[@]}" import "$EXAMPLES/nnp-predict/Cu2S_PBE" --n2p2-bin "$N2P2_BIN" || status=1
"${CHECK[@]}" import "$EXAMPLES/nnp-predict/H2O_RPBE-D3" --n2p2-bin "$N2P2_BIN" \
    --length-unit bohr --energy-unit hartree || status=1
if [[ -n "${MLEARN:-}" ]]; then
    for el in Ge Si; do
        echo "== import: the mlearn $el potential"
        "${CHECK[@]}" import "$MLEARN/n2p2_model_$el" --n2p2-bin "$N2P2_BIN" --data "$MLEARN/$el.test.extxyz" \
            --frames 3 --length-unit bohr --energy-unit hartree || status=1
    done
fi
[[ $status == 0 ]] && echo "all n2p2 checks passed" || echo "SOME n2p2 CHECKS FAILED"
exit $status
