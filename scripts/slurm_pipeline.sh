#!/bin/bash
# Example SLURM batch script: the hdnnp pipeline on one GPU node, one job step per stage.
#
# Each stage reads the previous stage's HDF5 file and writes its own, so every `srun` below is a
# separate job step with its own accounting line in `sacct -j <jobid>` (time, memory), and a
# failed stage can be rerun alone by resubmitting from that step (comment out the ones before).
#
#   prepare  : HISTORY.Te.<T>K.gz + E.Te.<T>K.gz  -> prepared.h5    (CPU)
#   symmetry : prepared.h5                         -> symmetry.h5    (GPU: CuPy kernels)
#   train    : symmetry.h5                         -> model.h5
#   predict  : symmetry.h5 + model.h5              -> predictions.h5
#   report   : model.h5 + predictions.h5          -> screen summary and plots (PNG)
#
# Submit from the repository root:   sbatch scripts/slurm_pipeline.sh
# Adapt the #SBATCH lines (partition, account, GPU type, time) to your cluster.

#SBATCH --job-name=hdnnp-Te
#SBATCH --partition=gpu             # your cluster's GPU partition
#SBATCH --nodes=1
#SBATCH --ntasks=1
#SBATCH --cpus-per-task=8
#SBATCH --gres=gpu:1                # one GPU (e.g. --gres=gpu:a100:1)
#SBATCH --mem=32G
#SBATCH --time=02:00:00
#SBATCH --output=hdnnp-%j.out       # %j = job id
#SBATCH --error=hdnnp-%j.err
##SBATCH --account=myproject        # uncomment where an account is required

set -euo pipefail                   # stop at the first failing stage

# Environment: a module system and/or a virtual environment with hdnnp[gpu] (CuPy) installed.
# module load cuda/12.4              # site specific
# source "$HOME/venvs/hdnnp/bin/activate"

export OMP_NUM_THREADS="${SLURM_CPUS_PER_TASK:-1}"   # NumPy/BLAS threads for the CPU parts

DATA_DIR=data/example               # the bundled liquid-Te example (HISTORY.Te.<T>K.gz, E.Te.<T>K.gz)
SYSTEM=Te
TRAIN_T=673K,723K,823K,873K,973K    # training temperatures
PREDICT_T=773K                      # held-out temperature to predict
WORK="${SLURM_SUBMIT_DIR:-$PWD}/run-${SLURM_JOB_ID:-local}"   # intermediates of this job
mkdir -p "$WORK"

echo "hdnnp $(hdnnp --version) on $(hostname), job ${SLURM_JOB_ID:-none}, work dir $WORK"
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || true

# Stage 1-2: read and validate the DL_POLY files, split train/predict sets -> prepared.h5
srun --ntasks=1 hdnnp prepare \
    --data-dir "$DATA_DIR" --system "$SYSTEM" \
    --train "$TRAIN_T" --predict "$PREDICT_T" \
    --output "$WORK/prepared.h5"

# Stage 3: symmetry functions (and their derivatives for force training) on the GPU
srun --ntasks=1 hdnnp symmetry --device gpu \
    "$WORK/prepared.h5" --output "$WORK/symmetry.h5"

# Stage 4: train the element networks (on energies and forces) -> model.h5
srun --ntasks=1 hdnnp train --device gpu \
    "$WORK/symmetry.h5" --output "$WORK/model.h5"

# Stage 5: predict energies (and forces) of the held-out temperature -> predictions.h5
srun --ntasks=1 hdnnp predict --device gpu --forces \
    "$WORK/symmetry.h5" --model "$WORK/model.h5" --output "$WORK/predictions.h5"

# Stage 6: errors and plots (LEARNING_PROCESS.png, FINAL_PREDICTION.png, ...)
srun --ntasks=1 hdnnp report \
    --model "$WORK/model.h5" --predictions "$WORK/predictions.h5" --out-dir "$WORK/plots"

echo "done; per-stage time and memory: sacct -j ${SLURM_JOB_ID:-<jobid>} --format=JobName,Elapsed,MaxRSS"
