"""`python -m foreseer.bench <name>`: one sub-command per benchmark, each in its own module.

Add a benchmark by adding a line to `BENCHMARKS`; its module provides
`add_arguments(parser)` and `run(args) -> int`, as `foreseer.cli` sub-commands do.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from foreseer.cli import dispatch

# name -> (module, help). Imported only when chosen, so one benchmark's heavy
# or missing dependency never breaks another.
BENCHMARKS: dict[str, tuple[str, str]] = {
    "forecast": ("foreseer.bench.forecasting", "forecast accuracy and speed on trace CSVs"),
    "operator": ("foreseer.bench.operating", "operator CPU, latency and memory at N policies"),
    "fit": ("foreseer.bench.fitting", "the operator's fit at the policy defaults: time, accuracy"),
    "loop": ("foreseer.bench.looping", "closed-loop scaling vs HPA, -style baselines, oracle"),
    "scale": ("foreseer.bench.scaling", "policies sharded on Leases across operator replicas"),
    "clients": ("foreseer.bench.clients", "the Prometheus source's latency, CPU, threads, memory"),
    "kubeclients": ("foreseer.bench.kubeclients",
                    "the Kubernetes adapter against kubernetes_asyncio and lightkube"),
}


def main(argv: Sequence[str] | None = None) -> int:
    return dispatch("python -m foreseer.bench", __doc__, BENCHMARKS, argv)


if __name__ == "__main__":
    sys.exit(main())
