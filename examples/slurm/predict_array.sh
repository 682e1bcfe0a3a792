#!/bin/bash
# mammocli over a whole archive as a Slurm job array: one shard of the exam list per task,
# one GPU per task, at most 10 tasks at once (the `%10`). Every task writes into the same
# results folder, which is the ledger: re-submitting the array (or `scontrol requeue`) only
# computes what is missing, and `mammocli status results/ --exams exams.csv` shows progress.
#
#   mammocli scan /archive -o exams.csv            # once: the exam list (headers only)
#   mkdir -p logs && sbatch examples/slurm/predict_array.sh [extra predict options]
#
# The number of shards is the array's size (SLURM_ARRAY_TASK_COUNT): change --array and
# nothing else. Exams go to shards by a hash of their id, so a longer exam list keeps every
# finished result where it is.
#SBATCH --job-name=mammocli-predict
#SBATCH --array=0-99%10
#SBATCH --gpus-per-task=1
#SBATCH --cpus-per-task=8
#SBATCH --mem=32G
#SBATCH --time=04:00:00
#SBATCH --requeue
#SBATCH --output=logs/%x-%A_%a.out
set -euo pipefail

EXAMS=${EXAMS:-exams.csv}
RESULTS=${RESULTS:-results/}
MAMMOCLI=${MAMMOCLI:-mammocli}  # e.g. "apptainer exec --nv mammocli.sif mammocli"

status=0
# shellcheck disable=SC2086  # MAMMOCLI may be a command with arguments
$MAMMOCLI predict --exams "$EXAMS" --shard auto --resume -o "$RESULTS" \
    --device "${MAMMOCLI_DEVICE:-cuda}" --quiet "$@" || status=$?
if [ "$status" -eq 3 ]; then
    # Some exams failed on their input; each has its record in $RESULTS (see mammocli status,
    # and predict --retry-failed once fixed). The task itself did its work.
    exit 0
fi
exit "$status"
