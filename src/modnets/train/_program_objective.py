"""What the objectives that learn programs share: the policy's context, the library's context, batched
execution of many programs per example and the answer likelihood log p(y | x, a).

A program objective owns a :class:`~modnets.compose.ProgramPolicy` (which writes the programs), the
:class:`~modnets.compose.Library` that runs them (its modules are the executor), the encoder that turns a
batch entry into the policy's context vectors, and the modules that turn batch entries into the library's
context (an image stem that gives ``features``). Batches are mappings with

- ``context_key`` (default ``"question"``): what the policy reads, turned into (B, d_context) vectors by
  ``encoder`` (e.g. :class:`~modnets.models.QuestionEncoder` on question strings; an ``nn.Embedding`` on task
  ids; ``None``: the entry is already the (B, d_context) tensor);
- ``target`` (default ``"answer"``): (B,) long answers;
- the batch keys of ``library_context`` (e.g. ``"image"``), each (B, ...).

Execution. The programs of a step (S samples per example, buffer entries, gold programs) run through the
library in one batched call over the batch's context (``Library(..., context_rows=)``: one context row per
example, however many programs read it); a program that occurs twice for the same example runs once
(sampled policies repeat themselves as they sharpen) and its result is shared, gradient included.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..compose import Library, Program, ProgramPolicy, ProgramSample
from ..errors import ConfigError, ShapeError
from ..types import Logits, Probs
from ._likelihood import LogLikelihood, check_labels
from ._objective import Batch

__all__ = ["ProgramObjective"]


class ProgramObjective(nn.Module):
    """Base of the objectives that learn programs (see the module docstring).

    Args:
        policy: the program policy.
        library: the modules that run the programs.
        library_context: the library's context: name -> (batch key, module that computes it from that entry,
            or ``None`` to pass the entry unchanged), e.g. ``{"features": ("image", stem)}``.
        encoder: turns ``batch[context_key]`` into (B, d_context) policy contexts; ``None``: the entry is one.
        context_key: the batch entry the policy reads.
        target: the batch entry of the (B,) long answers.
        likelihood: ``(root outputs (N, ...), answers (N,)) -> (N,)`` log p(y | x, a); by default the
            categorical likelihood of the programs' root type: ``log`` of a ``Probs`` root, ``log_softmax`` of a
            ``Logits`` root.

    Raises:
        ConfigError: a part of the wrong kind, or no ``likelihood`` for a root type other than Probs / Logits.
    """

    def __init__(
        self,
        *,
        policy: ProgramPolicy,
        library: Library,
        library_context: Mapping[str, tuple[str, nn.Module | None]] | None = None,
        encoder: nn.Module | None = None,
        context_key: str = "question",
        target: str = "answer",
        likelihood: LogLikelihood | None = None,
    ) -> None:
        super().__init__()
        if not isinstance(policy, ProgramPolicy):
            raise ConfigError(f"policy must be a ProgramPolicy, got {type(policy).__name__}")
        if not isinstance(library, Library):
            raise ConfigError(f"library must be a Library, got {type(library).__name__}")
        if encoder is not None and not isinstance(encoder, nn.Module):
            raise ConfigError(f"encoder must be None or an nn.Module, got {type(encoder).__name__}")
        self.policy, self.library, self.encoder = policy, library, encoder
        self.context_key, self.target = context_key, target
        self._context_keys: dict[str, str] = {}
        modules: dict[str, nn.Module] = {}
        for name, spec in (library_context or {}).items():
            if not (isinstance(spec, tuple) and len(spec) == 2 and isinstance(spec[0], str)
                    and (spec[1] is None or isinstance(spec[1], nn.Module))):
                raise ConfigError(f"library_context[{name!r}] must be (batch key, nn.Module or None), got {spec!r}")
            self._context_keys[name] = spec[0]
            if spec[1] is not None:
                modules[name] = spec[1]
        self.context_modules = nn.ModuleDict(modules)
        root = policy.space.output
        if likelihood is None and not isinstance(root, Probs | Logits):
            raise ConfigError(f"the programs produce {root}: give a likelihood (outputs, answers) -> (N,) log p(y|x,a) "
                              "(the default handles Probs and Logits roots)")
        self._log_probs_of_root = isinstance(root, Probs)
        self.likelihood = likelihood
        self.register_buffer("steps", torch.zeros((), dtype=torch.long))

    @property
    def batch_keys(self) -> dict[str, str]:
        """The batch entries :meth:`loss` reads (see the module docstring)."""
        keys = {self.context_key: "what the program policy reads (e.g. question strings)",
                self.target: "(B,) long answers"}
        for name, key in self._context_keys.items():
            keys[key] = f"(B, ...) the entry the library's context {name!r} is computed from"
        return keys

    def forward(self, batch: Batch) -> dict[str, Tensor]:
        return self.loss(batch)

    # ------------------------------------------------------------------ the parts of a step
    def policy_context(self, batch: Batch) -> Tensor:
        """(B, d_context) the policy's context of a batch."""
        if not isinstance(batch, Mapping) or self.context_key not in batch:
            raise ConfigError(f"{type(self).__name__}: the batch has no {self.context_key!r} (what the policy reads)")
        entry = batch[self.context_key]
        return entry if self.encoder is None else self.encoder(entry)

    def library_context(self, batch: Batch) -> dict[str, Tensor]:
        """The library's context of a batch: name -> (B, ...)."""
        out = {}
        for name, key in self._context_keys.items():
            if key not in batch:
                raise ConfigError(f"{type(self).__name__}: the batch has no {key!r} (for the library's context "
                                  f"{name!r})")
            module = self.context_modules[name] if name in self.context_modules else None
            out[name] = batch[key] if module is None else module(batch[key])
        return out

    def log_likelihood(self, programs: Sequence[Program], examples: Tensor, context: Mapping[str, Tensor],
                       answers: Tensor) -> Tensor:
        """(N,) log p(y | x, a) of N programs, each run on its example, in one batched library call.

        Args:
            programs: N programs.
            examples: (N,) long, the example (row of ``context`` and ``answers``) each program runs on.
            context: the library's context, name -> (B, ...).
            answers: (B,) long answers.
        """
        unique: dict[tuple[int, Program], int] = {}
        where = [unique.setdefault((e, p), len(unique)) for e, p in zip(examples.tolist(), programs, strict=True)]
        rows = torch.tensor([e for e, _ in unique], dtype=torch.long)
        # the context stays one row per example: modules that read it whole do their shared work once per example
        out = self.library([p for _, p in unique], context_rows=rows, **context)
        y = answers.index_select(0, rows.to(answers.device))
        if self.likelihood is not None:
            ll = self.likelihood(out, y)
        else:
            log_p = torch.log(out.clamp_min(1e-8)) if self._log_probs_of_root else F.log_softmax(out, dim=-1)
            ll = log_p.gather(1, y[:, None])[:, 0]
        return ll.index_select(0, torch.tensor(where, dtype=torch.long, device=ll.device))

    def answers(self, batch: Batch) -> Tensor:
        """(B,) the batch's answers, checked."""
        if self.target not in batch:
            raise ConfigError(f"{type(self).__name__}: the batch has no {self.target!r} ((B,) long answers)")
        y = batch[self.target]
        if not isinstance(y, Tensor) or y.dim() != 1:
            shape = tuple(y.shape) if isinstance(y, Tensor) else type(y).__name__
            raise ShapeError(f"batch[{self.target!r}] must be a (B,) long tensor, got {shape}")
        if isinstance(self.policy.space.output, Probs | Logits) and self.policy.space.output.size is not None:
            check_labels(y, self.policy.space.output.size, name=self.target)
        return y

    # ------------------------------------------------------------------ evaluation
    @torch.no_grad()
    def programs(self, batch: Batch, *, samples: int = 1, mode: str | None = None) -> ProgramSample:
        """The policy's programs for a batch (``mode=None``: greedy in eval mode, sampled in training mode)."""
        return self.policy(self.policy_context(batch), samples=samples, mode=mode)

    @torch.no_grad()
    def predict(self, batch: Batch) -> Tensor:
        """(B,) the answers of the policy's greedy programs."""
        programs = self.policy(self.policy_context(batch), mode="greedy").programs
        return self.library(programs, **self.library_context(batch)).argmax(-1)

    def _finish(self, terms: dict[str, Tensor]) -> dict[str, Tensor]:
        terms["loss"] = torch.stack([v for k, v in terms.items() if k.startswith("loss_")]).sum()
        self.steps += 1
        return terms
