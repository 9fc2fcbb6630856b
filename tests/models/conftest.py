from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch


@pytest.fixture
def one_torch_thread() -> Iterator[None]:
    """For tests of many tiny tensor ops: two intra-op threads competing with other processes for two cores
    made them >10× slower (measured). Runs the test single-threaded and restores the setting. Opt in with
    `pytestmark = pytest.mark.usefixtures("one_torch_thread")`."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
