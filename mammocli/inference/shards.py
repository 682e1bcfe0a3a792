"""Deterministic shards of an exam list: `--shard K/N` and `--shard auto` (issue 16).

Shards are numbered from 1: `--shard 1/4` ... `--shard 4/4` ("shard K of N"). Schedulers that
count from 0 are converted by `--shard auto`:

- Slurm job arrays: K = (SLURM_ARRAY_TASK_ID - SLURM_ARRAY_TASK_MIN) / SLURM_ARRAY_TASK_STEP + 1,
  N = SLURM_ARRAY_TASK_COUNT (so `--array=0-99`, `--array=1-100` and `--array=0-198:2` all work);
- Kubernetes Indexed Jobs: K = JOB_COMPLETION_INDEX + 1, N = MAMMOCLI_SHARD_COUNT (set it to
  the Job's `completions`; Kubernetes does not export the count).

An exam's shard depends on its id and N only, by jump consistent hashing (Lamping and Veach
2014) of a 64-bit BLAKE2b digest of the id: adding exams moves none, going from N to N+1 shards
moves about 1/(N+1) of them (all to the new shard), and each lookup costs O(log N) (rendezvous
hashing gives the same guarantees at O(N) per exam: a million exams over a thousand shards would
be a billion hashes per task).
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TypeVar

from ..errors import ConfigError

__all__ = ["SHARD_COUNT_ENV", "Shard", "in_shard", "parse_shard", "select_shard",
           "shard_of", "shard_from_environment"]

SHARD_COUNT_ENV = "MAMMOCLI_SHARD_COUNT"
_SPEC = re.compile(r"\s*(\d+)\s*/\s*(\d+)\s*")
_MASK = (1 << 64) - 1

T = TypeVar("T")


@dataclass(frozen=True)
class Shard:
    """Shard `index` of `count`, 1 <= index <= count."""

    index: int
    count: int

    def __post_init__(self) -> None:
        if self.count < 1:
            raise ConfigError(f"--shard {self.index}/{self.count}: the number of shards must "
                              "be at least 1")
        if not 1 <= self.index <= self.count:
            raise ConfigError(
                f"--shard {self.index}/{self.count}: shards are numbered 1 to {self.count}",
                hint="for a 0-based task id use --shard auto, or --shard $((ID + 1))/N")

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"

    def holds(self, exam_id: str) -> bool:
        return in_shard(exam_id, self.index, self.count)


def _key(exam_id: str) -> int:
    digest = hashlib.blake2b(exam_id.encode("utf-8", "surrogateescape"), digest_size=8)
    return int.from_bytes(digest.digest(), "big")


def _jump(key: int, buckets: int) -> int:
    """Jump consistent hash: the bucket in [0, buckets) of a 64-bit key."""
    b, j = -1, 0
    while j < buckets:
        b = j
        key = (key * 2862933555777941757 + 1) & _MASK
        j = int((b + 1) * ((1 << 31) / ((key >> 33) + 1)))
    return b


def shard_of(exam_id: str, count: int) -> int:
    """The 1-based shard of `exam_id` among `count` shards."""
    if count < 1:
        raise ConfigError("the number of shards must be at least 1")
    return _jump(_key(exam_id), count) + 1


def in_shard(exam_id: str, k: int, n: int) -> bool:
    """True when exam `exam_id` belongs to shard `k` (1-based) of `n`."""
    return shard_of(exam_id, n) == k


def select_shard(items: Iterable[T], shard: Shard | None, key: Callable[[T], str]) -> list[T]:
    """The items whose id (`key(item)`) falls in `shard`; all of them when `shard` is None."""
    if shard is None:
        return list(items)
    return [item for item in items if shard.holds(key(item))]


def _env_int(environ: Mapping[str, str], name: str) -> int | None:
    raw = environ.get(name, "").strip()
    if not raw:
        return None
    try:
        return int(raw)
    except ValueError:
        raise ConfigError(f"--shard auto: {name}={raw!r} is not a whole number") from None


def shard_from_environment(environ: Mapping[str, str] | None = None) -> Shard:
    """The shard of this task from the scheduler's environment (see the module docstring)."""
    env = os.environ if environ is None else environ
    task = _env_int(env, "SLURM_ARRAY_TASK_ID")
    if task is not None:
        count = _env_int(env, "SLURM_ARRAY_TASK_COUNT")
        if count is None:
            raise ConfigError("--shard auto: SLURM_ARRAY_TASK_ID is set but not "
                              "SLURM_ARRAY_TASK_COUNT", hint="run inside an sbatch --array job")
        low = _env_int(env, "SLURM_ARRAY_TASK_MIN") or 0
        step = _env_int(env, "SLURM_ARRAY_TASK_STEP") or 1
        offset = task - low
        if offset < 0 or step < 1 or offset % step or offset // step >= count:
            raise ConfigError(
                f"--shard auto: Slurm array task {task} is not one of {count} evenly spaced "
                f"ids from {low} (step {step})",
                hint="use a range such as --array=0-99%10, or give --shard K/N explicitly")
        return Shard(offset // step + 1, count)
    index = _env_int(env, "JOB_COMPLETION_INDEX")
    if index is not None:
        count = _env_int(env, SHARD_COUNT_ENV)
        if count is None:
            raise ConfigError(f"--shard auto: JOB_COMPLETION_INDEX is set but not "
                              f"{SHARD_COUNT_ENV}",
                              hint=f"set {SHARD_COUNT_ENV} to the Job's completions")
        if not 0 <= index < count:
            raise ConfigError(f"--shard auto: JOB_COMPLETION_INDEX {index} is outside 0 to "
                              f"{count - 1} ({SHARD_COUNT_ENV}={count})")
        return Shard(index + 1, count)
    raise ConfigError("--shard auto: no scheduler task found (neither SLURM_ARRAY_TASK_ID nor "
                      "JOB_COMPLETION_INDEX is set)",
                      hint="run it as a Slurm array or Kubernetes Indexed Job task, or give "
                           "--shard K/N")


def parse_shard(text: str | None, environ: Mapping[str, str] | None = None) -> Shard | None:
    """`--shard` as given: None (no sharding), "auto", or "K/N" with 1 <= K <= N."""
    if text is None or not text.strip():
        return None
    if text.strip().lower() == "auto":
        return shard_from_environment(environ)
    match = _SPEC.fullmatch(text)
    if match is None:
        raise ConfigError(f"--shard {text!r}: expected K/N (e.g. 1/4) or auto")
    return Shard(int(match.group(1)), int(match.group(2)))
