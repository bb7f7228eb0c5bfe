"""Model loading: aliases, hub/cache/local resolution, offline-safe errors, and module construction.

Resolution happens entirely on the CPU before any module is built or moved to the GPU: every repo the
configuration needs (base model, VAE override, ControlNets) is located in a local directory, in the Hugging Face
cache (``$HF_HUB_CACHE`` / ``cache_dir``) or — unless ``HF_HUB_OFFLINE=1`` — downloaded. All failures are gathered
into one :class:`GuidanceLoadError` that names the repo ids, the cache directory and the command that fetches
them; the CLI prints it without a traceback.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch

from pgc_fast.config.schema import (
    BUILTIN_MODELS,
    CONTROL_TYPES,
    DEFAULT_CONTROLNETS,
    MODEL_ALIASES,
    Precision,
)
from pgc_fast.guidance.models.builtin import ModelBundle, build_builtin, freeze, join_controlnets, vae_factor

SDXL_VAE_FP16_FIX = "madebyollin/sdxl-vae-fp16-fix"
CONTROLNETS = DEFAULT_CONTROLNETS  # the one table lives in config.schema (validation reads it too)


class GuidanceLoadError(RuntimeError):
    """Model weights could not be found or loaded. The message is complete; print it without a traceback."""


def hf_token(token_file: str | os.PathLike | None = "TOKEN") -> str | None:
    """$HF_TOKEN, else the first line of ``token_file`` (the original's ./TOKEN) if it exists, else None."""
    tok = os.environ.get("HF_TOKEN") or os.environ.get("HUGGING_FACE_HUB_TOKEN")
    if tok:
        return tok.strip()
    if token_file and Path(token_file).is_file():
        first = Path(token_file).read_text().strip().splitlines()
        return first[0].strip() if first else None
    return None


def hub_cache_dir(cache_dir: str | None) -> str:
    if cache_dir:
        return str(cache_dir)
    from huggingface_hub import constants

    return str(constants.HF_HUB_CACHE)


def is_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


HUB_PROBE_TIMEOUT_S = 3.0
"""How long to wait for a TCP connection to the hub (or its proxy) before calling it unreachable."""


_PROBES: dict[tuple[str, int], tuple[float, str | None]] = {}


def hub_unreachable(timeout: float = HUB_PROBE_TIMEOUT_S) -> str | None:
    """Why the Hugging Face hub cannot be reached from here, or None when a TCP connection to it (or to the
    https proxy the environment names) opens within ``timeout`` seconds. The answer is kept for 30 s, so a run
    that needs several repos (model, VAE, ControlNets) probes once.

    huggingface_hub retries a failed request with back-off (an unknown or offline model spent 70-90 s before the
    error); one bounded probe first lets an offline machine fail in seconds."""
    import time
    import urllib.request
    from urllib.parse import urlparse

    from huggingface_hub import constants

    proxy = urllib.request.getproxies().get("https")
    url = urlparse(proxy or constants.ENDPOINT)
    key = (url.hostname or "", url.port or (443 if url.scheme == "https" else 80))
    cached = _PROBES.get(key)
    if cached is None or time.monotonic() - cached[0] > 30.0:
        why = _probe(*key, timeout)
        cached = _PROBES[key] = (
            time.monotonic(),
            None if why is None else why + (" (the https proxy)" if proxy else ""),
        )
    return cached[1]


def _probe(host: str, port: int, timeout: float) -> str | None:
    """Open and close one TCP connection, in a daemon thread so that a name lookup that hangs (getaddrinfo has no
    timeout of its own) cannot hold the caller past ``timeout``."""
    import socket
    import threading

    result: dict[str, str] = {}

    def probe() -> None:
        try:
            socket.create_connection((host, port), timeout=timeout).close()
            result["ok"] = "yes"
        except OSError as e:
            result["error"] = f"{type(e).__name__}: {e}"

    t = threading.Thread(target=probe, daemon=True, name="pgc-fast-hub-probe")
    t.start()
    t.join(timeout)
    if "ok" in result:
        return None
    return f"cannot connect to {host}:{port} within {timeout:g} s" + (
        f": {result['error']}" if "error" in result else ""
    )


def parse_control(spec: str, family: str) -> tuple[str, str]:
    """'depth' → ('depth', default repo for the family); 'depth=org/repo' → ('depth', 'org/repo')."""
    if "=" in spec:
        kind, repo = spec.split("=", 1)
    else:
        kind, repo = spec, CONTROLNETS.get((family, spec), "")
        if not repo:
            if spec in CONTROL_TYPES:
                raise GuidanceLoadError(
                    f"no default {spec!r} ControlNet for the {family.upper()} family; pass "
                    f"'{spec}=<repo id or local dir>' (defaults exist for: "
                    f"{', '.join(k for f, k in CONTROLNETS if f == family)})"
                )
            raise GuidanceLoadError(f"ControlNet {spec!r}: use one of {CONTROL_TYPES} or 'kind=<repo id or dir>'")
    if kind not in CONTROL_TYPES:
        raise GuidanceLoadError(f"ControlNet kind must be one of {CONTROL_TYPES}, got {kind!r} (in {spec!r})")
    return kind, repo


def _family_of(repo: str, path: Path | None) -> str:
    if path is not None and (path / "text_encoder_2").exists():
        return "sdxl"
    if path is not None and (path / "model_index.json").exists():
        return "sd"
    return "sdxl" if "xl" in repo.lower() else "sd"


def _weights_present(d: Path) -> bool:
    return any(d.glob("*.safetensors")) or any(d.glob("*.bin"))


def _check_complete(path: Path, subfolders: list[str]) -> list[str]:
    """Missing pieces of a resolved snapshot: each subfolder needs config.json (tokenizers: vocab) + weights."""
    missing = []
    for sub in subfolders:
        d = path / sub if sub else path
        if sub.startswith("tokenizer"):
            if not ((d / "vocab.json").exists() or (d / "tokenizer.json").exists()):
                missing.append(f"{sub}/vocab.json")
        elif sub == "scheduler":
            if not (d / "scheduler_config.json").exists():
                missing.append("scheduler/scheduler_config.json")
        else:
            if not (d / "config.json").exists():
                missing.append(f"{sub + '/' if sub else ''}config.json")
            elif not _weights_present(d):
                missing.append(f"{sub + '/' if sub else ''}*.safetensors")
    return missing


def _resolve(
    repo: str,
    subfolders: list[str],
    *,
    cache_dir: str | None,
    token: str | None,
    half: bool,
    problems: list[str],
    optional: list[str] | tuple[str, ...] = (),
) -> Path | None:
    """Local dir, cached snapshot, or (online) a download of just the needed files. Appends to ``problems``.
    ``optional`` subfolders are downloaded along when the repo has them but not required."""
    p = Path(repo).expanduser()
    if p.is_dir():
        missing = _check_complete(p, subfolders)
        if missing:
            problems.append(f"{repo} (local dir): missing {', '.join(missing)}")
            return None
        return p
    from huggingface_hub import snapshot_download

    try:
        path = Path(snapshot_download(repo, cache_dir=cache_dir, local_files_only=True, token=token))
        if not _check_complete(path, subfolders):
            return path
    except Exception:  # noqa: BLE001 - any failure here just means "not cached"
        path = None
    incomplete = f"; incomplete snapshot, missing {', '.join(_check_complete(path, subfolders))}" if path else ""
    if is_offline():
        problems.append(f"{repo}: not in the cache (HF_HUB_OFFLINE=1){incomplete}")
        return None
    unreachable = hub_unreachable()
    if unreachable:
        problems.append(
            f"{repo}: not in the cache, and the Hugging Face hub is unreachable ({unreachable}){incomplete}"
        )
        return None
    try:
        from huggingface_hub import list_repo_files

        files = list_repo_files(repo, token=token)
        patterns = ["*.json", "*.txt"]
        for sub in [*subfolders, *optional]:
            prefix = f"{sub}/" if sub else ""
            if sub.startswith("tokenizer") or sub == "scheduler":
                patterns.append(f"{prefix}*")
                continue
            in_sub = [f for f in files if f.startswith(prefix) and "/" not in f[len(prefix) :]]
            fp16 = [f for f in in_sub if f.endswith(".fp16.safetensors")]
            plain = [f for f in in_sub if f.endswith(".safetensors") and ".fp16." not in f]
            patterns += fp16 if (half and fp16) else (plain or fp16 or [f for f in in_sub if f.endswith(".bin")])
        path = Path(snapshot_download(repo, cache_dir=cache_dir, token=token, allow_patterns=patterns))
    except Exception as e:  # noqa: BLE001 - network/auth errors become one readable line
        problems.append(f"{repo}: download failed ({type(e).__name__}: {str(e).splitlines()[0][:200]})")
        return None
    missing = _check_complete(path, subfolders)
    if missing:
        problems.append(f"{repo}: downloaded snapshot lacks {', '.join(missing)}")
        return None
    return path


def _raise_missing(
    problems: list[str],
    repos: list[str],
    cache_dir: str | None,
    builtins: tuple[str, ...] = ("tiny-sdxl", "tiny-sd", "sdxl-random", "sd15-random"),
    flag: str = "--model",
) -> None:
    cache = hub_cache_dir(cache_dir)
    fetch = "\n".join(f"    hf download {r}" for r in repos if not Path(r).expanduser().is_dir())
    msg = (
        "diffusion model weights are missing:\n  - "
        + "\n  - ".join(problems)
        + f"\nHugging Face cache directory: {cache}"
        + ("  (HF_HUB_OFFLINE=1: nothing is downloaded)" if is_offline() else "")
        + "\nFetch them on a machine with network access (gated repos such as SDXL 0.9 need a token in $HF_TOKEN "
        "or ./TOKEN) with\n"
        + (fetch or "    (fix the local directories listed above)")
        + "\nthen copy the cache directory here (or set HF_HUB_CACHE), or pass a local diffusers directory as "
        f"{flag}. Without weights, the built-in models " + ", ".join(builtins[:-1]) + f" and {builtins[-1]} run "
        "anywhere."
    )
    raise GuidanceLoadError(msg)


def resolve_dtype(name: Precision, device: torch.device) -> torch.dtype:
    """Weights dtype of a precision name: auto = fp16 on CUDA (a run's default, train.runtime.resolve_precision),
    fp32 elsewhere."""
    if name == "auto":
        return torch.float16 if device.type == "cuda" else torch.float32
    return {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}[name]


def _variant(d: Path, half: bool) -> str | None:
    return "fp16" if half and any(d.glob("*.fp16.safetensors")) else None


def load_models(
    model: str = "sdxl",
    *,
    vae: str = "auto",
    controlnets: tuple[str, ...] | list[str] = (),
    device: str | torch.device = "cuda",
    dtype: torch.dtype = torch.bfloat16,
    cache_dir: str | None = None,
    token_file: str | None = "TOKEN",
    seed: int = 0,
) -> ModelBundle:
    """Locate (first, on the CPU, all at once) and load every module of a guidance model.

    Args:
        model: alias (:data:`MODEL_ALIASES`), built-in name (:data:`BUILTIN_MODELS`), hub id or local dir.
        vae: 'auto' (SDXL → madebyollin/sdxl-vae-fp16-fix), 'none' (the model's own), or a repo id / dir.
        controlnets: kinds or 'kind=repo' specs (see :func:`parse_control`).
        device, dtype: where the modules go (the text encoders too; :class:`Guidance` offloads them later).
    Raises:
        GuidanceLoadError: before any GPU work, listing every missing repo.
    """
    device = torch.device(device)
    if model in BUILTIN_MODELS:
        kinds = [c.split("=", 1)[0] for c in controlnets]
        bad = [k for k in kinds if k not in CONTROL_TYPES]
        if bad:
            raise GuidanceLoadError(f"ControlNet kind must be one of {CONTROL_TYPES}, got {bad}")
        return build_builtin(model, control_types=kinds, device=device, dtype=dtype, seed=seed)
    _check_name(model)
    half = dtype in (torch.float16, torch.bfloat16)
    weights = locate_weights(
        MODEL_ALIASES.get(model, model),
        vae=vae,
        controlnets=controlnets,
        cache_dir=cache_dir,
        token=hf_token(token_file),
        half=half,
    )
    return _load_modules(model, weights, device=device, dtype=dtype)


def _check_name(model: str) -> None:
    """A name that is no alias, no local directory and no hub id ('org/name') is a typo, not a download."""
    if model in MODEL_ALIASES or "/" in model or Path(model).expanduser().is_dir():
        return
    import difflib

    known = [*BUILTIN_MODELS, *MODEL_ALIASES]
    close = difflib.get_close_matches(model, known, n=1, cutoff=0.75)
    raise GuidanceLoadError(
        f"model {model!r} is not a built-in model ({', '.join(BUILTIN_MODELS)}), an alias "
        f"({', '.join(MODEL_ALIASES)}), a local directory or a hub id 'org/name'"
        + (f"; did you mean {close[0]!r}?" if close else "")
    )


@dataclass
class Weights:
    """Where every module of a guidance model lives on disk (see :func:`locate_weights`)."""

    family: str
    """sd or sdxl."""
    base: Path
    """The diffusers pipeline directory (unet, vae, text encoders, tokenizers, scheduler)."""
    vae: Path | None
    """The VAE override's directory, or None (the base's own vae/)."""
    controls: list[tuple[str, Path]]
    """(kind, directory) per ControlNet."""
    half: bool
    """Prefer the fp16 variant files."""


def locate_weights(
    repo: str,
    *,
    vae: str,
    controlnets: tuple[str, ...] | list[str],
    cache_dir: str | None,
    token: str | None,
    half: bool,
) -> Weights:
    """Find (local dir, HF cache, or unless offline a download) the base model, the VAE override and the
    ControlNets; every problem is gathered into one :class:`GuidanceLoadError`."""
    problems: list[str] = []
    local = Path(repo).expanduser()
    family = _family_of(repo, local if local.is_dir() else None)
    # SDXL's own VAE overflows in fp16; the fp16-fix VAE is numerically equivalent and safe in half.
    vae_repo = {"auto": SDXL_VAE_FP16_FIX if family == "sdxl" else None, "none": None}.get(vae, vae)
    subs = ["unet", "text_encoder", "tokenizer", "scheduler"] + (["vae"] if vae_repo is None else [])
    if family == "sdxl":
        subs += ["text_encoder_2", "tokenizer_2"]
    controls = []
    try:
        controls = [parse_control(c, family) for c in controlnets]
    except GuidanceLoadError as e:
        problems.append(str(e))
    repos = [repo] + ([vae_repo] if vae_repo else []) + [r for _, r in controls]

    def find(r: str, subfolders: list[str]) -> Path | None:
        return _resolve(r, subfolders, cache_dir=cache_dir, token=token, half=half, problems=problems)

    base = find(repo, subs)
    if base is not None:
        family = _family_of(repo, base)
    vae_path = find(vae_repo, [""]) if vae_repo else None
    ctrl_paths = [find(r, [""]) for _, r in controls]
    if problems:
        _raise_missing(problems, repos, cache_dir)
    assert base is not None
    found = [(k, p) for (k, _), p in zip(controls, ctrl_paths, strict=False) if p is not None]
    return Weights(family=family, base=base, vae=vae_path, controls=found, half=half)


def _refused_pickle(e: BaseException | None) -> bool:
    """Whether ``e`` (or an exception it was raised from) is torch.load(weights_only=True) refusing a pickle:
    diffusers and transformers load .bin weights that way, so a crafted .bin file runs no code."""
    import pickle

    for _ in range(8):
        if e is None:
            return False
        if isinstance(e, pickle.UnpicklingError) or "Weights only load failed" in str(e):
            return True
        e = e.__cause__ or e.__context__
    return False


def _load_modules(name: str, w: Weights, *, device: torch.device, dtype: torch.dtype) -> ModelBundle:
    """Build every module from located weights, frozen, in eval mode, on ``device``."""
    import json

    from diffusers import AutoencoderKL, ControlNetModel, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

    def load(cls, path: Path, sub: str | None = None, **kw):
        d = path / sub if sub else path
        try:
            return cls.from_pretrained(str(path), subfolder=sub, torch_dtype=dtype, variant=_variant(d, w.half), **kw)
        except Exception as e:
            if _refused_pickle(e):
                raise GuidanceLoadError(
                    f"loading {cls.__name__} from {d} refused: its .bin weights are a pickle holding more than "
                    f"tensors, which could run code when loaded (torch.load(weights_only=True) stopped it); use "
                    f".safetensors weights"
                ) from e
            raise GuidanceLoadError(
                f"loading {cls.__name__} from {d} failed: {type(e).__name__}: {str(e).splitlines()[0][:300]}"
            ) from e

    sdxl = w.family == "sdxl"
    unet = load(UNet2DConditionModel, w.base, "unet")
    vae_m = load(AutoencoderKL, w.vae) if w.vae is not None else load(AutoencoderKL, w.base, "vae")
    encoders = [load(CLIPTextModel, w.base, "text_encoder")]
    tokenizers = [CLIPTokenizer.from_pretrained(str(w.base), subfolder="tokenizer")]
    if sdxl:
        encoders.append(load(CLIPTextModelWithProjection, w.base, "text_encoder_2"))
        tokenizers.append(CLIPTokenizer.from_pretrained(str(w.base), subfolder="tokenizer_2"))
    sched_cfg = json.loads((w.base / "scheduler" / "scheduler_config.json").read_text())
    nets = [load(ControlNetModel, p) for _, p in w.controls]
    controlnet = join_controlnets(nets)
    for m in [unet, vae_m, *encoders] + ([controlnet] if controlnet is not None else []):
        freeze(m)
        m.to(device)
    return ModelBundle(
        name=name,
        is_sdxl=sdxl,
        unet=unet,
        vae=vae_m,
        text_encoders=encoders,
        tokenizers=tokenizers,
        scheduler_config=sched_cfg,
        resolution=int(unet.config.sample_size) * vae_factor(vae_m.config),
        controlnet=controlnet,
        control_types=[k for k, _ in w.controls],
        sources={
            "model": str(w.base),
            **({"vae": str(w.vae)} if w.vae else {}),
            **{f"controlnet_{i}": str(p) for i, (_, p) in enumerate(w.controls)},
        },
    )
