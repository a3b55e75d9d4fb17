"""`python -m foreseer.bench <name>`: one sub-command per benchmark, each in its own module.

Add a benchmark by adding a line to `BENCHMARKS`; its module provides
`add_arguments(parser)` and `run(args) -> int`, as `foreseer.cli` sub-commands do.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

# name -> (module, help). Imported only when chosen, so one benchmark's heavy
# or missing dependency never breaks another.
BENCHMARKS: dict[str, tuple[str, str]] = {
    "forecast": ("foreseer.bench.forecasting", "forecast accuracy and speed on trace CSVs"),
    "operator": ("foreseer.bench.operating", "operator CPU, latency and memory at N policies"),
    "loop": ("foreseer.bench.looping", "closed-loop scaling vs HPA, -style baselines, oracle"),
}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m foreseer.bench", description=__doc__)
    subs = parser.add_subparsers(dest="benchmark", required=True)
    for name, (module_name, help_text) in BENCHMARKS.items():
        sub = subs.add_parser(name, help=help_text)
        sub.set_defaults(_module=module_name)
        try:
            importlib.import_module(module_name).add_arguments(sub)
        except ModuleNotFoundError as exc:
            sub.set_defaults(_missing=str(exc))
    args = parser.parse_args(argv)
    if getattr(args, "_missing", None):
        print(f"bench {args.benchmark}: not available: {args._missing}", file=sys.stderr)
        return 2
    return int(importlib.import_module(args._module).run(args))


if __name__ == "__main__":
    sys.exit(main())
