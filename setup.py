"""setuptools' package list: each package of pyproject's package-dir whose folder is present.

The operator image copies only the operator's folders (foreseer/, operator/, predictors/),
not bench/, simulator/ or lab/, and a static list would fail its build on the missing ones;
a full checkout lists every package. Everything else is in pyproject.toml.
"""

import tomllib
from pathlib import Path

from setuptools import setup

ROOT = Path(__file__).resolve().parent
PACKAGE_DIR: dict[str, str] = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"][
    "setuptools"]["package-dir"]

setup(packages=[package for package, folder in PACKAGE_DIR.items()
                if (ROOT / folder / "__init__.py").is_file()])
