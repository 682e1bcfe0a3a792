"""Submit mammocli over an exam list as N shards with submitit: a Slurm job array on a cluster,
local processes elsewhere (`--cluster local`, or automatically when Slurm is absent), so the
same script runs on a laptop, in the test suite and on the cluster.

    python examples/slurm/submit.py --exams exams.csv --results results/ --shards 100 \\
        --concurrency 10 --partition gpu -- --variants image-only

Options after `--` go to every `mammocli predict`. Each shard runs
`mammocli predict --exams EXAMS --shard K/N --resume -o RESULTS/` in its own process; the
results folder is the ledger (`mammocli status RESULTS --exams EXAMS`), so running the script
again computes only what is missing.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import submitit

EXIT_SOME_EXAMS_FAILED = 3  # their records are in the results folder: the shard did its work


def run_shard(index: int, count: int, exams: str, results: str, extra: list[str]) -> int:
    """One shard, as the sbatch recipe runs it (a fresh process: a crash ends only it)."""
    command = [sys.executable, "-m", "mammocli", "predict", "--exams", exams,
               "--shard", f"{index}/{count}", "--resume", "-o", results, "--quiet", *extra]
    code = subprocess.run(command, check=False).returncode
    if code not in (0, EXIT_SOME_EXAMS_FAILED):
        raise RuntimeError(f"shard {index}/{count}: mammocli predict exited with {code}")
    return code


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    extra: list[str] = []
    if "--" in argv:
        cut = argv.index("--")
        argv, extra = argv[:cut], argv[cut + 1:]
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--exams", type=Path, required=True, help="the exam list (exams.csv)")
    parser.add_argument("--results", type=Path, required=True, help="the results folder")
    parser.add_argument("--shards", type=int, required=True, help="number of shards (tasks)")
    parser.add_argument("--cluster", choices=["auto", "slurm", "local", "debug"],
                        default="auto", help="auto: Slurm when sbatch is found, else local")
    parser.add_argument("--logs", type=Path, default=Path("logs/submitit"))
    parser.add_argument("--concurrency", type=int, default=10,
                        help="shards running at once (the array's %% cap)")
    parser.add_argument("--partition", default=None, help="Slurm partition")
    parser.add_argument("--gpus-per-task", type=int, default=1)
    parser.add_argument("--cpus-per-task", type=int, default=8)
    parser.add_argument("--timeout-min", type=int, default=240)
    args = parser.parse_args(argv)

    executor = submitit.AutoExecutor(folder=args.logs,
                                     cluster=None if args.cluster == "auto" else args.cluster)
    executor.update_parameters(name="mammocli-predict", timeout_min=args.timeout_min,
                               cpus_per_task=args.cpus_per_task)
    if executor.cluster == "slurm":
        executor.update_parameters(slurm_array_parallelism=args.concurrency,
                                   slurm_gpus_per_task=args.gpus_per_task,
                                   slurm_partition=args.partition)
    results = str(args.results).rstrip("/") + "/"  # -o DIR/ is the folder sink
    n = args.shards
    jobs = executor.map_array(run_shard, range(1, n + 1), [n] * n, [str(args.exams)] * n,
                              [results] * n, [extra] * n)
    print(f"submitted {n} shard(s) to {executor.cluster}; logs in {args.logs}", file=sys.stderr)
    codes = [job.result() for job in jobs]  # raises if a shard failed
    failed = sum(code == EXIT_SOME_EXAMS_FAILED for code in codes)
    print(f"{n} shard(s) done, {failed} with failed exams; see mammocli status {results} "
          f"--exams {args.exams}", file=sys.stderr)
    return EXIT_SOME_EXAMS_FAILED if failed else 0


if __name__ == "__main__":
    sys.exit(main())
