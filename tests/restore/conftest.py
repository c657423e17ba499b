"""Restoration tests run torch on one thread: on 2 shared cores, torch's default of one thread per core
spins the threads against each other (tiny models ran up to 40x slower)."""

from collections.abc import Iterator

import pytest


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread() -> Iterator[None]:
    torch = pytest.importorskip("torch")
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
