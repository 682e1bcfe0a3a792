"""The cluster recipes (issue 16): the sbatch array script run with bash, the Kubernetes
Indexed Job manifest, and the submitit submission run with its local executor."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from mammocli.cli.app import app
from mammocli.inference.shards import SHARD_COUNT_ENV, parse_shard
from mammocli.synthetic.phantoms import write_exam

REPO = Path(__file__).resolve().parents[1]
SBATCH = REPO / "examples" / "slurm" / "predict_array.sh"
SUBMIT = REPO / "examples" / "slurm" / "submit.py"
INDEXED_JOB = REPO / "examples" / "k8s" / "predict-indexed-job.yaml"


def _predict_has(*options: str) -> bool:
    text = CliRunner().invoke(app, ["predict", "--help"], env={"COLUMNS": "300"}).output
    return all(o in text for o in options)


needs_wiring = pytest.mark.skipif(
    not _predict_has("--exams", "--shard"),
    reason="needs predict --exams/--shard: wired by the lead")


def _fake_mammocli(tmp_path: Path, code: int) -> Path:
    """A stand-in `mammocli` that records its arguments and the shard it would take."""
    fake = tmp_path / "fake-mammocli"
    fake.write_text(
        f"#!{sys.executable}\n"
        "import json, os, sys\n"
        "from mammocli.inference.shards import parse_shard\n"
        "shard = parse_shard('auto')\n"
        f"json.dump({{'args': sys.argv[1:], 'shard': str(shard)}}, "
        f"open({str(tmp_path / 'call.json')!r}, 'w'))\n"
        f"sys.exit({code})\n")
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    return fake


@pytest.mark.parametrize(("code", "task_exit"), [(0, 0), (3, 0), (2, 2), (130, 130)])
def test_sbatch_script_runs_with_bash_as_an_array_task(tmp_path: Path, code: int,
                                                       task_exit: int) -> None:
    env = {**os.environ, "SLURM_ARRAY_TASK_ID": "4", "SLURM_ARRAY_TASK_MIN": "0",
           "SLURM_ARRAY_TASK_COUNT": "100", "MAMMOCLI": str(_fake_mammocli(tmp_path, code)),
           "PYTHONPATH": os.pathsep.join(sys.path)}
    run = subprocess.run(["bash", str(SBATCH), "--variants", "image-only"], cwd=tmp_path,
                         env=env, capture_output=True, text=True, timeout=120, check=False)
    assert run.returncode == task_exit, run.stderr
    call = json.loads((tmp_path / "call.json").read_text())
    assert call["args"] == ["predict", "--exams", "exams.csv", "--shard", "auto", "--resume",
                            "-o", "results/", "--device", "cuda", "--quiet", "--variants",
                            "image-only"]
    assert call["shard"] == "5/100"  # task 4 of --array=0-99 is shard 5 of 100


def test_sbatch_header_asks_for_an_array_with_a_cap_and_one_gpu_per_task() -> None:
    lines = [x for x in SBATCH.read_text().splitlines() if x.startswith("#SBATCH")]
    options = dict((x.removeprefix("#SBATCH ") + "=").split("=")[:2] for x in lines)
    assert options["--array"] == "0-99%10" and options["--gpus-per-task"] == "1"
    assert "--requeue" in " ".join(lines)
    assert subprocess.run(["bash", "-n", str(SBATCH)], check=False).returncode == 0


def test_indexed_job_manifest_takes_one_shard_per_index() -> None:
    job = yaml.safe_load(INDEXED_JOB.read_text())
    spec = job["spec"]
    assert (job["kind"], spec["completionMode"]) == ("Job", "Indexed")
    [container] = spec["template"]["spec"]["containers"]
    env = {e["name"]: e["value"] for e in container["env"]}
    assert int(env[SHARD_COUNT_ENV]) == spec["completions"] == 100
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 1
    command = " ".join(container["args"])
    for part in ("--exams", "--shard auto", "--resume", "-o /results/"):
        assert part in command
    # what the pods of index 0 and 99 compute
    for index, shard in ((0, "1/100"), (99, "100/100")):
        got = parse_shard("auto", environ={"JOB_COMPLETION_INDEX": str(index),
                                           SHARD_COUNT_ENV: env[SHARD_COUNT_ENV]})
        assert str(got) == shard


def _archive(root: Path, n: int) -> Path:
    for i in range(n):
        write_exam(root / f"e{i}", shape=(400, 300), seed=i)
    return root


def _predictions(folder: Path) -> dict[str, object]:
    docs = [json.loads(p.read_text()) for p in folder.glob("*.json")]
    return {d["exam_id"]: d["predictions"] for d in docs if d["status"] == "ok"}


@needs_wiring
def test_submitit_local_run_with_3_shards_equals_one_run(tmp_path: Path, random_weights: Path,
                                                         small_pipeline: Path) -> None:
    pytest.importorskip("submitit")
    root = _archive(tmp_path / "archive", 5)
    exams = tmp_path / "exams.csv"
    assert CliRunner().invoke(app, ["scan", str(root), "-o", str(exams)]).exit_code == 0
    args = ["--weights-dir", str(random_weights), "--pipeline-config", str(small_pipeline),
            "--tta", "0", "--variants", "image-only"]
    one = CliRunner().invoke(app, ["predict", str(root), "-o", f"{tmp_path / 'one'}/", *args])
    assert one.exit_code == 0, one.output
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    run = subprocess.run([sys.executable, str(SUBMIT), "--exams", str(exams), "--results",
                          str(tmp_path / "sharded"), "--shards", "3", "--cluster", "local",
                          "--logs", str(tmp_path / "logs"), "--", *args],
                         env=env, capture_output=True, text=True, timeout=600, check=False)
    assert run.returncode == 0, run.stderr
    sharded, single = _predictions(tmp_path / "sharded"), _predictions(tmp_path / "one")
    assert len(single) == 5 and sharded.keys() == single.keys()
    # Equal within float rounding: submitit's local jobs run with their own CPU thread count,
    # which changes the order of float sums (about 1e-8 here), not the exams or their values.
    for exam, predictions in single.items():
        assert _flat(sharded[exam]) == pytest.approx(_flat(predictions), abs=1e-6), exam


def _flat(tree: object, prefix: str = "") -> dict[str, float]:
    if isinstance(tree, dict):
        return {k: v for key, sub in tree.items() for k, v in _flat(sub, f"{prefix}{key}.").items()}
    return {prefix: float(tree)}  # type: ignore[arg-type]


@needs_wiring
def test_sbatch_script_end_to_end_over_three_tasks(tmp_path: Path, random_weights: Path,
                                                   small_pipeline: Path) -> None:
    root = _archive(tmp_path / "archive", 4)
    assert CliRunner().invoke(app, ["scan", str(root), "-o",
                                    str(tmp_path / "exams.csv")]).exit_code == 0
    args = ["--weights-dir", str(random_weights), "--pipeline-config", str(small_pipeline),
            "--tta", "0", "--variants", "image-only"]
    for task in (1, 2, 3):
        env = {**os.environ, "SLURM_ARRAY_TASK_ID": str(task), "SLURM_ARRAY_TASK_MIN": "1",
               "SLURM_ARRAY_TASK_COUNT": "3", "MAMMOCLI_DEVICE": "cpu",
               "MAMMOCLI": f"{sys.executable} -m mammocli",
               "PYTHONPATH": os.pathsep.join(sys.path)}
        run = subprocess.run(["bash", str(SBATCH), *args], cwd=tmp_path, env=env,
                             capture_output=True, text=True, timeout=600, check=False)
        assert run.returncode == 0, run.stderr
    assert sorted(_predictions(tmp_path / "results")) == [f"e{i}" for i in range(4)]
