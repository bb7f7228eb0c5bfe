"""Helpers shared by the scripts and pytest-benchmark files in benches/ (not a benchmark itself): the commit, the
result tables (:func:`emit`), the panda recipes' flags and ``generate`` command lines, the training session they
time, device syncs, and the check of a kernel benchmark against its twin."""

from __future__ import annotations

import argparse
import os
import subprocess
from collections.abc import Callable, Sequence
from typing import Any

import torch

PROMPT = "A panda is dressed in armor, holding a spear in one hand and a shield in the other, realistic"
"""The original README's panda prompt (its commands A to H)."""
COMMAND_A = ("-O0", "-O2", "-O4", "--guidance", "controlnet")
"""The original README's command A (texture, SDXL + depth ControlNet), as ``pgc-fast generate`` flags."""
BACKGROUND = "../shared/data/background.png"
"""The panda runs' background image ($PGC_BG overrides it)."""


def commit() -> str:
    """The commit being measured: $PGC_COMMIT (the device gets a tree without .git), else git's HEAD."""
    if os.environ.get("PGC_COMMIT"):
        return os.environ["PGC_COMMIT"]
    try:
        return subprocess.check_output(
            ["git", "rev-parse", "--short", "HEAD"], text=True, stderr=subprocess.DEVNULL
        ).strip()
    except (OSError, subprocess.CalledProcessError):  # no git, or not a checkout
        return "unknown"


def emit(text: str, results: str | None, quiet: bool = False) -> None:
    """Print a markdown table block (unless ``quiet``) and append it to ``results`` when given."""
    if not quiet:
        print(text, flush=True)
    if results:
        with open(results, "a") as f:
            f.write("\n" + text + "\n")


def out_file(out_dir: str | None, name: str) -> str | None:
    """``out_dir/name`` (the directory created), or None without ``out_dir``: where a script's ``--out`` results go."""
    if not out_dir:
        return None
    os.makedirs(out_dir, exist_ok=True)
    return os.path.join(out_dir, name)


def vae_encode_step(vae, x: torch.Tensor):
    """One SDS-style VAE pass: encode 2x − 1, sample, backpropagate ones into the pixels x (requires grad)."""

    def step():
        z = vae.encode(x * 2 - 1).latent_dist.sample()
        torch.autograd.grad(z, x, torch.ones_like(z))

    return step


def vae_input(b: int, dtype: torch.dtype, channels_last: bool) -> torch.Tensor:
    x = torch.rand(b, 3, 1024, 1024, device="cuda", dtype=dtype)
    if channels_last:
        x = x.to(memory_format=torch.channels_last)
    return x.requires_grad_(True)


def script_parser(doc: str | None) -> argparse.ArgumentParser:
    """A script's argument parser: its docstring as the description, laid out as written."""
    return argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)


def add_panda_args(
    ap: argparse.ArgumentParser,
    *,
    views: int,
    views_help: str | None = None,
    bg: str | None = BACKGROUND,
    iters: int | None = None,
    warmup: int | None = None,
) -> None:
    """The flags of the scripts that time the panda recipes' steps: --mesh ($PGC_PANDA), --bg ($PGC_BG, else ``bg``),
    --views, --res, --iters and --warmup (when given defaults), --model, --device, --results."""
    ap.add_argument("--mesh", default=os.environ.get("PGC_PANDA", "../shared/data/panda_spear_shield.obj"))
    ap.add_argument("--bg", default=os.environ.get("PGC_BG", bg))
    ap.add_argument("--views", type=int, default=views, help=views_help)
    ap.add_argument("--res", type=int, default=1024)
    if iters is not None:
        ap.add_argument("--iters", type=int, default=iters)
    if warmup is not None:
        ap.add_argument("--warmup", type=int, default=warmup)
    ap.add_argument("--model", default="sdxl-random", help="tiny-sdxl with --device cpu: a smoke run")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--results", default=None)


def panda_argv(
    flags: Sequence[str], *, mesh: str, model: str, device: str, workspace: str | None = None, extra: Sequence[str] = ()
) -> list[str]:
    """``pgc-fast generate`` argv: ``flags`` (a recipe) on ``mesh`` with the panda prompt, then ``--workspace DIR
    --force`` when given, then ``extra``."""
    argv = ["generate", *flags, "--text", PROMPT, "--mesh_path", mesh, "--model", model, "--device", device]
    if workspace is not None:
        argv += ["--workspace", workspace, "--force"]
    return argv + list(extra)


def train_session(cfg, device: str, objective=None, init: Callable[[Any], None] | None = None):
    """Everything ``pgc_fast.train.run`` sets up before its loop, for stepping ``train_step`` directly: (step,
    scene, objective, optimizer, autocast dtype). ``objective``: a guidance objective to share (set up already);
    ``init(scene)`` runs before the rest is built (DMTet's geometry initialisation, timed by the caller)."""
    from pgc_fast.train.geometry import Scene
    from pgc_fast.train.objectives import GuidanceObjective, RunContext
    from pgc_fast.train.runtime import resolve_precision, seed_everything
    from pgc_fast.train.step import make_optimizer, train_step
    from pgc_fast.train.workspace import prepare_workspace

    dev = torch.device(device)
    seed_everything(cfg.optim.seed)
    autocast_dtype, use_scaler = resolve_precision(cfg, dev)
    scaler = torch.amp.GradScaler(dev.type, init_scale=2.0**10, enabled=use_scaler)
    scene = Scene.from_config(cfg, dev)
    if init is not None:
        init(scene)
    ctx = RunContext(cfg, dev, autocast_dtype, scaler, scene, prepare_workspace(cfg))
    if objective is None:
        objective = GuidanceObjective()
        objective.setup(ctx)
    optimizer = make_optimizer(cfg, scene)
    state = {"step": 0}

    def step() -> None:
        train_step(state["step"], ctx, objective, optimizer)
        state["step"] += 1

    return step, scene, objective, optimizer, autocast_dtype


def sync(device: str | torch.device) -> None:
    """Wait for ``device``'s queued work (a no-op off CUDA)."""
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def bench_against_twin(benchmark, ours: Callable[[], tuple], twin: Callable[[], tuple], **tol: float) -> None:
    """pytest-benchmark ``ours()`` (synchronised on CUDA), then check its (output, gradients) against ``twin()``'s,
    in float32, with ``torch.testing.assert_close(**tol)``."""

    def run():
        res = ours()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        return res

    out, grads = benchmark(run)
    ref, rgrads = twin()
    for a, r in zip((out, *grads), (ref, *rgrads), strict=True):
        torch.testing.assert_close(a.float(), r.float(), **tol)


def gpu_table(*columns: str) -> None:
    """Start a kernel bench's GPU table: needs CUDA; prints the device line and the markdown header of ``columns``."""
    assert torch.cuda.is_available(), "the GPU table needs CUDA"
    print(f"device: {torch.cuda.get_device_name()}, torch {torch.__version__}")
    print("| " + " | ".join(columns) + " |\n" + "|---" * len(columns) + "|")
