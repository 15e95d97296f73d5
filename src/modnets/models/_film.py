"""FiLM (Perez et al. 2018): the monolithic VQA baseline of thesis Fig. 4.13.

A CNN stem extracts image features; a GRU reads the question; each residual block's normalised
features are scaled and shifted per channel (``gamma * x + beta``, feature-wise linear modulation) by
values computed from the question; a classifier pools the last block's features into answer logits. It
reads the question text and never a program, so layout depth reaches it only through the question.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..data import ANSWERS
from ..errors import ConfigError, ShapeError
from ..modules import MLP, CNNStem, coordinate_channels
from ._question import QuestionEncoder, QuestionVocabulary

__all__ = ["FiLM", "FiLMBlock", "film"]


class FiLMBlock(nn.Module):
    """A FiLM-conditioned residual block.

    ``x + relu(film(bn(conv3x3(relu(conv1x1([x, coords]))))))``: batch normalisation without its own
    affine parameters, since ``gamma`` and ``beta`` take their place. ``gamma`` is given as an offset from
    1, so that a zero question encoding leaves the block an ordinary residual block.

    Args:
        width: channels in and out.

    Shapes:
        ``x: (batch, width, H, W)``, ``gamma, beta: (batch, width)`` -> ``(batch, width, H, W)``.
    """

    def __init__(self, width: int) -> None:
        super().__init__()
        self.inp = nn.Conv2d(width + 2, width, 1)
        self.conv = nn.Conv2d(width, width, 3, padding=1, bias=False)
        self.norm = nn.BatchNorm2d(width, affine=False)
        self.width = width

    def forward(self, x: Tensor, gamma: Tensor, beta: Tensor) -> Tensor:
        b, _, h, w = x.shape
        y = F.relu(self.inp(torch.cat([x, coordinate_channels(b, h, w, like=x)], dim=1)))
        y = self.norm(self.conv(y))
        y = (1 + gamma)[:, :, None, None] * y + beta[:, :, None, None]
        return x + F.relu(y)


class FiLM(nn.Module):
    """Image and question to answer logits through FiLM-conditioned residual blocks.

    Args:
        stem: images ``(batch, 3, H, W)`` -> features ``(batch, C, h, w)`` (with coordinate channels).
        encoder: questions -> ``(batch, question_hidden)``.
        width: channels of the residual blocks.
        n_blocks: number of residual blocks.
        hidden: width of the classifier's hidden layer.
        n_answers: answer vocabulary size.
    """

    def __init__(
        self, *, stem: CNNStem, encoder: QuestionEncoder, width: int, n_blocks: int, hidden: int, n_answers: int
    ) -> None:
        super().__init__()
        for name, value in (("width", width), ("n_blocks", n_blocks), ("hidden", hidden), ("n_answers", n_answers)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"FiLM {name} must be an int >= 1, got {value!r}")
        self.stem = stem
        self.encoder = encoder
        self.project = nn.Sequential(nn.Conv2d(stem.out_channels, width, 1), nn.ReLU())
        self.blocks = nn.ModuleList(FiLMBlock(width) for _ in range(n_blocks))
        self.film = nn.Linear(encoder.hidden, n_blocks * 2 * width)
        nn.init.zeros_(self.film.weight)  # start as plain residual blocks; the question learns its influence
        nn.init.zeros_(self.film.bias)
        self.head = nn.Sequential(nn.Conv2d(width + 2, hidden, 1), nn.ReLU())
        self.classifier = MLP(hidden, n_answers, (hidden,))
        self.width, self.n_blocks = width, n_blocks

    def forward(self, images: Tensor, questions: Sequence[str]) -> Tensor:
        """Answer logits.

        Args:
            images: ``(batch, 3, H, W)`` in [0, 1].
            questions: one question per image.

        Returns:
            ``(batch, n_answers)`` logits.
        """
        if images.shape[0] != len(questions):
            raise ShapeError(f"FiLM got {images.shape[0]} images but {len(questions)} questions")
        x = self.project(self.stem(images))  # (B, width, h, w)
        params = self.film(self.encoder(questions)).view(-1, self.n_blocks, 2, self.width)  # (B, N, 2, width)
        for k, block in enumerate(self.blocks):
            x = block(x, params[:, k, 0], params[:, k, 1])
        b, _, h, w = x.shape
        pooled = self.head(torch.cat([x, coordinate_channels(b, h, w, like=x)], dim=1)).amax(dim=(2, 3))  # (B, hidden)
        return self.classifier(pooled)

    batch_keys = {"image": "(B, 3, H, W) images in [0, 1]", "question": "one question string per image"}

    def logits(self, batch: Mapping) -> Tensor:
        """``(batch, n_answers)`` answer logits on a collated batch (``program`` is ignored)."""
        return self(batch["image"], batch["question"])

    @torch.no_grad()
    def predict(self, batch: Mapping) -> Tensor:
        """``(batch,)`` predicted answer indices."""
        return self.logits(batch).argmax(1)


def film(
    questions: QuestionVocabulary,
    *,
    image_size: int = 48,
    channels: Sequence[int] = (32, 64),
    width: int = 32,
    n_blocks: int = 2,
    hidden: int = 64,
    question_hidden: int = 64,
    n_answers: int = len(ANSWERS),
) -> FiLM:
    """The FiLM preset, sized like :func:`~modnets.models.nmn` with a question prior: the same stem, a
    GRU question encoder of the prior's size, ``n_blocks`` FiLM residual blocks and a classifier.

    Args:
        questions: the question vocabulary (build it from the training questions).
        image_size: input resolution (divisible by ``2**len(channels)``).
        channels: stem stages.
        width: channels of the residual blocks.
        n_blocks: residual blocks.
        hidden: classifier width.
        question_hidden: GRU width (word embeddings are half as wide).
        n_answers: answer vocabulary size (``len(EASY_VQA_ANSWERS)`` for easy-vqa).

    Raises:
        ShapeError: ``image_size`` is not divisible by ``2**len(channels)``.
    """
    if image_size % (2 ** len(channels)):
        raise ShapeError(f"image_size must be divisible by {2 ** len(channels)}, got {image_size}")
    if not isinstance(questions, QuestionVocabulary):
        raise ConfigError(f"film needs a QuestionVocabulary, got {type(questions).__name__}")
    encoder = QuestionEncoder(questions, embed=max(1, question_hidden // 2), hidden=question_hidden)
    return FiLM(stem=CNNStem(3, channels, coords=True), encoder=encoder, width=width, n_blocks=n_blocks,
                hidden=hidden, n_answers=n_answers)
