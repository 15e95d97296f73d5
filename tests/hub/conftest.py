import pytest
import torch

from modnets.hub import Hub
from modnets.models import nmn


def _scramble(module: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Give every weight and batch-norm statistic values that no constructor would produce."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for t in module.state_dict().values():
            if t.is_floating_point():
                t.copy_(torch.randn(t.shape, generator=gen).abs() + 0.1)
    return module


@pytest.fixture
def scramble():
    return _scramble


@pytest.fixture
def hub(tmp_path):
    return Hub(tmp_path / "hub")


@pytest.fixture(scope="module")
def model():
    """A small typed NMN with scrambled weights, in evaluation mode."""
    torch.manual_seed(0)
    return _scramble(nmn(True, image_size=32, hidden=16)).eval()
