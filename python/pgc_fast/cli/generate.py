"""The ``pgc-fast`` command line: ``generate`` (text-to-texture), ``demo``, ``image`` and ``version``.

``pgc-fast generate`` is derived from :class:`pgc_fast.config.RunConfig`: every config field is a flag
``--<section>.<field>`` whose help is the field's docstring, and ``--preset NAME`` starts from a named preset.
It also accepts the original PGC-3D's ``main.py`` flags as written (the original's main.py, its argparse flags and -O
preset block), so the README's
sample commands run unchanged::

    pgc-fast generate -O0 -O2 -O4 --guidance controlnet --text "A panda ..." --workspace panda/sdxl \
        --gpus 0,1 --mesh_path data/panda_spear_shield.obj

Resolution order: (1) the original's flags with its defaults, presets ``-O0 … -O4`` and knock-on rules applied
exactly in the original's code order (:func:`apply_original_presets`), mapped onto a ``RunConfig``
(:func:`original_to_config`) — or ``--preset`` when given; (2) the new convenience flags (``--model``,
``--device``, ``--texture``, ``--force``, ``--resume``); (3) explicit ``--section.field`` flags. Then
:func:`pgc_fast.config.validate` runs once. ``--dry-run`` prints the resolved config and loads no model.

Two deliberate departures from the original, both printed as notes: an explicit ``--bs``/``--iters``/``--res_fine``
wins over the SDXL knock-on rule that silently overwrote it (a bug of the original), and without any ``-O`` flag
``generate`` textures the fixed mesh (the original's bare default was DMTet shape optimisation, which must be
asked for with ``-O1``).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import typing
from typing import Any, Literal

from pgc_fast import config as C
from pgc_fast.config.original_flags import (
    DEAD_FLAGS,
    ORIGINAL_FLAGS,
    UNSUPPORTED_FLAGS,
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
        grp = parser.add_argument_group(f"{sec} ({(cls.__doc__ or '').strip()})")
        hints = typing.get_type_hints(cls)
        docs = C.field_docs(cls)
        for f in dataclasses.fields(cls):
            hint, optional = _unwrap_optional(hints[f.name])
            dest = f"cfg__{sec}__{f.name}"
            flag = f"--{sec}.{f.name}"
            default = getattr(C.RunConfig(), sec).__getattribute__(f.name)
            help_ = f"{docs.get(f.name, '')} (default: {default!r})".replace("%", "%%")
            kw: dict[str, Any] = {"dest": dest, "default": argparse.SUPPRESS, "help": help_}
            origin = typing.get_origin(hint)
            if hint is bool:
                grp.add_argument(flag, action=argparse.BooleanOptionalAction, **kw)
                continue
            if origin is Literal:
                kw["choices"] = typing.get_args(hint)
            elif origin is tuple:
                args = typing.get_args(hint)
                elem = args[0]
                kw["type"] = elem
                kw["nargs"] = "*" if (len(args) == 2 and args[1] is Ellipsis) else len(args)
                kw["metavar"] = elem.__name__.upper()
            else:
                kw["type"] = _none_or(hint) if optional else hint
                kw["metavar"] = f"{hint.__name__.upper()}{'|none' if optional else ''}"
            grp.add_argument(flag, **kw)


def _add_original_flags(parser: argparse.ArgumentParser) -> None:
    grp = parser.add_argument_group("the original PGC-3D main.py flags (accepted as written)")

    def add(name: str, kind: str, help_: str) -> None:
        flags = [f"-{name}"] if name.startswith("O") and name[1:].isdigit() else [f"--{name}"]
        kw: dict[str, Any] = {"dest": f"orig__{name}", "default": argparse.SUPPRESS, "help": help_}
        if kind != "bool":
            kw["metavar"] = name.upper()
        if kind == "bool":
            grp.add_argument(*flags, action="store_true", **kw)
        elif kind in ("str", "int", "float"):
            grp.add_argument(*flags, type={"str": str, "int": int, "float": float}[kind], **kw)
        elif kind == "floats":
            grp.add_argument(*flags, type=float, nargs="+", **kw)
        elif kind == "strs":
            grp.add_argument(*flags, type=str, nargs="+", **kw)
        elif kind == "float2":
            grp.add_argument(*flags, type=float, nargs=2, **kw)

    for name, (default, kind) in ORIGINAL_FLAGS.items():
        meaning = ORIGINAL_HELP.get(name, "")
        add(name, kind, (f"{meaning} " if meaning else "") + f"(original default {default!r})".replace("%", "%%"))
    for name, kind in DEAD_FLAGS.items():
        add(name, kind, argparse.SUPPRESS)
    for name, (kind, _) in UNSUPPORTED_FLAGS.items():
        add(name, kind, f"{UNSUPPORTED_FLAGS[name][1]}: {C.UNSUPPORTED_MESSAGE}")


ORIGINAL_HELP: dict[str, str] = {
    "text": "prompt → guidance.text",
    "negative": "negative prompt → guidance.negative",
    "O0": "preset: PGC (tau 0.1) + mixed precision",
    "O1": "preset: DMTet shape + texture (not supported yet)",
    "O2": "preset: fixed-mesh text-to-texture (forces --guidance controlnet unless -O4)",
    "O3": "preset: Zero123 image-to-3D (not supported yet)",
    "O4": "preset: SDXL (appends 'xl' to --guidance)",
    "workspace": "run directory, under exp/ → output.workspace",
    "guidance": "model family by substring: 'xl' → SDXL, 'controlnet' → ControlNet",
    "guidance_scale": "CFG scale → guidance.guidance_scale",
    "control_type": "ControlNet types → guidance.controlnets",
    "control_scale": "ControlNet scales → guidance.control_scales",
    "sd_version": "SDXL variant: xl-1.0 (our default), xl-0.9, *turbo*",
    "mesh_path": "input mesh → mesh.path",
    "fp16": "mixed precision → optim.precision=auto",
    "no_normal": "no normal-map SDS",
    "only_normal": "only normal-map SDS (shape work, not supported yet)",
    "ref_path": "reference image → guidance.ref_path (ref-view MSE, shuffle ControlNet)",
    "pbr": "PBR material (not supported yet)",
    "vsd": "VSD loss (SDXL only)",
    "bgt": "BGT+ loss",
    "csd": "CSD loss",
    "ssd": "SSD loss",
    "dreamtime": "DreamTime timestep schedule",
    "latent": "Latent-NeRF mode (not supported yet)",
    "cfg_rescale": "CFG rescale 0.5",
    "init_texture": "initialise the texture from vertex colours",
    "bs": "views per step per GPU → optim.batch_size",
    "iters": "steps → optim.iters",
    "seed": "→ optim.seed",
    "gpus": "GPU ids; n > 1 ids: n processes through torchrun, bs views each (n × bs per step)",
    "grad_clip_rgb": "PGC threshold (>= 0 enables) → guidance.pgc_tau",
    "grad_suppress_type": "PGC variant 0..5 → guidance.pgc_variant",
    "res_fine": "render resolution → render.resolution",
    "lr_fine": "[geometry lr, texture lr]",
}


def add_generate_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "generate",
        help="text-to-texture on a mesh (accepts the original main.py flags)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        allow_abbrev=False,
        usage="pgc-fast generate [--preset NAME | -O0 … -O4 and the original's flags] [--section.field VALUE …] "
        "[--model M] [--device D] [--texture T] [--dry-run] [--force] [--resume]",
    )
    new = p.add_argument_group("pgc-fast")
    new.add_argument("--preset", choices=sorted(C.PRESETS), default=None, help="start from a named preset")
    new.add_argument(
        "--model",
        default=argparse.SUPPRESS,
        help="hub id, local path or built-in (toy-sd, tiny-sd, tiny-sdxl, sd15-random, sdxl-random)",
    )
    new.add_argument("--device", choices=("auto", "cpu", "cuda"), default=argparse.SUPPRESS, help="compute device")
    new.add_argument("--texture", choices=("field", "uv"), default=argparse.SUPPRESS, help="texture representation")
    new.add_argument("--dry-run", action="store_true", help="validate and print the resolved config; load no model")
    new.add_argument("--force", action="store_true", default=argparse.SUPPRESS, help="overwrite an existing workspace")
    new.add_argument(
        "--resume", action="store_true", default=argparse.SUPPRESS, help="continue from the last checkpoint"
    )
    new.add_argument("--config", default=None, help="start from a config.yaml written by an earlier run")
    _add_original_flags(p)
    _add_config_flags(p)
    return p


class CliError(Exception):
    """A problem with the command line (exit status 2)."""


def resolve_generate(args: argparse.Namespace) -> tuple[C.RunConfig, list[str]]:
    """Turn parsed ``generate`` arguments into a RunConfig (not yet validated) plus notes for the user."""
    ns = vars(args)
    given_orig = {k[len("orig__") :]: v for k, v in ns.items() if k.startswith("orig__")}
    notes: list[str] = []
    unsupported = [UNSUPPORTED_FLAGS[k][1] for k in given_orig if k in UNSUPPORTED_FLAGS]
    if unsupported:
        raise C.ConfigError([f"{u} is {C.UNSUPPORTED_MESSAGE}" for u in unsupported])
    for k in given_orig:
        if k in DEAD_FLAGS:
            notes.append(f"--{k} is ignored (it had no effect in the original either)")
    if given_orig.get("n_targets", 0) > 0:
        raise C.ConfigError([f"--n_targets > 0 (GMM local-part cameras) is {C.UNSUPPORTED_MESSAGE}"])
    if args.config:
        cfg = _from_config_file(args.config, given_orig)
    elif args.preset:
        cfg = _from_preset(args.preset, given_orig)
    else:
        cfg = _from_original_flags(given_orig, notes)
    return _apply_overrides(cfg, ns), notes


def _presets_given(given_orig: dict[str, Any]) -> list[str]:
    return [o for o in ("O0", "O1", "O2", "O3", "O4") if given_orig.get(o)]


def _from_config_file(path: str, given_orig: dict[str, Any]) -> C.RunConfig:
    import yaml

    with open(path) as fh:
        data = yaml.safe_load(fh)
    if given_orig:
        raise CliError("--config cannot be combined with the original's flags; use --section.field overrides")
    return C.from_dict(data.get("config", data))


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
    return cfg


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
    for k in ("bs", "iters", "res_fine"):  # an explicit value is no longer silently overwritten (original's bug)
        if k in given_orig and getattr(opt, k) != given_orig[k]:
            notes.append(f"--{k} {given_orig[k]} kept (the original's SDXL rule would have set {getattr(opt, k)})")
            setattr(opt, k, given_orig[k])
            if k == "iters" and opt.albedo:
                opt.albedo_iters = opt.iters
    return original_to_config(opt)


def _apply_overrides(cfg: C.RunConfig, ns: dict[str, Any]) -> C.RunConfig:
    """(2) the convenience flags (--model, --device, --texture, --force, --resume), then (3) --section.field."""
    conv = {}
    if "model" in ns:
        conv["guidance.model"] = ns["model"]
    if "device" in ns:
        conv["runtime.device"] = ns["device"]
    if "texture" in ns:
        conv["texture.kind"] = ns["texture"]
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


def _expected_errors() -> tuple[type[BaseException], ...]:
    """Errors of a run that are the user's to fix: one line on stderr and exit status 2, no traceback."""
    from pgc_fast.train import distributed as D
    from pgc_fast.train.checkpoint import CheckpointError
    from pgc_fast.train.workspace import WorkspaceExistsError

    expected: tuple[type[BaseException], ...] = (
        WorkspaceExistsError,
        C.ConfigError,
        FileNotFoundError,
        CheckpointError,
        D.RankZeroError,
    )
    try:
        from pgc_fast.guidance import GuidanceLoadError  # missing weights: one clear message, no traceback

        expected += (GuidanceLoadError,)
    except ImportError:  # pragma: no cover
        pass
    return expected


def cmd_generate(args: argparse.Namespace, argv: list[str] | None = None) -> int:
    try:
        cfg, notes = resolve_generate(args)
    except (C.ConfigError, CliError) as e:
        print(f"pgc-fast generate: {e}", file=sys.stderr)
        return 2
    for n in notes:
        print(f"note: {n}", file=sys.stderr)
    if args.dry_run:
        print(config_yaml(cfg), end="")
    try:
        C.validate(cfg)
    except C.ConfigError as e:
        print(f"pgc-fast generate: {e}", file=sys.stderr)
        return 2
    if args.dry_run:
        procs = max(1, cfg.n_gpus)
        per = f"{procs * cfg.views_per_step} views/step" + (
            f" ({procs} processes × {cfg.views_per_step})" if procs > 1 else ""
        )
        print(f"# ok: valid configuration; workspace {cfg.workspace_path}; {per}", file=sys.stderr)
        return 0
    from pgc_fast.train import distributed as D
    from pgc_fast.train.trainer import run
    from pgc_fast.train.workspace import WorkspaceExistsError, check_workspace

    if cfg.n_gpus > 1 and not D.launched_by_torchrun() and argv is not None:
        # The original's --gpus: one process per listed GPU, now through torchrun (pgc_fast.train.distributed).
        try:
            check_workspace(cfg)  # fail here, once, rather than in every worker
        except (WorkspaceExistsError, FileNotFoundError) as e:
            print(f"pgc-fast generate: {e}", file=sys.stderr)
            return 2
        print(
            f"note: --gpus {cfg.runtime.gpus}: launching {cfg.n_gpus} processes with torchrun "
            f"({cfg.optim.batch_size} views each, {cfg.n_gpus * cfg.optim.batch_size} per step)",
            file=sys.stderr,
        )
        return D.relaunch(argv, cfg.runtime.gpus, cuda=cfg.runtime.device != "cpu")
    rank0 = D.env_info().is_main
    try:
        result = run(cfg)
    except _expected_errors() as e:
        if rank0:  # every rank raises the same error; say it once
            print(f"pgc-fast generate: {e}", file=sys.stderr)
        return 2
    if rank0:
        print(f"done: {result.workspace}")
    D.finish(exit_code=0)  # every rank: wait for rank 0's exports, then leave together (gloo: exits here)
    return 0
