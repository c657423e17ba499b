"""Splits: stratified by category, reproducible by seed, near-duplicate groups on one side, fixed counts."""

import pytest
from dataset_helpers import make_run

from ggt.dataset import ExportUsageError, SplitError, SplitSpec, export
from ggt.dataset.split import assign_splits, near_dup_groups


def _units(n_per_cat):
    return {f"{cat}{i:04d}": (cat, 1) for cat, n in n_per_cat.items() for i in range(n)}


def test_fraction_is_stratified_and_reproducible():
    units = _units({"haze": 400, "rain": 100, "snow": 20})
    a = assign_splits(units, {}, SplitSpec.parse("test=0.1"), seed=0)
    per = {
        c: sum(1 for k, v in a.items() if v == "test" and k.startswith(c)) for c in ("haze", "rain", "snow")
    }
    assert per == {"haze": 40, "rain": 10, "snow": 2}
    assert a == assign_splits(units, {}, SplitSpec.parse("test=0.1"), seed=0)
    assert a != assign_splits(units, {}, SplitSpec.parse("test=0.1"), seed=1)


def test_fixed_test_size_is_exact_and_shared_by_category():
    units = _units({"haze": 3000, "rain": 1500, "low_light": 500})
    a = assign_splits(units, {}, SplitSpec.parse("test=500"), seed=3)
    test = [k for k, v in a.items() if v == "test"]
    assert len(test) == 500
    assert (
        sum(k.startswith("haze") for k in test) == 300 and sum(k.startswith("low_light") for k in test) == 50
    )


def test_near_duplicate_groups_stay_on_one_side():
    rows = [(f"i{k}", None, f"ph{k}") for k in range(200)]
    rows[1] = ("i1", "i0", "ph1")  # chain i2 -> i1 -> i0
    rows[2] = ("i2", "i1", "ph2")
    rows[3] = ("i3", None, "ph0")  # the same pHash as i0
    groups = near_dup_groups(rows)
    assert len({groups[f"i{k}"] for k in range(4)}) == 1
    units = {f"i{k}": ("haze", 1) for k in range(200)}
    for seed in range(20):
        a = assign_splits(units, groups, SplitSpec.parse("test=0.2"), seed)
        assert len({a[f"i{k}"] for k in range(4)}) == 1


def test_spec_parsing():
    assert SplitSpec.parse("test=0.05").fraction == 0.05 and SplitSpec.parse("test=500").count == 500
    assert SplitSpec.parse("0").count == 0
    for bad in ("test=1.5", "val=0.1", "test=x", "test=-3"):
        with pytest.raises(SplitError):
            SplitSpec.parse(bad)


def test_export_keeps_marked_near_duplicates_together(tmp_path):
    run, ids = make_run(tmp_path, {"haze": 10}, near_dups=((0, 1), (1, 2), (3, 4)))
    for seed in range(4):
        s = export(run, "folder", tmp_path / f"o{seed}", split="test=0.3", seed=seed)
        side = {
            p.stem: split
            for split in ("train", "test")
            for p in (tmp_path / f"o{seed}" / split / "gt").glob("*.png")
        }
        assert side[ids[0]] == side[ids[1]] == side[ids[2]] and side[ids[3]] == side[ids[4]]
        assert s.splits["test"] in (2, 3, 4)


def test_fraction_is_taken_of_the_whole_dataset_not_rounded_per_category():
    # 12 pairs over 4 categories: per-category rounding gave 0 test pairs for 0.05 and 5 (42 %) for 0.3.
    units = _units({"haze": 3, "rain": 3, "snow": 3, "blur": 3})
    for text, want in (("test=0.05", 1), ("test=0.3", 4), ("test=0.5", 6)):
        a = assign_splits(units, {}, SplitSpec.parse(text), seed=0)
        test = [k for k, v in a.items() if v == "test"]
        assert len(test) == want, text
        # Stratified: no category gets more than its proportional share rounded up.
        per_cat = {c: sum(k.startswith(c) for k in test) for c in ("haze", "rain", "snow", "blur")}
        assert max(per_cat.values()) <= -(-want // 4), (text, per_cat)


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("test=1.0", r"fraction must be in \[0, 1\)"),
        ("test=1.5", r"fraction must be in \[0, 1\)"),
        ("test=1e3", r"fraction must be in \[0, 1\).*whole number"),
        ("test=abc", "expected test=FRACTION or test=COUNT"),
        ("test=-3", "cannot be negative"),
    ],
)
def test_spec_errors_keep_their_specific_reason(text, reason):
    with pytest.raises(SplitError, match=reason):
        SplitSpec.parse(text)


@pytest.mark.parametrize("text", ["test=12", "test=999999", "test=0.99"])
def test_split_leaving_no_train_pairs_is_refused_before_writing(tmp_path, text):
    run, _ = make_run(tmp_path, {"haze": 6, "rain": 6})
    out = tmp_path / "out"
    with pytest.raises(ExportUsageError, match=r"leave train empty.*test=11 at most"):
        export(run, "folder", out, split=text)
    assert not out.exists()


def test_empty_test_split_is_noted(tmp_path):
    run, _ = make_run(tmp_path, {"haze": 3})
    s = export(run, "folder", tmp_path / "out", split="test=0.05")
    assert s.splits == {"train": 3}
    assert any("gives no test pairs" in n for n in s.notes), s.notes
    s = export(run, "folder", tmp_path / "none", split="test=0")
    assert not any("test pairs" in n for n in s.notes), s.notes
