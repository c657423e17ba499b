"""Train/test splits: stratified by category, reproducible by seed, near-duplicates kept on one side."""

from __future__ import annotations

import hashlib
import math
import random
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass


class SplitError(ValueError):
    """A split specification that cannot be used."""


@dataclass(frozen=True)
class SplitSpec:
    """`test=0.05` (a fraction of the pairs) or `test=500` (a fixed count); either is shared out by category."""

    fraction: float | None = None
    count: int | None = None

    @classmethod
    def parse(cls, text: str | float | int) -> SplitSpec:
        if isinstance(text, int | float):
            value = str(text)
        else:
            key, sep, value = text.strip().partition("=")
            if not sep:
                key, value = "test", key
            if key.strip() != "test":
                raise SplitError(
                    f"split {text!r}: only a held-out 'test' split is supported (test=0.05, test=500)"
                )
        value = value.strip()
        if "." in value or "e" in value.lower():
            try:
                frac = float(value)
            except ValueError:
                raise SplitError(f"split {text!r}: expected test=FRACTION or test=COUNT") from None
            if not 0.0 <= frac < 1.0:
                # 1e3 parses as a fraction too: say how a count is written rather than just "out of range".
                raise SplitError(
                    f"split {text!r}: a fraction must be in [0, 1) (for a pair count write a whole "
                    "number, e.g. test=500)"
                )
            return cls(fraction=frac)
        try:
            n = int(value)
        except ValueError:
            raise SplitError(f"split {text!r}: expected test=FRACTION or test=COUNT") from None
        if n < 0:
            raise SplitError(f"split {text!r}: the test count cannot be negative")
        return cls(count=n)

    def wanted(self, total: int) -> int:
        """Test pairs wanted of `total`: a fraction of the whole dataset rounded half up, or the count."""
        if self.fraction is not None:
            # Rounded over the whole dataset, not per category: per-category rounding lost small splits.
            return min(total, math.floor(total * self.fraction + 0.5))
        return min(total, self.count or 0)

    def describe(self) -> str:
        return f"test={self.fraction}" if self.fraction is not None else f"test={self.count}"


class _UnionFind:
    def __init__(self) -> None:
        self.parent: dict[str, str] = {}

    def find(self, x: str) -> str:
        self.parent.setdefault(x, x)
        root = x
        while self.parent[root] != root:
            root = self.parent[root]
        while self.parent[x] != root:  # path compression keeps long near-dup chains cheap
            self.parent[x], x = root, self.parent[x]
        return root

    def union(self, a: str, b: str) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            # The smaller id wins so the group key does not depend on the order rows arrive in.
            lo, hi = sorted((ra, rb))
            self.parent[hi] = lo


def near_dup_groups(rows: Iterable[tuple[str, str | None, str | None]]) -> dict[str, str]:
    """Item id -> group key, from (id, near_dup_of, phash) rows: near_dup_of chains and equal pHashes join."""
    uf = _UnionFind()
    by_phash: dict[str, str] = {}
    for item, dup_of, phash in rows:
        uf.find(item)
        if dup_of:
            uf.union(item, dup_of)
        if phash:
            first = by_phash.setdefault(phash, item)
            if first != item:
                uf.union(item, first)
    return {item: uf.find(item) for item in uf.parent}


def _targets(sizes: dict[str, int], spec: SplitSpec) -> dict[str, int]:
    """Test pairs wanted per category: the whole-dataset target shared by largest remainder, so it sums
    exactly and each category gets its proportional share."""
    total = sum(sizes.values())
    if total == 0:
        return dict.fromkeys(sizes, 0)
    want = spec.wanted(total)
    exact = {c: want * n / total for c, n in sizes.items()}
    out = {c: int(v) for c, v in exact.items()}
    rest = want - sum(out.values())
    for c in sorted(exact, key=lambda c: (-(exact[c] - out[c]), c))[:rest]:
        out[c] += 1
    return out


def assign_splits(
    units: dict[str, tuple[str, int]], groups: dict[str, str], spec: SplitSpec, seed: int
) -> dict[str, str]:
    """Split export units (item id -> (category, pairs it yields)) into 'train' and 'test'.

    Whole near-duplicate groups move together, so a photo and its near-copy never straddle the split;
    the price is that a category's test count can miss its target by up to one group.
    """
    group_members: dict[str, list[str]] = defaultdict(list)
    for item in sorted(units):
        group_members[groups.get(item, item)].append(item)
    # A group is stratified under the category of most of its pairs (ties: the smaller name).
    by_category: dict[str, list[tuple[str, int]]] = defaultdict(list)
    for key, members in group_members.items():
        weight: dict[str, int] = defaultdict(int)
        for m in members:
            weight[units[m][0]] += units[m][1]
        cat = min(weight, key=lambda c: (-weight[c], c))
        by_category[cat].append((key, sum(units[m][1] for m in members)))
    sizes = {c: sum(n for _, n in gs) for c, gs in by_category.items()}
    targets = _targets(sizes, spec)
    split: dict[str, str] = {}
    for cat in sorted(by_category):
        gs = sorted(by_category[cat])
        # A per-category stream derived from the seed: adding a category does not reshuffle the others.
        digest = hashlib.sha256(f"{seed}:{cat}".encode()).digest()
        random.Random(int.from_bytes(digest[:8], "big")).shuffle(gs)
        taken = 0
        for key, n in gs:
            side = "train"
            if taken < targets[cat] and (taken + n <= targets[cat] or taken == 0):
                side, taken = "test", taken + n
            for m in group_members[key]:
                split[m] = side
    return split
