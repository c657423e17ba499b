"""Fixtures of the review tests: one real run built per session, copied for each test."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from review_helpers import build_run


@pytest.fixture(scope="session")
def review_run_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_run(tmp_path_factory.mktemp("review"))


@pytest.fixture
def review_run(review_run_template: Path, tmp_path: Path) -> Path:
    """A private copy per test: decisions written by one test never leak into another."""
    dst = tmp_path / "run"
    shutil.copytree(review_run_template, dst)
    return dst
