"""Deterministic shards: partition, stability, balance, scheduler environments (issue 16)."""

from __future__ import annotations

from collections import Counter

import pytest

from mammocli.errors import ConfigError
from mammocli.inference.shards import (
    SHARD_COUNT_ENV,
    Shard,
    in_shard,
    parse_shard,
    select_shard,
    shard_from_environment,
    shard_of,
)

IDS = [f"exam-{i:05d}" for i in range(20_000)]


@pytest.mark.parametrize("n", [1, 2, 3, 7, 64])
def test_every_exam_is_in_exactly_one_shard(n: int) -> None:
    ids = IDS[:3000]
    shards = [select_shard(ids, Shard(k, n), key=str) for k in range(1, n + 1)]
    assert sorted(i for s in shards for i in s) == sorted(ids)  # all, none twice
    for i in ids[:200]:
        assert [in_shard(i, k, n) for k in range(1, n + 1)].count(True) == 1


def test_adding_exams_moves_none_and_adding_a_shard_moves_few() -> None:
    before = {i: shard_of(i, 10) for i in IDS[:10_000]}
    after = {i: shard_of(i, 10) for i in IDS}  # 10,000 more exams
    assert all(after[i] == s for i, s in before.items())
    grown = {i: shard_of(i, 11) for i in IDS}
    moved = [i for i in IDS if grown[i] != after[i]]
    # about 1/11 move, and only into the new shard
    assert 0.07 < len(moved) / len(IDS) < 0.115
    assert {grown[i] for i in moved} == {11}


def test_shards_are_balanced_and_stable_across_runs() -> None:
    counts = Counter(shard_of(i, 8) for i in IDS)
    expected = len(IDS) / 8
    assert set(counts) == set(range(1, 9))
    assert max(abs(c - expected) for c in counts.values()) < 0.06 * expected
    # pinned values: the hash must never change between versions (resume across upgrades)
    ids = ("a", "exam1", "study-0123abcd")
    assert [shard_of(i, 5) for i in ids] == [1, 4, 3]
    assert [shard_of(i, 1000) for i in ids] == [380, 116, 714]
    assert shard_of("exam1", 1) == 1


def test_parse_shard_text() -> None:
    assert parse_shard(None) is None and parse_shard("") is None
    assert parse_shard(" 2 / 4 ") == Shard(2, 4)
    for bad in ("0/4", "5/4", "2/0", "2", "a/b", "-1/3"):
        with pytest.raises(ConfigError):
            parse_shard(bad, environ={})
    with pytest.raises(ConfigError, match="numbered 1 to 4") as info:
        parse_shard("0/4")
    assert "auto" in (info.value.hint or "")


@pytest.mark.parametrize(("env", "expected"), [
    ({"SLURM_ARRAY_TASK_ID": "0", "SLURM_ARRAY_TASK_COUNT": "10"}, Shard(1, 10)),
    ({"SLURM_ARRAY_TASK_ID": "9", "SLURM_ARRAY_TASK_COUNT": "10",
      "SLURM_ARRAY_TASK_MIN": "0"}, Shard(10, 10)),
    ({"SLURM_ARRAY_TASK_ID": "1", "SLURM_ARRAY_TASK_COUNT": "3",
      "SLURM_ARRAY_TASK_MIN": "1"}, Shard(1, 3)),
    ({"SLURM_ARRAY_TASK_ID": "3", "SLURM_ARRAY_TASK_COUNT": "3",
      "SLURM_ARRAY_TASK_MIN": "1"}, Shard(3, 3)),
    ({"SLURM_ARRAY_TASK_ID": "14", "SLURM_ARRAY_TASK_COUNT": "4",
      "SLURM_ARRAY_TASK_MIN": "2", "SLURM_ARRAY_TASK_STEP": "4"}, Shard(4, 4)),
    ({"JOB_COMPLETION_INDEX": "0", SHARD_COUNT_ENV: "3"}, Shard(1, 3)),
    ({"JOB_COMPLETION_INDEX": "2", SHARD_COUNT_ENV: "3"}, Shard(3, 3)),
])
def test_shard_auto_from_the_scheduler(env: dict[str, str], expected: Shard) -> None:
    assert parse_shard("auto", environ=env) == expected
    assert shard_from_environment(env) == expected


@pytest.mark.parametrize(("env", "words"), [
    ({}, "no scheduler task"),
    ({"SLURM_ARRAY_TASK_ID": "3"}, "SLURM_ARRAY_TASK_COUNT"),
    ({"SLURM_ARRAY_TASK_ID": "5", "SLURM_ARRAY_TASK_COUNT": "3",
      "SLURM_ARRAY_TASK_MIN": "1"}, "not one of 3"),
    ({"SLURM_ARRAY_TASK_ID": "x", "SLURM_ARRAY_TASK_COUNT": "3"}, "not a whole number"),
    ({"JOB_COMPLETION_INDEX": "1"}, SHARD_COUNT_ENV),
    ({"JOB_COMPLETION_INDEX": "3", SHARD_COUNT_ENV: "3"}, "outside 0 to 2"),
])
def test_shard_auto_errors_say_what_is_missing(env: dict[str, str], words: str) -> None:
    with pytest.raises(ConfigError, match=words):
        parse_shard("auto", environ=env)
