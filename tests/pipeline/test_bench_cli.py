"""`pgc-fast bench`: argument handling, and the CPU path (pytest-benchmark of the torch twins) dispatches."""

import subprocess

import pytest

from pgc_fast import cli


def test_bench_parser_defaults_and_choices():
    args = cli.build_parser().parse_args(["bench"])
    assert args.command == "bench" and args.suite == "kernels"
    assert cli.build_parser().parse_args(["bench", "step", "--results", "r.md"]).results == "r.md"
    with pytest.raises(SystemExit):
        cli.build_parser().parse_args(["bench", "nonsense"])


def test_bench_on_cpu_runs_the_pytest_benchmark_files(monkeypatch):
    import torch

    calls = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(subprocess, "call", lambda cmd, **kw: calls.append((cmd, kw)) or 0)
    assert cli.main(["bench", "step"]) == 0
    ((cmd, kw),) = calls
    assert cmd[1:4] == ["-m", "pytest", "-q"] and "--benchmark-enable" in cmd
    files = [c for c in cmd if c.endswith(".py")]
    assert files and all("/benches/bench_" in f for f in files) and not any(f.endswith("bench_step.py") for f in files)
    assert "kernels" in kw["env"]["PYTHONPATH"]


def test_bench_on_gpu_dispatches_scripts(monkeypatch):
    import torch

    calls = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(subprocess, "call", lambda cmd, **kw: calls.append(cmd) or 0)
    assert cli.main(["bench", "all", "--results", "out.md", "--", "--iters", "3"]) == 0
    scripts = [c[1].rsplit("/", 1)[-1] for c in calls]
    assert scripts == [cli.bench.BENCH_SUITES[k][0] for k in cli.bench.BENCH_SUITES if k != "all"]
    for c in calls:
        assert c[-2:] == ["--iters", "3"] or c[-4:-2] == ["--iters", "3"]
        assert ("--results" in c) == cli.bench.BENCH_SUITES[
            [k for k, v in cli.bench.BENCH_SUITES.items() if v[0] == c[1].rsplit("/", 1)[-1]][0]
        ][1]
