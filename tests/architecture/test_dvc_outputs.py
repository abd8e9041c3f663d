"""Every output of every stage is versioned, so a commit restores it and a clone pulled from a
DVC remote has it: DVC caches it (and pushes it), or, with `cache: false`, git tracks it."""

import subprocess

import pytest
import yaml
from helpers import REPO

from prodcls_pipeline.pipeline_registry import STAGES


def outputs() -> list[tuple[str, str, dict]]:
    """(stage, path, options) for every out of dvc.yaml."""
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text(encoding="utf-8"))["stages"]
    rows = []
    for stage in STAGES:
        for out in stages[stage].get("outs", []):
            path, options = next(iter(out.items())) if isinstance(out, dict) else (out, {})
            rows.append((stage, path, options))
    return rows


def git_ignores(path: str) -> bool:
    result = subprocess.run(
        ["git", "check-ignore", "--no-index", "-q", path], cwd=REPO, check=False
    )
    return result.returncode == 0


@pytest.mark.parametrize(("stage", "path", "options"), outputs())
def test_an_output_dvc_does_not_cache_is_tracked_by_git(stage, path, options):
    if options.get("cache", True):
        return
    assert not git_ignores(path), f"{stage}: {path} has cache: false and git ignores it"


def test_every_stage_has_outputs_and_the_check_can_fail():
    assert {stage for stage, _, _ in outputs()} == set(STAGES)
    assert git_ignores("data/06_models/classifier.pt")
    assert not git_ignores("data/08_reporting/metrics.json")
