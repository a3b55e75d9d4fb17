"""The `foreseer` command line: one sub-command per job, each in its own module.

Only the chosen sub-command's module is imported, so `foreseer --help` stays fast
and a broken or missing optional dependency of one job cannot break the others.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

# name -> (module, help). Each module has `add_arguments(parser)` and `run(args) -> int`.
COMMANDS: dict[str, tuple[str, str]] = {
    "run": ("foreseer.operator.running", "run the operator against the current cluster"),
    "backtest": ("foreseer.simulator.backtesting", "replay a trace or Prometheus history"),
    "crds": ("foreseer.operator.crds", "print or write the generated CRD"),
}


def main(argv: Sequence[str] | None = None) -> int:
    return dispatch("foreseer", __doc__, COMMANDS, argv)


def dispatch(
    prog: str,
    description: str | None,
    commands: dict[str, tuple[str, str]],
    argv: Sequence[str] | None = None,
) -> int:
    """Parse ``argv`` into one of ``commands`` (name -> (module, help)) and run it.

    Also serves `python -m foreseer.bench`, whose benchmarks follow the same
    `add_arguments` / `run` convention.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(prog=prog, description=description)
    subs = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    chosen = next((a for a in argv if not a.startswith("-")), None)
    module = None
    for name, (module_name, help_text) in commands.items():
        sub = subs.add_parser(name, help=help_text, description=help_text)
        if name == chosen:
            try:
                module = importlib.import_module(module_name)
            except ImportError as exc:
                print(f"{prog} {name}: not available: {exc}", file=sys.stderr)
                return 2
            module.add_arguments(sub)
    args = parser.parse_args(argv)
    assert module is not None  # argparse rejects unknown commands before this point
    return int(module.run(args))


if __name__ == "__main__":
    sys.exit(main())
