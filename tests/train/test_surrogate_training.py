import pytest
import torch
from torch import nn
from torch.utils.data import Dataset

from modnets.modules import MaskReadout, SurrogateGradientModule
from modnets.train import FitConfig, RunDir, SurrogateObjective, surrogate_score, train_through_surrogate


class Spots(Dataset):
    """Toy find task: a 4x4 feature map with one bright cell per example; questions ask either the cell's
    colour (route 0, "describe") or whether a second object exists (route 1, "exist")."""

    def __init__(self, n, seed):
        g = torch.Generator().manual_seed(seed)
        self.colour = torch.randint(0, 3, (n,), generator=g)
        cell = torch.randint(0, 16, (n,), generator=g)
        feats = torch.randn(n, 5, 16, generator=g) * 0.3
        feats[torch.arange(n), 4, cell] = 2.0  # the "object" channel
        feats[torch.arange(n), self.colour, cell] += 2.0  # its colour
        self.features = feats.view(n, 5, 4, 4)
        self.route = torch.randint(0, 2, (n,), generator=g)
        self.answer = torch.where(self.route == 0, self.colour, 3)

    def __len__(self):
        return len(self.answer)

    def __getitem__(self, i):
        return {"features": self.features[i], "route": self.route[i], "answer": self.answer[i]}


def collate(items):
    return {k: torch.stack([it[k] for it in items]) for k in items[0]}


class ToyFind(nn.Module):
    """A 1x1 read-out of the features to a sigmoid mask."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(5, 1, 1)

    def forward(self, features):
        return torch.sigmoid(self.conv(features)).squeeze(1)


def inputs(module, batch):
    return {"mask": module(batch["features"]), "features": batch["features"], "route": batch["route"]}


def _sgm():
    return SurrogateGradientModule(readout=MaskReadout(5, (4, 4)), d_out=4, rank=3, dropout=0.2)


def test_training_a_module_through_its_sgm_lowers_the_sgm_loss():
    torch.manual_seed(0)
    train, held_out = Spots(512, 0), Spots(256, 1)
    find, sgm = ToyFind(), _sgm()
    before = surrogate_score(find, sgm, held_out, inputs=inputs, collate=collate, samples=8)
    result = train_through_surrogate(find, sgm, train, inputs=inputs, collate=collate, run=RunDir(progress=False),
                                     config=FitConfig(epochs=12, batch_size=32, lr=2e-2))
    after = surrogate_score(find, sgm, held_out, inputs=inputs, collate=collate, samples=8)
    assert result.steps == 12 * 16
    assert after.loss < 0.6 * before.loss and after.accuracy > before.accuracy + 0.2
    assert after.n == 256 and after.variance >= 0
    # the module learned to find the object: its mask is highest on the object's cell
    with torch.no_grad():
        mask = find(held_out.features).flatten(1)
    obj = held_out.features[:, 4].flatten(1).argmax(1)
    assert (mask.argmax(1) == obj).float().mean() > 0.9


def test_objective_loss_terms_and_gradient_reach_the_module():
    find, sgm = ToyFind(), _sgm()
    objective = SurrogateObjective(module=find, sgm=sgm, inputs=inputs)
    terms = objective.loss(collate([Spots(8, 2)[i] for i in range(8)]))
    assert set(terms) == {"loss", "accuracy"}
    terms["loss"].backward()
    assert find.conv.weight.grad.abs().sum() > 0 and sgm.linear.weight_a.grad.abs().sum() > 0


def test_objective_needs_an_sgm():
    with pytest.raises(Exception, match="sgm must be a SurrogateGradientModule"):
        SurrogateObjective(module=ToyFind(), sgm=nn.Linear(3, 3), inputs=inputs)
