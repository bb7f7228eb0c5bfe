"""pgc-fast generate: text-to-texture on a mesh (and DMTet shape refinement); argv → RunConfig → train.run.

Every config field is a flag --<section>.<field> whose help is the field's docstring; --preset NAME starts from a
named preset; the original PGC-3D main.py flags are accepted as written (config/original_flags.py applies its
presets and knock-on rules in its code order), so the README's sample commands run unchanged. An explicit value
that the original's presets overwrote is kept (or, where the preset defines the command, overridden) with a note;
flags that have no effect are named; features not implemented yet are refused before anything is loaded.
Errors print one line (--debug shows the traceback) and leave no workspace behind. Help: cli/generate_help.py.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import sys
import typing
from pathlib import Path
from typing import Any, Literal

from pgc_fast import config as C
from pgc_fast.cli.generate_help import DESCRIPTION, ORIGINAL_HELP, FullHelp, PlainFormatter, ShortHelp, plain
from pgc_fast.config.original_flags import (
    DEAD_FLAG_REASONS,
    DEAD_FLAGS,
    NOT_REPRODUCED,
    ORIGINAL_FLAGS,
    apply_original_presets,
    default_original_options,
    original_to_config,
)


def _unwrap_optional(hint: Any) -> tuple[Any, bool]:
    if typing.get_origin(hint) in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        if len(args) == 1:
            return args[0], True
    return hint, False


def _none_or(conv):
    def parse(s: str):
        return None if s.lower() in ("none", "null", "off") else conv(s)

    parse.__name__ = getattr(conv, "__name__", "value")
    return parse


def _add_config_flags(parser: argparse.ArgumentParser) -> None:
    for sec in C.SECTIONS:
        cls = type(getattr(C.RunConfig(), sec))
        title = plain(cls.__doc__ or "").split(". ")[0].rstrip(".")
        grp = parser.add_argument_group(f"--{sec}.* ({title})")
        hints = typing.get_type_hints(cls)
        docs = C.field_docs(cls)
        for f in dataclasses.fields(cls):
            hint, optional = _unwrap_optional(hints[f.name])
            default = getattr(getattr(C.RunConfig(), sec), f.name)
            help_ = f"{plain(docs.get(f.name, ''))} (default: {default!r})".replace("%", "%%")
            kw: dict[str, Any] = {"dest": f"cfg__{sec}__{f.name}", "default": argparse.SUPPRESS, "help": help_}
            origin = typing.get_origin(hint)
            if hint is bool:
                grp.add_argument(f"--{sec}.{f.name}", action=argparse.BooleanOptionalAction, **kw)
                continue
            if origin is Literal:
                kw["choices"] = typing.get_args(hint)
            elif origin is tuple:
                args = typing.get_args(hint)
                kw["type"] = args[0]
                kw["nargs"] = "*" if (len(args) == 2 and args[1] is Ellipsis) else len(args)
                kw["metavar"] = args[0].__name__.upper()
            else:
                kw["type"] = _none_or(hint) if optional else hint
                kw["metavar"] = f"{hint.__name__.upper()}{'|none' if optional else ''}"
            grp.add_argument(f"--{sec}.{f.name}", **kw)


_KINDS: dict[str, dict[str, Any]] = {
    "bool": {"action": "store_true"},
    "str": {"type": str},
    "int": {"type": int},
    "float": {"type": float},
    "floats": {"type": float, "nargs": "+"},
    "strs": {"type": str, "nargs": "+"},
    "float2": {"type": float, "nargs": 2},
}


def _add_original_flags(parser: argparse.ArgumentParser) -> None:
    grp = parser.add_argument_group("the original PGC-3D main.py flags (accepted as written)")

    def add(name: str, kind: str, help_: str) -> None:
        flags = [f"-{name}"] if name.startswith("O") and name[1:].isdigit() else [f"--{name}"]
        kw: dict[str, Any] = {"dest": f"orig__{name}", "default": argparse.SUPPRESS, "help": help_, **_KINDS[kind]}
        if kind != "bool":
            kw["metavar"] = name.upper()
        grp.add_argument(*flags, **kw)

    for name, (default, kind) in ORIGINAL_FLAGS.items():
        text = ORIGINAL_HELP[name] + ("" if kind == "bool" else f" (original default {default!r})")
        add(name, kind, text.replace("%", "%%"))
    for name, kind in DEAD_FLAGS.items():
        add(name, kind, argparse.SUPPRESS)
    for name, (kind, _, why) in NOT_REPRODUCED.items():
        add(name, kind, f"not reproduced: {why}")


def add_generate_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "generate",
        help="text-to-texture on a mesh, optionally refining its shape (accepts the original main.py flags)",
        description=DESCRIPTION,
        formatter_class=PlainFormatter,
        allow_abbrev=False,
        add_help=False,
        usage="pgc-fast generate [--preset NAME | -O0 ... -O4] --text PROMPT --mesh_path FILE [options]",
    )
    new = p.add_argument_group("pgc-fast")
    new.add_argument("-h", "--help", action=ShortHelp)
    new.add_argument("--help-all", action=FullHelp)
    new.add_argument("--preset", choices=sorted(C.PRESETS), default=None, help="start from a named preset")
    new.add_argument(
        "--model",
        default=argparse.SUPPRESS,
        help="hub id, local path or built-in (toy-sd, tiny-sd, tiny-sdxl, sd15-random, sdxl-random)",
    )
    new.add_argument("--device", choices=("auto", "cpu", "cuda"), default=argparse.SUPPRESS, help="compute device")
    new.add_argument("--texture", choices=("field", "uv"), default=argparse.SUPPRESS, help="texture representation")
    new.add_argument(
        "--env_path", default=argparse.SUPPRESS, help="PBR environment light: a 2:1 lat-long .hdr or .exr file"
    )
    new.add_argument(
        "--learn_light", action="store_true", default=argparse.SUPPRESS, help="PBR: optimise the environment too"
    )
    new.add_argument("--dry-run", action="store_true", help="validate and print the resolved config; load no model")
    new.add_argument("--force", action="store_true", default=argparse.SUPPRESS, help="overwrite an existing workspace")
    new.add_argument(
        "--resume", action="store_true", default=argparse.SUPPRESS, help="continue from the last checkpoint"
    )
    new.add_argument("--config", default=None, help="start from a config.yaml written by an earlier run")
    new.add_argument("--debug", action="store_true", help="show the traceback of an error")
    _add_original_flags(p)
    _add_config_flags(p)
    return p


class CliError(Exception):
    """A problem with the command line (exit status 2)."""


def resolve_generate(args: argparse.Namespace) -> tuple[C.RunConfig, list[str]]:
    """Turn parsed ``generate`` arguments into a RunConfig (not yet validated) plus notes for the user."""
    ns = vars(args)
    given_orig = {k[len("orig__") :]: v for k, v in ns.items() if k.startswith("orig__")}
    notes = _check_original_flags(given_orig)
    if args.config:
        cfg = _from_config_file(args.config, given_orig)
    elif args.preset:
        cfg = _from_preset(args.preset, given_orig)
    else:
        cfg = _from_original_flags(given_orig, notes)
    for k in ("control_type", "control_scale"):
        if k in given_orig and not cfg.guidance.controlnets:
            notes.append(f"--{k} is ignored: no ControlNet is used (--guidance controlnet, or -O2 without -O4)")
    return _apply_overrides(cfg, ns), notes


def _check_original_flags(given: dict[str, Any]) -> list[str]:
    """Refuse the original's flags for features not implemented yet; name those that have no effect here."""
    refused = [
        f"--{k} is not reproduced by pgc-fast: {NOT_REPRODUCED[k][2]}"
        for k, v in given.items()
        if k in NOT_REPRODUCED and v != NOT_REPRODUCED[k][1]
    ]
    for k, v in given.items():  # before the mapping: nan >= 0 is False, so a nan threshold would read as "off"
        if ORIGINAL_FLAGS.get(k, (None, ""))[1] in ("float", "floats", "float2"):
            if not all(math.isfinite(x) for x in (v if isinstance(v, list) else [v])):
                refused.append(f"--{k} must be a finite number, got {_fmt(v)}")
    if given.get("n_targets", 0) > 0:
        refused.append(f"--n_targets > 0 (GMM local-part cameras) is {C.UNSUPPORTED_MESSAGE}")
    if refused:
        raise C.ConfigError(refused)
    notes = [
        f"--{k} is ignored ({DEAD_FLAG_REASONS.get(k, 'it had no effect in the original either')})"
        for k in given
        if k in DEAD_FLAGS
    ]
    notes += [f"--{k} {_fmt(given[k])} is ignored (it did nothing at this value)" for k in given if k in NOT_REPRODUCED]
    if "ckpt" in given and not given.get("test"):
        notes.append("--ckpt is ignored: it picks the checkpoint --test renders (--resume continues the latest)")
    if "guidance_o" in given and "clip" not in str(given["guidance_o"]):
        notes.append(f"--guidance_o {given['guidance_o']} is ignored (only a value containing 'clip' did anything)")
    guidance = str(given.get("guidance", ""))
    if "sd_version" in given and "xl" not in guidance and not given.get("O4"):
        notes.append("--sd_version is ignored: only the SDXL family (-O4 or an 'xl' --guidance) reads it")
    if (
        "albedo_iters" in given
        and not given.get("albedo")
        and not given.get("pbr")
        and (given.get("fix_mesh") or given.get("O2"))
    ):
        notes.append("--albedo_iters is ignored: the fixed mesh renders albedo throughout (as in the original)")
    return notes + _ignored_presets(given)


def _ignored_presets(given: dict[str, Any]) -> list[str]:
    """The original's -O1 … -O4 are an elif chain (only -O2 -O4 combine): say which ones it skips."""
    chain = [o for o in ("O1", "O2", "O3", "O4") if given.get(o)]
    if len(chain) < 2:
        return []
    first = chain[0]
    skipped = [o for o in chain[1:] if not (first == "O2" and o == "O4")]
    return [
        f"-{o} is ignored: the original's presets -O1, -O2, -O3, -O4 exclude each other and -{first} comes first "
        "(only -O2 -O4 combine)"
        for o in skipped
    ]


def _presets_given(given_orig: dict[str, Any]) -> list[str]:
    return [o for o in ("O0", "O1", "O2", "O3", "O4") if given_orig.get(o)]


def _from_config_file(path: str, given_orig: dict[str, Any]) -> C.RunConfig:
    import yaml

    if given_orig:
        raise CliError("--config cannot be combined with the original's flags; use --section.field overrides")
    try:
        with open(path) as fh:
            data = yaml.safe_load(fh)
    except OSError as e:
        raise CliError(f"--config {path}: cannot read it ({e.strerror or e})") from e
    except yaml.YAMLError as e:
        raise CliError(f"--config {path}: not valid YAML ({str(e).splitlines()[0]})") from e
    data = data.get("config", data) if isinstance(data, dict) else None
    if not isinstance(data, dict) or not all(isinstance(v, (dict, type(None))) for v in data.values()):
        raise CliError(f"--config {path}: expected a config.yaml written by pgc-fast (sections of settings)")
    return C.from_dict(data)


def _from_preset(name: str, given_orig: dict[str, Any]) -> C.RunConfig:
    presets_given = _presets_given(given_orig)
    if presets_given:
        raise CliError(f"--preset cannot be combined with {' '.join('-' + o for o in presets_given)}")
    cfg = C.PRESETS[name]
    direct = {k: v for k, v in given_orig.items() if k in ORIGINAL_FLAGS}
    if direct:
        # Without -O flags there is no knock-on logic: map each given original flag on its own.
        opt = default_original_options()
        for k, v in direct.items():
            setattr(opt, k, v)
        full = original_to_config(opt)
        mapped = _changed_fields(original_to_config(default_original_options()), full)
        cfg = C.override(cfg, **{k: v for k, v in mapped.items() if k not in ("mesh.shape",)})
        if cfg.guidance.controlnets and "control_type" in direct:  # the preset's ControlNets, retyped
            cfg = C.override(cfg, **{"guidance.controlnets": tuple(direct["control_type"])})
        if cfg.guidance.controlnets and "control_scale" in direct:
            scales = tuple(float(x) for x in direct["control_scale"])
            n = len(cfg.guidance.controlnets)
            cfg = C.override(cfg, **{"guidance.control_scales": scales * n if len(scales) == 1 else scales})
    return cfg


# Values the original's presets and knock-on rules overwrite although the user gave them: an explicit value is
# kept (a bug of the original: the SDXL rule replaced --bs/--iters/--res_fine, -O0 replaced --grad_suppress_type).
# Other overwritten flags (-O2's --guidance) define what the preset means: they are overridden with a note.
KEEP_EXPLICIT = (
    "bs",
    "iters",
    "res_fine",
    "grad_clip_rgb",
    "grad_suppress_type",
    "optimizer",
    "scheduler",
    "smooth_iters",
    "focal_range",
    "focal_range_fine",
)


def _explicit_values_win(given: dict[str, Any], opt: argparse.Namespace, notes: list[str]) -> None:
    for k, v in given.items():
        if k not in ORIGINAL_FLAGS or (k.startswith("O") and k[1:].isdigit()):
            continue
        now = getattr(opt, k)
        if now == v or (k == "guidance" and now == v + "xl"):  # -O4 appends 'xl': the original's composition
            continue
        if k in KEEP_EXPLICIT:
            notes.append(f"--{k} {_fmt(v)} kept (the original's presets would have set {_fmt(now)})")
            setattr(opt, k, v)
            if k == "iters" and opt.albedo:
                opt.albedo_iters = opt.iters
        elif k == "lr_fine":
            notes.append(f"--lr_fine {_fmt(v)}: geometry rate divided by 20 for --no_normal, as the original did")
        else:
            notes.append(f"--{k} {_fmt(v)} overridden: the original's presets set it to {_fmt(now)}")


def _fmt(v: Any) -> str:
    return " ".join(map(str, v)) if isinstance(v, list) else str(v)


def _from_original_flags(given_orig: dict[str, Any], notes: list[str]) -> C.RunConfig:
    """The original's flags with its defaults, presets and knock-on rules, in its code order."""
    opt = default_original_options()
    for k, v in given_orig.items():
        if k in ORIGINAL_FLAGS:
            setattr(opt, k, v)
    # pgc-fast is texture-first: without any preset and without shape flags, texture the fixed mesh.
    if not _presets_given(given_orig) and not opt.fix_mesh:
        opt.fix_mesh = True
        notes.append("no -O preset given: texturing the fixed mesh (the original's default was DMTet; use -O1)")
    apply_original_presets(opt)
    _explicit_values_win(given_orig, opt, notes)
    return original_to_config(opt)


def _apply_overrides(cfg: C.RunConfig, ns: dict[str, Any]) -> C.RunConfig:
    """(2) the convenience flags (--model, --device, --texture, --env_path, --learn_light, --force, --resume), then
    (3) --section.field."""
    conv = {}
    if "model" in ns:
        conv["guidance.model"] = ns["model"]
    if "device" in ns:
        conv["runtime.device"] = ns["device"]
    if "texture" in ns:
        conv["texture.kind"] = ns["texture"]
    if "env_path" in ns:
        conv["pbr.env_path"] = ns["env_path"]
    if ns.get("learn_light"):
        conv["pbr.learn_light"] = True
    if ns.get("force"):
        conv["output.force"] = True
    if ns.get("resume"):
        conv["output.resume"] = True
    if conv:
        cfg = C.override(cfg, **conv)
    explicit = {k[len("cfg__") :].replace("__", "."): v for k, v in ns.items() if k.startswith("cfg__")}
    explicit = {k: (tuple(v) if isinstance(v, list) else v) for k, v in explicit.items()}
    if explicit:
        cfg = C.override(cfg, **explicit)
    return cfg


def _changed_fields(a: C.RunConfig, b: C.RunConfig) -> dict[str, Any]:
    out = {}
    for sec in C.SECTIONS:
        sa, sb = getattr(a, sec), getattr(b, sec)
        for f in dataclasses.fields(sa):
            if getattr(sa, f.name) != getattr(sb, f.name):
                out[f"{sec}.{f.name}"] = getattr(sb, f.name)
    return out


def config_yaml(cfg: C.RunConfig) -> str:
    import yaml

    return yaml.safe_dump(C.to_dict(cfg), sort_keys=False)


def _say(e: BaseException) -> str:
    """An error as the user reads it: one line per problem, the single-problem ConfigError on one line."""
    if isinstance(e, C.ConfigError) and len(e.problems) == 1:
        return e.problems[0]
    return str(e)


def cmd_generate(args: argparse.Namespace, argv: list[str] | None = None) -> int:
    """Resolve, validate (--dry-run stops there), check the machine and the mesh, then launch or run.

    Exit status: 0 done, 2 refused before anything was created (command line, configuration, machine, mesh,
    workspace, model weights), 1 a run that failed (non-finite training) or an internal error."""
    try:
        return _generate(args, argv)
    except Exception as e:  # the user's terminal gets one line; --debug re-raises
        if args.debug:
            raise
        code, text = _classify(e)
        if code == 1 and not text.startswith("training stopped"):
            text = f"internal error: {type(e).__name__}: {text} (--debug shows the traceback)"
        from pgc_fast.train import distributed as D

        if D.env_info().is_main:  # every rank raises the same error; say it once
            print(f"pgc-fast generate: {text}", file=sys.stderr)
        return code


def _classify(e: Exception) -> tuple[int, str]:
    """(exit status, message) of an error raised by a generate run."""
    from pgc_fast.train import distributed as D
    from pgc_fast.train.checkpoint import CheckpointError
    from pgc_fast.train.dmtet import EmptySurfaceError
    from pgc_fast.train.metrics import NonFiniteError
    from pgc_fast.train.preflight import PreflightError
    from pgc_fast.train.workspace import WorkspaceExistsError

    refused: tuple[type[Exception], ...] = (
        C.ConfigError,
        CliError,
        PreflightError,
        WorkspaceExistsError,
        CheckpointError,
        FileNotFoundError,
        D.RankZeroError,
    )
    try:
        from pgc_fast.guidance import GuidanceLoadError  # missing weights: one clear message, no traceback

        refused += (GuidanceLoadError,)
    except ImportError:  # pragma: no cover - guidance dependencies not installed
        pass
    if isinstance(e, refused):
        return 2, _say(e)
    if isinstance(e, (NonFiniteError, EmptySurfaceError)):
        return 1, str(e)
    return 1, str(e).strip().splitlines()[0] if str(e).strip() else ""


def _generate(args: argparse.Namespace, argv: list[str] | None) -> int:
    if getattr(args, "orig__test", False):  # render a trained workspace, no training (cli/generate_test.py)
        from pgc_fast.cli.generate_test import cmd_generate_test

        return cmd_generate_test(args)
    cfg, notes = resolve_generate(args)
    for note in notes:
        print(f"note: {note}", file=sys.stderr)
    if args.dry_run:
        print(config_yaml(cfg), end="")
    C.validate(cfg)
    from pgc_fast.train.preflight import check_mesh, machine_notes, preflight

    if args.dry_run:
        check_mesh(cfg)
        for why in machine_notes(cfg):  # the configuration may be meant for another machine: say, do not refuse
            print(f"note: on this machine the run would be refused: {why}", file=sys.stderr)
        procs = max(1, cfg.n_gpus)
        per = f"{procs * cfg.views_per_step} views/step" + (
            f" ({procs} processes × {cfg.views_per_step})" if procs > 1 else ""
        )
        print(f"# ok: valid configuration; workspace {cfg.workspace_path}; {per}", file=sys.stderr)
        return 0
    preflight(cfg)
    return _launch_or_run(cfg, argv)


def _launch_or_run(cfg: C.RunConfig, argv: list[str] | None) -> int:
    from pgc_fast.train import distributed as D
    from pgc_fast.train.trainer import run
    from pgc_fast.train.workspace import check_workspace

    if cfg.n_gpus > 1 and not D.launched_by_torchrun() and argv is not None:
        # The original's --gpus: one process per listed GPU, now through torchrun (pgc_fast.train.distributed).
        check_workspace(cfg)  # fail here, once, rather than in every worker
        kind = "CPU processes (gloo: --device cpu)" if cfg.runtime.device == "cpu" else "processes, one per GPU"
        print(
            f"note: --gpus {cfg.runtime.gpus}: launching {cfg.n_gpus} {kind} with torchrun "
            f"({cfg.optim.batch_size} views each, {cfg.n_gpus * cfg.optim.batch_size} per step)",
            file=sys.stderr,
        )
        return D.relaunch(argv, cfg.runtime.gpus, cuda=cfg.runtime.device != "cpu")
    created = Path(cfg.workspace_path).absolute()  # the outermost folder this run will create, if any
    while not created.parent.exists():
        created = created.parent
    existed = created.exists()
    try:
        result = run(cfg)
    except Exception:
        if (
            not existed
            and D.env_info().is_main
            and created.is_dir()
            and not any(p.is_file() for p in created.rglob("*"))
        ):
            import shutil

            shutil.rmtree(created, ignore_errors=True)  # created by this run, nothing written: leave nothing behind
        raise
    if D.env_info().is_main:
        print(f"done: {result.workspace}")
    D.finish(exit_code=0)  # every rank: wait for rank 0's exports, then leave together (gloo: exits here)
    return 0
