"""The checkpoint file format: no pickle, so loading a checkpoint runs no code from it.

A checkpoint is one safetensors file. Its tensors hold every tensor of the training state; its header's metadata
holds the rest of the state as plain JSON (``state``), the format name (``format``) and a SHA-256 of the whole
file (``sha256``, computed with that field set to zeros), so bit flips and truncation are detected before
anything is used.

The JSON tree mirrors the state: dicts with string keys, lists, str/int/float/bool/None as themselves (floats
round-trip exactly, NaN and ±inf included); the rest is tagged: ``{"__tensor__": name}`` (a tensor of the
file), ``{"__tuple__": [...]}``, ``{"__dict__": [[key, value], ...]}`` (non-string keys, e.g. an optimiser's
parameter indices) and ``{"__ndarray__": [...], "dtype": ..., "shape": [...]}`` (numpy's RNG state). Anything
else is refused when saving, so a state that cannot be restored exactly is never written.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import numpy as np
import torch

__all__ = ["FORMAT", "CheckpointError", "DamagedCheckpointError", "decode", "dumps", "encode", "loads"]

FORMAT = "pgc-fast-checkpoint/1"
_ZERO_DIGEST = "0" * 64
_TAGS = ("__tensor__", "__tuple__", "__dict__", "__ndarray__")
_MAX_HEADER = 1 << 30


class CheckpointError(ValueError):
    """A checkpoint that must not or cannot be used (a pickle, every candidate damaged, …)."""


class DamagedCheckpointError(CheckpointError):
    """A checkpoint file whose bytes are not what was written (checksum, truncation, not a checkpoint)."""


def encode(obj: Any, tensors: dict[str, torch.Tensor], where: str = "state") -> Any:
    """The JSON tree of ``obj``; its tensors are added to ``tensors`` (CPU, contiguous, own storage)."""
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    if isinstance(obj, torch.Tensor):
        name = f"t{len(tensors)}"
        t = obj.detach().cpu().contiguous()
        # safetensors refuses tensors that share memory (a state may hold one tensor twice): copy those only
        shared = t.numel() and any(
            u.untyped_storage().data_ptr() == t.untyped_storage().data_ptr() for u in tensors.values()
        )
        tensors[name] = t.clone() if shared else t
        return {"__tensor__": name}
    if isinstance(obj, np.ndarray):
        return {"__ndarray__": obj.ravel().tolist(), "dtype": obj.dtype.str, "shape": list(obj.shape)}
    if isinstance(obj, np.generic):
        return encode(obj.item(), tensors, where)
    if isinstance(obj, (list, tuple)):
        items = [encode(v, tensors, f"{where}[{i}]") for i, v in enumerate(obj)]
        return items if isinstance(obj, list) else {"__tuple__": items}
    if isinstance(obj, dict):
        if all(isinstance(k, str) and k not in _TAGS for k in obj):
            return {k: encode(v, tensors, f"{where}.{k}") for k, v in obj.items()}
        return {
            "__dict__": [[encode(k, tensors, where), encode(v, tensors, f"{where}[{k!r}]")] for k, v in obj.items()]
        }
    raise TypeError(f"checkpoint: cannot store {type(obj).__name__} at {where} (tensors, numbers, str and containers)")


def decode(tree: Any, tensors: dict[str, torch.Tensor]) -> Any:
    """Inverse of :func:`encode`."""
    if isinstance(tree, list):
        return [decode(v, tensors) for v in tree]
    if not isinstance(tree, dict):
        return tree
    if "__tensor__" in tree:
        name = tree["__tensor__"]
        if name not in tensors:
            raise DamagedCheckpointError(f"the state refers to tensor {name!r}, which the file does not hold")
        return tensors[name]
    if "__tuple__" in tree:
        return tuple(decode(v, tensors) for v in tree["__tuple__"])
    if "__dict__" in tree:
        return {_hashable(decode(k, tensors)): decode(v, tensors) for k, v in tree["__dict__"]}
    if "__ndarray__" in tree:
        return np.asarray(tree["__ndarray__"], dtype=np.dtype(tree["dtype"])).reshape(tree["shape"])
    return {k: decode(v, tensors) for k, v in tree.items()}


def _hashable(k: Any) -> Any:
    if isinstance(k, list):
        raise DamagedCheckpointError("a dict key decodes to a list")
    return k


def _digest_field(digest: str) -> bytes:
    # The compact JSON safetensors writes; quotes inside the JSON state are escaped (\"), so this key-value
    # pair occurs once, as the metadata field.
    return b'"sha256":"' + digest.encode() + b'"'


def dumps(state: Any) -> bytes:
    """The checkpoint file's bytes for ``state``."""
    from safetensors.torch import save

    tensors: dict[str, torch.Tensor] = {}
    tree = encode(state, tensors)
    text = json.dumps(tree, separators=(",", ":"))
    data = save(tensors, metadata={"format": FORMAT, "state": text, "sha256": _ZERO_DIGEST})
    n = int.from_bytes(data[:8], "little")
    header = data[8 : 8 + n]
    if header.count(_digest_field(_ZERO_DIGEST)) != 1:
        raise RuntimeError("checkpoint: the digest field is not unique in the safetensors header")
    digest = hashlib.sha256(data).hexdigest()  # the digest has the placeholder's length: offsets stay valid
    return b"".join(
        (data[:8], header.replace(_digest_field(_ZERO_DIGEST), _digest_field(digest)), memoryview(data)[8 + n :])
    )


def _looks_like_pickle(data: bytes) -> bool:
    """torch.save files are zip archives (PK\\x03\\x04) or bare pickles (protocol 2+ starts with \\x80).

    Only asked of files that are not checkpoints: a checkpoint's first byte is its header length's low byte, which
    is 0x80 for one header length in 256, so the bytes alone cannot tell."""
    return data[:4] == b"PK\x03\x04" or data[:1] == b"\x80"


def _header(data: bytes) -> tuple[int, dict[str, str]]:
    """(header length, metadata) of a safetensors file, checked for shape before anything else is read."""
    if len(data) < 8:
        raise DamagedCheckpointError(f"truncated ({len(data)} bytes)")
    n = int.from_bytes(data[:8], "little")
    if n > min(len(data) - 8, _MAX_HEADER):
        raise DamagedCheckpointError(f"truncated or not a checkpoint (header of {n} bytes, file of {len(data)})")
    try:
        meta = json.loads(data[8 : 8 + n]).get("__metadata__") or {}
    except (ValueError, AttributeError) as e:
        raise DamagedCheckpointError(f"unreadable header ({type(e).__name__})") from None
    if meta.get("format") != FORMAT:
        raise DamagedCheckpointError(f"not a pgc-fast checkpoint (format {str(meta.get('format'))[:40]!r})")
    return n, meta


def loads(data: bytes) -> Any:
    """The state a :func:`dumps` file holds. Raises CheckpointError for a pickle (never unpickled) and
    DamagedCheckpointError for any byte that is not as written."""
    from safetensors.torch import load

    try:
        n, meta = _header(data)
    except DamagedCheckpointError:
        if _looks_like_pickle(data):
            raise CheckpointError("it is a pickle (torch.save) file, and loading a pickle can run code") from None
        raise
    digest = str(meta.get("sha256", ""))
    if len(digest) != 64:
        raise DamagedCheckpointError("no checksum in the header")
    h = hashlib.sha256(data[:8])
    h.update(data[8 : 8 + n].replace(_digest_field(digest), _digest_field(_ZERO_DIGEST), 1))
    h.update(memoryview(data)[8 + n :])  # no copy of the tensor data
    if h.hexdigest() != digest:
        raise DamagedCheckpointError("checksum mismatch (the file changed after it was written)")
    try:
        tensors = load(data)
        tree = json.loads(meta["state"])
    except Exception as e:  # noqa: BLE001 - a file that passed the checksum but not the parsers: say which
        raise DamagedCheckpointError(f"unreadable ({type(e).__name__}: {str(e)[:120]})") from None
    return decode(tree, tensors)
