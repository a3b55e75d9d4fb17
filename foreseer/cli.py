"""The `foreseer` command line: one sub-command per job, each in its own module.

Sub-commands register lazily so that `foreseer --help` stays fast and a
missing optional dependency of one job cannot break the others.
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
    parser = argparse.ArgumentParser(prog=prog, description=description)
    subs = parser.add_subparsers(dest="command", required=True)
    for name, (module_name, help_text) in commands.items():
        sub = subs.add_parser(name, help=help_text)
        sub.set_defaults(_module=module_name)
        try:
            importlib.import_module(module_name).add_arguments(sub)
        except ModuleNotFoundError as exc:
            sub.set_defaults(_missing=str(exc))
    args = parser.parse_args(argv)
    if getattr(args, "_missing", None):
        print(f"{prog} {args.command}: not available: {args._missing}", file=sys.stderr)
        return 2
    module = importlib.import_module(args._module)
    return int(module.run(args))


if __name__ == "__main__":
    sys.exit(main())
