"""Build a symlink tree that mirrors the installed package layout, for mypy and import-linter.

Neither tool can follow setuptools' editable import hook (our folders do not sit where
their package names say), so both read this tree. It is derived from pyproject.toml's
package-dir mapping, so that the mapping is written down once.
"""

import sys
import tomllib
from pathlib import Path


def main(root: Path, out: Path) -> None:
    setuptools = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]
    mapping: dict[str, str] = setuptools["package-dir"]
    for package, folder in mapping.items():
        link = out.joinpath(*package.split("."))
        source = (root / folder).resolve()
        if any(other.startswith(package + ".") for other in mapping):
            # A parent package's directory must also hold its children's links, so it is a
            # real directory of per-module links rather than one link to its folder.
            link.mkdir(parents=True, exist_ok=True)
            for module in source.glob("*.py"):
                _link(link / module.name, module)
        else:
            _link(link, source)


def _link(link: Path, target: Path) -> None:
    link.parent.mkdir(parents=True, exist_ok=True)
    link.unlink(missing_ok=True)
    link.symlink_to(target)


if __name__ == "__main__":
    main(Path(sys.argv[1]).resolve(), Path(sys.argv[2]))
