import pytest
import torch

import modnets


@pytest.fixture(autouse=True)
def _seed_and_reset():
    torch.manual_seed(0)
    previous = modnets.check_interfaces(False)
    yield
    modnets.check_interfaces(previous)
