import pytest
import torch

from modnets.errors import ConfigError
from modnets.models import imn


def test_shapes_and_transforms_are_group_elements():
    net = imn(image_size=16, m=3, n=2, latent_dim=2, matrix_size=4, hidden=16, channels=4)
    mu, logvar = net.encode(torch.rand(5, 3, 16, 16))
    assert mu.shape == logvar.shape == (5, 3, 2)
    t = net.transforms(mu)
    assert t.shape == (5, 3, 4, 4)
    # exp(sum z_i A_i): det = exp(trace)
    algebra = torch.einsum("bmd,mdij->bmij", mu, torch.stack([c.basis for c in net.compositional]))
    assert torch.allclose(torch.linalg.det(t), algebra.diagonal(dim1=-2, dim2=-1).sum(-1).exp(), rtol=1e-4)
    assert torch.allclose(net.transforms(torch.zeros(1, 3, 2)), torch.eye(4).expand(1, 3, 4, 4), atol=1e-6)
    assert net.identities().shape == (2, 4, 4)
    assert net.decoder(net.identities()).shape == (2, 3, 16, 16)
    assert net.algebra_penalties().shape == (3,)


def test_identity_modules_never_see_the_input():
    net = imn(image_size=16, m=2, n=2, hidden=16, channels=4)
    before = net.identities().clone()
    net.encode(torch.rand(3, 3, 16, 16))
    assert torch.equal(net.identities(), before)


def test_algebra_penalty_is_zero_for_annihilating_bases():
    net = imn(image_size=16, m=1, n=1, latent_dim=2, matrix_size=3, hidden=8, channels=4)
    with torch.no_grad():
        basis = torch.zeros(2, 3, 3)
        basis[0, 0, 1] = 1.0  # E_01 E_21 = 0 and E_21 E_01 = 0
        basis[1, 2, 1] = 1.0
        net.compositional[0].basis.copy_(basis)
    assert net.algebra_penalties().item() == 0
    with torch.no_grad():
        net.compositional[0].basis[1] = torch.zeros(3, 3).index_put_((torch.tensor(1), torch.tensor(2)),
                                                                     torch.tensor(1.0))
    assert net.algebra_penalties().item() > 0  # E_01 E_12 = E_02


def test_bad_sizes_are_refused():
    with pytest.raises(ConfigError, match="m must be an int >= 1, got 0"):
        imn(m=0)
    with pytest.raises(ConfigError, match="power of two"):
        imn(image_size=24)
