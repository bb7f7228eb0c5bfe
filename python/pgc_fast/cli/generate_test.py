"""``pgc-fast generate --workspace W --test [--ckpt latest|FILE]``: render a trained (or interrupted) workspace
without training (the original's ``--test``; train/test_render.py does the work).

The workspace's checkpoint holds the run's configuration, so ``--workspace`` (and ``--output.root``) is all a test
needs; the original's full command line with ``--test`` added works too. Of the other settings given, those of
train/test_render.py's TEST_OVERRIDABLE (device, render backend, frame count and size, export size, where the mesh
and the model are) apply; the rest are ignored with one note, since the run is rendered as it was trained.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from pgc_fast.cli.generate import CliError, config_yaml, resolve_generate

# The original's flags that say where things are (its --mesh_path default in test mode was the workspace's mesh).
_ORIGINAL_WHERE = {"workspace": "output.workspace", "mesh_path": "mesh.path", "gpus": "runtime.gpus"}
_CONVENIENCE = {"model": "guidance.model", "device": "runtime.device", "texture": "texture.kind"}


def given_fields(args: argparse.Namespace) -> tuple[dict[str, Any], list[str]]:
    """(dotted config fields the command line gave explicitly, the original's flags given that set no field here)."""
    ns = vars(args)
    fields: dict[str, Any] = {}
    other: list[str] = []
    for k, v in ns.items():
        if k.startswith("cfg__"):
            fields[k[len("cfg__") :].replace("__", ".")] = tuple(v) if isinstance(v, list) else v
        elif k.startswith("orig__") and k[len("orig__") :] not in ("test", "ckpt"):
            name = k[len("orig__") :]
            if name in _ORIGINAL_WHERE:
                fields[_ORIGINAL_WHERE[name]] = v
            else:
                other.append(f"-{name}" if name[1:].isdigit() and name[0] == "O" else f"--{name}")
        elif k in _CONVENIENCE:
            fields[_CONVENIENCE[k]] = v
    return fields, other


def cmd_generate_test(args: argparse.Namespace) -> int:
    """Resolve where the workspace is, then render it (train.test_render.run_test); --dry-run only checks."""
    from pgc_fast.train.test_render import TEST_OVERRIDABLE, load_test_state, run_test, test_config

    if getattr(args, "force", False) or getattr(args, "resume", False) or args.config or args.preset:
        raise CliError(
            "--test renders a checkpoint and never trains: --force, --resume, --config and --preset do not apply"
        )
    cfg, _ = resolve_generate(args)  # only where the workspace is: the checkpoint holds the rest
    fields, other = given_fields(args)
    ignored = other + [f"--{k}" for k in fields if k not in TEST_OVERRIDABLE]
    if ignored:
        print(
            f"note: --test renders the run as its checkpoint was trained; ignored: {' '.join(sorted(ignored))}",
            file=sys.stderr,
        )
    overrides = {k: v for k, v in fields.items() if k in TEST_OVERRIDABLE}
    ckpt = getattr(args, "orig__ckpt", "latest")
    if args.dry_run:
        from pathlib import Path

        from pgc_fast import config as C

        state = load_test_state(Path(cfg.workspace_path), ckpt)
        where = {"output.workspace": cfg.output.workspace, "output.root": cfg.output.root}
        test_cfg = C.validate(test_config(state, {**overrides, **where}))
        print(config_yaml(test_cfg), end="")
        print(f"# ok: --test would render step {state['step']} of {cfg.workspace_path}", file=sys.stderr)
        return 0
    result = run_test(cfg, overrides, ckpt=ckpt)
    print(f"done: {result.workspace / 'results'} (step {result.step})")
    return 0
