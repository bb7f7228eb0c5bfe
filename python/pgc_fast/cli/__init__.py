"""The ``pgc-fast`` command line: one module per command (generate, demo, image, bench, train-prior,
convert-zero123), each parse → config → call. Only this package reads argv; everything below takes typed arguments.
"""

from __future__ import annotations

import argparse
import difflib
import re
import sys
import typing

from pgc_fast.cli.bench import BENCH_SUITES, cmd_bench
from pgc_fast.cli.convert_zero123 import add_convert_zero123_parser, cmd_convert_zero123
from pgc_fast.cli.demo import add_demo_parser, cmd_demo
from pgc_fast.cli.generate import add_generate_parser, cmd_generate
from pgc_fast.cli.image import add_image_parser, cmd_image
from pgc_fast.cli.train_prior import add_train_prior_parser, cmd_train_prior


class Parser(argparse.ArgumentParser):
    """argparse with "did you mean …" for a mistyped flag or choice, shown with the subcommand's own usage."""

    def error(self, message: str) -> typing.NoReturn:
        super().error(message + _choice_hint(message))

    def parse_args(self, args=None, namespace=None):
        ns, extra = self.parse_known_args(args, namespace)
        if extra:
            sub = _subparser(self, getattr(ns, "command", None)) or self
            sub.error(f"unrecognized arguments: {' '.join(extra)}" + _flag_hint(sub, extra))
        return ns


def _subparser(parser: argparse.ArgumentParser, name: str | None) -> argparse.ArgumentParser | None:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction) and name in action.choices:
            return action.choices[name]
    return None


def _flag_hint(parser: argparse.ArgumentParser, extra: list[str]) -> str:
    """'; did you mean --x?' for each unknown flag close to a known one ('-' and '_' count as the same)."""
    known = {s.replace("-", "_"): s for a in parser._actions for s in a.option_strings}
    hints = []
    for tok in extra:
        if tok.startswith("-"):
            name = tok.split("=", 1)[0].replace("-", "_")
            close = difflib.get_close_matches(name, list(known), n=1, cutoff=0.75)
            if close:
                hints.append((tok.split("=", 1)[0], known[close[0]]))
    if len(hints) == 1:
        return f"; did you mean {hints[0][1]}?"
    return "; did you mean " + ", ".join(f"{b} (for {a})" for a, b in hints) + "?" if hints else ""


def _choice_hint(message: str) -> str:
    m = re.search(r"invalid choice: '([^']*)' \(choose from (.*)\)", message)
    if not m:
        return ""
    choices = re.findall(r"'([^']*)'", m.group(2))
    close = difflib.get_close_matches(m.group(1), choices, n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="pgc-fast", description="PGC-3D text-to-texture, fast.", allow_abbrev=False)
    sub = parser.add_subparsers(dest="command", required=True)
    add_generate_parser(sub)
    add_demo_parser(sub)
    sub.add_parser("version", help="print versions")
    b = sub.add_parser("bench", help="run the kernel / step benchmarks on this machine (needs a source checkout)")
    b.add_argument(
        "suite",
        nargs="?",
        choices=sorted(BENCH_SUITES),
        default="kernels",
        help="kernels (GPU tables, or pytest-benchmark of the torch twins on a CPU), attention, vae, unet, "
        "guidance, hashgrid, step (the original's SDS step vs ours), dmtet (the original's DMTet step of command G "
        "vs ours), zero123 (ours vs the original's Zero123 step), all",
    )
    b.add_argument("--results", default=None, help="append the tables to this markdown file")
    b.epilog = "Arguments after `--` go to the benchmark script (e.g. pgc-fast bench step -- --views 2)."
    add_image_parser(sub)
    add_train_prior_parser(sub)
    add_convert_zero123_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["image"]:  # these two parse their own flags
        return cmd_image(argv[1:])
    if argv[:1] == ["train-prior"]:
        return cmd_train_prior(argv[1:])
    extra: list[str] = []
    if argv[:1] == ["bench"] and "--" in argv:  # everything after `--` belongs to the benchmark script
        cut = argv.index("--")
        argv, extra = argv[:cut], argv[cut + 1 :]
    parser = build_parser()
    args = parser.parse_args(argv)
    args.extra = extra
    if args.command == "version":
        import pgc_fast
        import pgc_kernels
        from pgc_fast import _rust_mesh

        print(
            f"pgc-fast {pgc_fast.__version__}, pgc-kernels {pgc_kernels.__version__}, rust_mesh {_rust_mesh.version()}"
        )
        return 0
    if args.command == "generate":
        return cmd_generate(args, argv)
    if args.command == "bench":
        return cmd_bench(args)
    if args.command == "demo":
        return cmd_demo(args)
    if args.command == "convert-zero123":
        return cmd_convert_zero123(args)
    return 2
