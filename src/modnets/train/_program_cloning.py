"""Behaviour cloning of programs: a policy learns to write given (gold) programs, and the modules learn to
answer through them (N2NMN's first stage, Hu et al. 2017: clone expert layouts, then search with rewards).

Examples whose gold program is missing (``None`` in the batch's program list) are skipped, so the same data
can carry gold programs for a fraction of its examples only.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ..compose import Library, Program, ProgramPolicy
from ..errors import ConfigError
from ._likelihood import LogLikelihood
from ._objective import Batch
from ._program_objective import ProgramObjective

__all__ = ["ProgramCloning"]


class ProgramCloning(ProgramObjective):
    """Maximum likelihood of gold programs under the policy (teacher forcing), and of the answers under them.

    Loss terms: ``loss_policy`` = -mean log p(gold | x) and, with ``train_modules``, ``loss_task`` = -mean
    log p(y | x, gold); logged: ``exact_match``, the share of the batch's gold programs that are the policy's
    greedy program too (computed only every ``log_every``-th step; -1 between). Means are over the examples
    that have a gold program.

    Args:
        policy: the program policy.
        library: the modules that run the programs.
        program_key: the batch entry of the gold programs: a list of B programs, ``None`` where missing.
        train_modules: also train the modules (and the context modules) on the answers through the gold
            programs; ``False``: only the policy learns.
        log_every: compute the logged ``exact_match`` every this many steps (a greedy decode of the batch).
        library_context: as for :class:`~modnets.train.ProgramObjective`.
        encoder: as for :class:`~modnets.train.ProgramObjective`.
        context_key: as for :class:`~modnets.train.ProgramObjective`.
        target: as for :class:`~modnets.train.ProgramObjective`.
        likelihood: as for :class:`~modnets.train.ProgramObjective`.

    Raises:
        ConfigError: at ``loss`` time, a batch without gold programs, or a program list of the wrong length;
            a gold program outside the policy's space raises ``TypeMismatchError`` or ``UnknownNameError``.

    Example:
        >>> from modnets.compose import ProgramPolicy, ProgramSpace
        >>> from modnets.models import nmn
        >>> from modnets.types import Probs
        >>> model = nmn(image_size=16, channels=(8,), hidden=8)
        >>> space = ProgramSpace.of(model.library, output=Probs(26), max_size=3, modules=("find", "exist"))
        >>> clone = ProgramCloning(policy=ProgramPolicy(space=space, d_context=4), library=model.library,
        ...                        library_context={"features": ("image", model.stem)})
        >>> gold = [Program.parse("exist(find[red])"), None, Program.parse("exist(find[cube])")]
        >>> batch = {"question": torch.randn(3, 4), "image": torch.rand(3, 3, 16, 16),
        ...          "answer": torch.tensor([0, 1, 0]), "program": gold}
        >>> sorted(k for k in clone.loss(batch) if k.startswith("loss"))
        ['loss', 'loss_policy', 'loss_task']
    """

    def __init__(
        self,
        *,
        policy: ProgramPolicy,
        library: Library,
        program_key: str = "program",
        train_modules: bool = True,
        log_every: int = 10,
        library_context=None,
        encoder: nn.Module | None = None,
        context_key: str = "question",
        target: str = "answer",
        likelihood: LogLikelihood | None = None,
    ) -> None:
        super().__init__(policy=policy, library=library, library_context=library_context, encoder=encoder,
                         context_key=context_key, target=target, likelihood=likelihood)
        if not isinstance(train_modules, bool):
            raise ConfigError(f"train_modules must be True or False, got {train_modules!r}")
        if not isinstance(log_every, int) or isinstance(log_every, bool) or log_every < 1:
            raise ConfigError(f"log_every must be an int >= 1, got {log_every!r}")
        self.program_key, self.train_modules, self.log_every = program_key, train_modules, log_every

    @property
    def batch_keys(self) -> dict[str, str]:
        keys = super().batch_keys
        keys[self.program_key] = "B gold programs (None where an example has none)"
        if not self.train_modules:
            keys = {k: v for k, v in keys.items() if k in (self.context_key, self.program_key)}
        return keys

    def loss(self, batch: Batch) -> dict[str, Tensor]:
        gold = batch.get(self.program_key) if hasattr(batch, "get") else None
        if gold is None or isinstance(gold, Program):
            raise ConfigError(f"ProgramCloning: batch[{self.program_key!r}] must be a list of gold programs (None "
                              "where missing)")
        context = self.policy_context(batch)
        if len(gold) != context.shape[0]:
            raise ConfigError(f"ProgramCloning: {len(gold)} gold programs for a batch of {context.shape[0]}")
        rows = [i for i, p in enumerate(gold) if p is not None]
        if not rows:
            raise ConfigError("ProgramCloning: no example of the batch has a gold program")
        programs = [gold[i] for i in rows]
        index = torch.tensor(rows, dtype=torch.long, device=context.device)
        terms: dict[str, Tensor] = {}
        scored = self.policy(context.index_select(0, index), programs=programs)
        terms["loss_policy"] = -scored.log_prob.mean()
        if self.train_modules:
            ll = self.log_likelihood(programs, index, self.library_context(batch), self.answers(batch))
            terms["loss_task"] = -ll.mean()
        if int(self.steps) % self.log_every == 0:
            with torch.no_grad():
                greedy = self.policy(context.index_select(0, index), mode="greedy").programs
            terms["exact_match"] = context.new_tensor(sum(a == g for a, g in zip(greedy, programs, strict=True))
                                                      / len(programs))
        else:
            terms["exact_match"] = context.new_tensor(-1.0)
        return self._finish(terms)
