"""The package layout holds: every module imports on its own (no import cycle), and the arrows between packages
point only the allowed way (docs/DESIGN.md: config → geometry + texture → render → guidance → loss → optimiser
→ export; guidance never imports render; kernels never import pgc_fast; nothing below the CLI reads argv)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[2] / "python" / "pgc_fast"
KERNELS = Path(__file__).resolve().parents[2] / "kernels" / "pgc_kernels"

# package -> the pgc_fast packages it may import (itself always). Modules at the top (_rust_mesh) are open to all.
ALLOWED = {
    "config": set(),
    "mesh": set(),
    "fields": set(),
    "render": {"mesh", "fields"},
    "guidance": {"config"},
    "parity": {"guidance"},
    "export": {"config", "mesh", "fields", "render"},
    "train": {"config", "mesh", "fields", "render", "guidance", "export"},
    "apps": {"config", "mesh", "fields", "render", "guidance", "export", "train"},
    "cli": {"config", "mesh", "fields", "render", "guidance", "export", "train", "apps", "parity"},
}


def _modules(root: Path, prefix: str) -> list[str]:
    out = []
    for f in sorted(root.rglob("*.py")):
        parts = list(f.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__main__":
            continue
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out.append(".".join([prefix, *parts]))
    return out


def _imports(path: Path) -> list[tuple[int, str]]:
    """Every absolute module an import statement names (lazy imports inside functions included)."""
    out = []
    for n in ast.walk(ast.parse(path.read_text())):
        if isinstance(n, ast.ImportFrom) and n.module and n.level == 0:
            out += [(n.lineno, n.module)] + [(n.lineno, f"{n.module}.{a.name}") for a in n.names]
        elif isinstance(n, ast.Import):
            out += [(n.lineno, a.name) for a in n.names]
    return out


def test_every_module_imports_on_its_own():
    """Each module is imported first, with no other pgc_fast module loaded (torch stays loaded: the check is
    about cycles among our modules, and a fresh interpreter per module would spend minutes importing torch)."""
    mods = _modules(PKG, "pgc_fast") + _modules(KERNELS, "pgc_kernels")
    script = (
        "import sys, importlib, traceback\n"
        "import torch, numpy\n"
        f"mods = {mods!r}\n"
        "bad = []\n"
        "for m in mods:\n"
        "    for k in [k for k in sys.modules if k.split('.')[0] in ('pgc_fast', 'pgc_kernels')]:\n"
        "        del sys.modules[k]\n"
        "    try:\n"
        "        importlib.import_module(m)\n"
        "    except Exception as e:\n"
        "        bad.append(f'{m}: {type(e).__name__}: {e}')\n"
        "print('\\n'.join(bad))\n"
        "sys.exit(1 if bad else 0)\n"
    )
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    assert len(mods) > 60


def test_arrows_between_packages_point_the_allowed_way():
    bad = []
    for f in sorted(PKG.rglob("*.py")):
        parts = f.relative_to(PKG).parts
        if len(parts) == 1:
            continue  # pgc_fast/__init__.py
        pkg = parts[0]
        assert pkg in ALLOWED, f"new package {pkg!r}: add it to ALLOWED and docs/DESIGN.md"
        for line, mod in _imports(f):
            if not mod.startswith("pgc_fast."):
                continue
            target = mod.split(".")[1]
            if target in (pkg, "_rust_mesh", "__version__") or target not in ALLOWED:
                continue
            if target not in ALLOWED[pkg]:
                bad.append(f"{f.relative_to(PKG)}:{line}: {pkg} imports {mod}")
    assert not bad, "\n".join(bad)


def test_kernels_never_import_pgc_fast():
    bad = [
        f"{f.name}:{line}: {mod}"
        for f in KERNELS.rglob("*.py")
        for line, mod in _imports(f)
        if mod.split(".")[0] == "pgc_fast"
    ]
    assert not bad, bad


@pytest.mark.parametrize("root", [PKG, KERNELS], ids=["pgc_fast", "pgc_kernels"])
def test_nothing_below_the_cli_reads_argv(root):
    bad = []
    for f in sorted(root.rglob("*.py")):
        if f.relative_to(root).parts[0] == "cli":
            continue
        for n in ast.walk(ast.parse(f.read_text())):
            if (
                isinstance(n, ast.Attribute)
                and n.attr == "argv"
                and isinstance(n.value, ast.Name)
                and n.value.id == "sys"
            ):
                bad.append(f"{f.relative_to(root)}:{n.lineno}")
    assert not bad, bad
