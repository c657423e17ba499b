"""Near-duplicate lookup over 64-bit perceptual hashes, vectorised so 100K items stay cheap."""

from __future__ import annotations

import numpy as np


class PhashIndex:
    def __init__(self) -> None:
        self._ids: list[str] = []
        self._hashes = np.zeros(1024, dtype=np.uint64)

    def __len__(self) -> int:
        return len(self._ids)

    def add(self, item_id: str, phash_hex: str) -> None:
        n = len(self._ids)
        if n == len(self._hashes):
            self._hashes = np.concatenate([self._hashes, np.zeros_like(self._hashes)])
        self._hashes[n] = np.uint64(int(phash_hex, 16))
        self._ids.append(item_id)

    def nearest(self, phash_hex: str) -> tuple[str, int] | None:
        """The closest earlier item and its Hamming distance, or None when the index is empty."""
        n = len(self._ids)
        if n == 0:
            return None
        xor = np.bitwise_xor(self._hashes[:n], np.uint64(int(phash_hex, 16)))
        dist = np.bitwise_count(xor)
        best = int(np.argmin(dist))
        return self._ids[best], int(dist[best])
