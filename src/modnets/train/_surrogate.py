"""Training a module through its surrogate gradient module, and scoring it by the SGM (thesis 4.2.3, 4.3.1).

A module with indirect supervision trains alone: its output goes through an SGM to the nearest loss, and
the module and the SGM learn together. The SGM's held-out loss and predictive variance then serve as a
relative indicator of the module's quality (to compare candidates, search hyper-parameters, stop early),
not as a task score.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset

from ..errors import ConfigError
from ..modules import SurrogateGradientModule
from ._classification import classification_terms
from ._supervised import FitConfig, FitResult, fit

__all__ = ["SurrogateObjective", "SurrogateScore", "surrogate_score", "train_through_surrogate"]

Batch = Mapping[str, Any]
#: ``inputs(module, batch)``: runs the trained module on a batch and returns the SGM's keyword inputs.
SurrogateInputs = Callable[[nn.Module, Batch], Mapping[str, Tensor]]


class SurrogateObjective(nn.Module):
    """A module and its SGM as one :class:`~modnets.train.Objective` whose ``loss`` is the SGM's cross-entropy
    (and ``accuracy``), and whose ``predict`` is the SGM's most probable class.

    Args:
        module: the module trained through the SGM.
        sgm: the surrogate gradient module.
        inputs: ``inputs(module, batch)`` runs ``module`` and returns the SGM's keyword inputs (for a
            :class:`~modnets.modules.MaskReadout`: ``mask``, ``features``, ``route``).
        target: the batch key of the ``(B,)`` class targets of the nearest loss.
        batch_keys: ``{key: meaning}`` of the batch entries ``inputs`` reads (checked on the first batch).
    """

    def __init__(self, *, module: nn.Module, sgm: SurrogateGradientModule, inputs: SurrogateInputs,
                 target: str = "answer", batch_keys: Mapping[str, str] | None = None) -> None:
        super().__init__()
        if not isinstance(sgm, SurrogateGradientModule):
            raise ConfigError(f"sgm must be a SurrogateGradientModule, got {type(sgm).__name__}")
        self.module, self.sgm = module, sgm
        self.inputs, self.target = inputs, target
        self._keys = dict(batch_keys or {})

    @property
    def batch_keys(self) -> dict[str, str]:
        return {**self._keys, self.target: "(B,) long class targets of the nearest loss"}

    def logits(self, batch: Batch) -> Tensor:
        """``(B, M)`` the SGM's scores for a batch."""
        return self.sgm(**self.inputs(self.module, batch))

    def loss(self, batch: Batch) -> dict[str, Tensor]:
        """``loss``: the SGM's cross-entropy on the targets; ``accuracy``: its accuracy (detached)."""
        return classification_terms(self.logits(batch), batch[self.target], name=self.target,
                                    owner=type(self.sgm).__name__)

    @torch.no_grad()
    def predict(self, batch: Batch) -> Tensor:
        """``(B,)`` the SGM's most probable class."""
        return self.logits(batch).argmax(1)


def train_through_surrogate(
    module: nn.Module,
    sgm: SurrogateGradientModule,
    dataset: Dataset,
    *,
    inputs: SurrogateInputs,
    config: FitConfig,
    collate: Callable[[list], Batch],
    target: str = "answer",
    **fit_options: Any,
) -> FitResult:
    """Train ``module`` (and ``sgm`` with it) on the SGM's loss with :func:`~modnets.train.fit`.

    Args:
        module: the module with indirect supervision.
        sgm: its surrogate gradient module.
        dataset: training examples (the module's own input data and the nearest loss's targets).
        inputs: runs the module on a batch and returns the SGM's keyword inputs.
        config: :func:`~modnets.train.fit` settings.
        collate: turns a list of examples into a batch.
        target: the batch key of the class targets.
        fit_options: passed on to :func:`~modnets.train.fit` (``run``, ``name``).

    Returns:
        what :func:`~modnets.train.fit` returns; ``module`` and ``sgm`` are trained in place.
    """
    objective = SurrogateObjective(module=module, sgm=sgm, inputs=inputs, target=target)
    return fit(objective, dataset, config=config, collate=collate, **fit_options)


@dataclass(frozen=True)
class SurrogateScore:
    """How a module does through its SGM on held-out data (MC-dropout estimates).

    Attributes:
        loss: mean negative log-likelihood of the targets under the MC-mean probabilities.
        variance: mean predictive variance (of each example's predicted class probability over samples).
        accuracy: accuracy of the MC-mean prediction.
        n: examples scored.
    """

    loss: float
    variance: float
    accuracy: float
    n: int


@torch.no_grad()
def surrogate_score(
    module: nn.Module,
    sgm: SurrogateGradientModule,
    dataset: Dataset,
    *,
    inputs: SurrogateInputs,
    collate: Callable[[list], Batch],
    target: str = "answer",
    samples: int = 20,
    batch_size: int = 256,
) -> SurrogateScore:
    """Score a module by its SGM on held-out data: MC-dropout loss and predictive variance (thesis Fig. 4.6).

    Args:
        module: the trained module.
        sgm: its SGM.
        dataset: held-out examples.
        inputs: runs the module on a batch and returns the SGM's keyword inputs.
        collate: turns a list of examples into a batch.
        target: the batch key of the class targets.
        samples: dropout samples per example.
        batch_size: examples per forward pass.

    Returns:
        mean loss, mean variance, accuracy and the number of examples.
    """
    modes = module.training, sgm.training
    module.eval()
    sgm.eval()
    loss = var = correct = 0.0
    n = 0
    try:
        for batch in DataLoader(dataset, batch_size=batch_size, shuffle=False, collate_fn=collate):
            pred = sgm.predictive(**inputs(module, batch), samples=samples)
            y = batch[target]
            loss += float(F.nll_loss(torch.log(pred.probs.clamp_min(1e-12)), y, reduction="sum"))
            var += float(pred.variance.sum())
            correct += float((pred.probs.argmax(1) == y).sum())
            n += y.shape[0]
    finally:
        module.train(modes[0])
        sgm.train(modes[1])
    if n == 0:
        raise ConfigError("surrogate_score got an empty data set")
    return SurrogateScore(loss / n, var / n, correct / n, n)
