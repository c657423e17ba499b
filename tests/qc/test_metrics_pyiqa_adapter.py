"""The ``pyiqa`` adapter metric: metadata from pyiqa, weights only from a local folder, never a download."""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
# Imported after setting HF_HUB_OFFLINE because huggingface_hub reads it once at import.
import pyiqa
import pyiqa.utils.download_util as download_util
import torch.hub

from ggt.qc.metrics import MetricUnavailableError, create_metric
from ggt.qc.metrics.pyiqa_adapter import _local_weights_only, expected_weight_files


@pytest.fixture(autouse=True)
def _no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    # Both the pyiqa helper and torch.hub's fetcher end in download_url_to_file; any call is a failure.
    def fail(*args: object, **kwargs: object) -> None:
        pytest.fail(f"download attempted: {args}")

    monkeypatch.setattr(download_util, "download_url_to_file", fail)
    monkeypatch.setattr(torch.hub, "download_url_to_file", fail)


def _pair() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(3)
    hq = rng.random((48, 48, 3), dtype=np.float32)
    lq = np.clip(hq + 0.05 * rng.standard_normal(hq.shape).astype(np.float32), 0, 1)
    return lq, hq


@pytest.mark.parametrize("name", ["gmsd", "vif"])
def test_weight_free_metric_runs_with_pyiqa_metadata(name: str) -> None:
    m = create_metric("pyiqa", metric=name, device="cpu")
    ref = pyiqa.create_metric(name, device="cpu")
    assert m.kind == "fr"
    assert m.lower_better is bool(ref.lower_better)
    assert m.range is not None and m.range[0] == 0.0
    m.check_available()
    lq, hq = _pair()
    v = m(lq, hq)
    assert isinstance(v, float) and np.isfinite(v)
    with pytest.raises(TypeError, match="FR"):
        m(lq)


def test_learned_metric_without_weights_names_file_and_folder(tmp_path: Path) -> None:
    m = create_metric("pyiqa", metric="musiq", weights_dir=tmp_path)
    assert m.kind == "nr" and m.lower_better is False
    assert expected_weight_files("musiq") == ["musiq_koniq_ckpt-e95806b9.pth"]
    with pytest.raises(MetricUnavailableError) as exc:
        m(_pair()[0])
    assert "musiq_koniq_ckpt-e95806b9.pth" in str(exc.value)
    assert str(tmp_path) in str(exc.value)


def test_learned_metric_without_weights_dir_is_unavailable() -> None:
    # The message names the CLI flag as well as the Python argument: a user of `ggt eval` never sees
    # the latter.
    with pytest.raises(MetricUnavailableError, match=r"--iqa-weights DIR. on .ggt eval., weights_dir="):
        create_metric("pyiqa", metric="musiq").check_available()


def test_unknown_pyiqa_metric_is_named() -> None:
    with pytest.raises(ValueError, match=r"unknown pyiqa metric 'no_such_metric'.*musiq"):
        create_metric("pyiqa", metric="no_such_metric")


def test_runtime_guard_reads_only_weights_dir(tmp_path: Path) -> None:
    # Files the static lookup cannot predict are still stopped while the pyiqa model is built.
    from pyiqa.archs import arch_util

    (tmp_path / "present.pth").write_bytes(b"x")
    with _local_weights_only(tmp_path):
        assert arch_util.load_file_from_url("https://example.invalid/w/present.pth") == str(
            tmp_path / "present.pth"
        )
        with pytest.raises(MetricUnavailableError, match=rf"absent\.pth.*{re.escape(str(tmp_path))}"):
            arch_util.load_file_from_url("https://example.invalid/w/absent.pth")
        with pytest.raises(MetricUnavailableError, match=r"backbone\.pth"):
            torch.hub.load_state_dict_from_url("https://example.invalid/backbone.pth")
    assert arch_util.load_file_from_url is download_util.load_file_from_url


def test_default_is_weight_free_pyiqa_psnr() -> None:
    m = create_metric("pyiqa")
    assert (m.kind, m.lower_better, m.range) == (type(m).kind, type(m).lower_better, type(m).range)
    lq, hq = _pair()
    assert np.isfinite(m(lq, hq))
