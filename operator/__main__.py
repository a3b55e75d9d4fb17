"""`python -m foreseer.operator`: the same as `foreseer run`."""

from __future__ import annotations

import sys

from foreseer.cli import main

if __name__ == "__main__":
    sys.exit(main(["run", *sys.argv[1:]]))
