"""Start-up cost (issue 18): the CLI starts without torch, and OpenMP threads stop spinning on
a busy machine (benchmarks/bench_startup.py measures what that saves)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from mammocli.inference import devices


@pytest.fixture
def environ(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    monkeypatch.setattr(os, "environ", env)
    modules = dict(sys.modules)
    modules.pop("torch", None)  # as in a fresh CLI process: torch not loaded yet
    monkeypatch.setattr(sys, "modules", modules)
    monkeypatch.setattr(devices, "available_cpus", lambda: 2)
    return env


def test_a_busy_machine_gets_passive_openmp_threads(environ: dict[str, str]) -> None:
    assert devices.wait_passively_when_busy(load=3.2, others=2)
    assert environ["OMP_WAIT_POLICY"] == "PASSIVE"


@pytest.mark.parametrize(("load", "others"), [(0.4, 3), (2.0, 0)])
def test_a_quiet_machine_keeps_spinning_threads(environ: dict[str, str], load: float,
                                                others: int) -> None:
    # (2.0, 0): the average still counts an earlier run, but nothing else runs now.
    assert not devices.wait_passively_when_busy(load=load, others=others)
    assert "OMP_WAIT_POLICY" not in environ


def test_the_users_policy_and_a_loaded_torch_are_left_alone(environ: dict[str, str]) -> None:
    environ["OMP_WAIT_POLICY"] = "ACTIVE"
    assert not devices.wait_passively_when_busy(load=5.0, others=4)
    assert environ["OMP_WAIT_POLICY"] == "ACTIVE"
    del environ["OMP_WAIT_POLICY"]
    sys.modules["torch"] = devices  # type: ignore[assignment]  # any module: "already loaded"
    assert not devices.wait_passively_when_busy(load=5.0, others=4)
    assert "OMP_WAIT_POLICY" not in environ


def test_others_running_reads_proc_loadavg() -> None:
    others = devices._others_running(samples=2, pause=0)
    if not os.path.exists("/proc/loadavg"):
        assert others is None
    else:
        assert others is not None and others >= 0


def test_the_cli_starts_without_torch_and_sets_the_policy_before_loading_it() -> None:
    code = (
        "import os, sys\n"
        "import mammocli.cli.app\n"
        "assert 'torch' not in sys.modules, 'the CLI import loaded torch'\n"
        "from mammocli.inference import devices\n"
        "os.environ.pop('OMP_WAIT_POLICY', None)\n"
        "os.getloadavg = lambda: (3.0, 3.0, 3.0)\n"
        "devices._others_running = lambda: 2\n"
        "devices.available_cpus = lambda: 2\n"
        "devices.configure_threads(0)\n"
        "assert 'torch' in sys.modules\n"
        "print(os.environ['OMP_WAIT_POLICY'])\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=False, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "PASSIVE"


def test_the_predict_command_sets_the_policy_before_its_module_loads_torch() -> None:
    code = (
        "import os, sys\n"
        "from mammocli.cli.app import load_command\n"
        "from mammocli.inference import devices\n"
        "os.environ.pop('OMP_WAIT_POLICY', None)\n"
        "os.getloadavg = lambda: (3.0, 3.0, 3.0)\n"
        "devices._others_running = lambda: 2\n"
        "devices.available_cpus = lambda: 2\n"
        "load_command('scan')\n"
        "assert 'OMP_WAIT_POLICY' not in os.environ  # scan runs no network\n"
        "load_command('predict')\n"
        "assert 'torch' in sys.modules\n"
        "print(os.environ['OMP_WAIT_POLICY'])\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=False, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "PASSIVE"
