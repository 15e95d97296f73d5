"""The NMN experiment's data: generated CLEVR-like families, or questions read from real CLEVR files."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from ...data import ClevrDataset, ClevrLikeConfig, load_clevr, make_clevr_like
from ...errors import ConfigError

if TYPE_CHECKING:
    from . import Config


def clevr_pools(config: Config) -> tuple[ClevrDataset, ClevrDataset] | None:
    """The questions read from the real CLEVR train and val splits (``config.data``); ``None``: generated data."""
    if config.data is None:
        return None
    root = config.data.removeprefix("clevr:")
    return tuple(load_clevr(root, split, image_size=config.image_size, limit=config.clevr_questions,
                            skip_unmapped=True) for split in ("train", "val"))


def study_data(config: Config, seed: int, programs: str, train_depths, test_depths, *, valid: bool = True,
          pools: tuple[ClevrDataset, ClevrDataset] | None = None):
    """Training, validation (``valid``) and test data of one program family for one seed; drawn from the real
    CLEVR ``pools`` when given (``programs`` is then unused)."""
    if pools is not None:
        return clevr_data(config, seed, pools, train_depths, test_depths, valid=valid)

    def make(n, depths, offset):
        return make_clevr_like(ClevrLikeConfig(n_examples=n, depths=tuple(depths), image_size=config.image_size,
                                               programs=programs, seed=seed + offset))

    train = make(config.n_train, train_depths, 0)
    held = make(config.n_valid, train_depths, 20_000) if valid else None
    test = make(config.n_test_per_depth * len(test_depths), test_depths, 10_000)
    return train, held, test


def clevr_data(config: Config, seed: int, pools: tuple[ClevrDataset, ClevrDataset], train_depths, test_depths, *,
                valid: bool):
    """Real CLEVR questions drawn at random with ``seed``: ``n_train`` (and ``n_valid``) of ``train_depths`` from
    the train split, up to ``n_test_per_depth`` of each of ``test_depths`` from the val split."""
    train_pool, val_pool = pools
    generator = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(train_pool), generator=generator)
    usable = order[torch.isin(train_pool.depths[order], torch.tensor(list(train_depths)))]
    n_valid = config.n_valid if valid else 0
    order = torch.randperm(len(val_pool), generator=generator)
    test_rows = torch.cat([order[val_pool.depths[order] == d][:config.n_test_per_depth] for d in test_depths])
    depths = f"depth {min(train_depths)}-{max(train_depths)}"
    if len(usable) < (2 if valid else 1) or len(test_rows) == 0:
        raise ConfigError(
            f"{config.data}: {len(usable)} of the {len(train_pool)} train questions read are of {depths} (need at "
            f"least {2 if valid else 1}) and {len(test_rows)} of the {len(val_pool)} val questions of depth "
            f"{min(test_depths)}-{max(test_depths)} (need at least 1); raise clevr_questions"
        )
    n_train = min(config.n_train, len(usable) - min(n_valid, len(usable) // 2))
    train = train_pool.subset(usable[:n_train])
    held = train_pool.subset(usable[n_train:n_train + n_valid]) if valid else None
    return train, held, val_pool.subset(test_rows)


def data_text(config: Config, metrics: dict) -> str:
    data_seconds = metrics["per_seed"][0]["data_seconds"]
    if config.data is not None:
        read = metrics["clevr"]
        return (
            f"Real CLEVR from `{config.data.removeprefix('clevr:')}` (`modnets.data.load_clevr`, programs mapped by "
            "`clevr_program`): the first "
            + " and ".join(f"{v['questions']:,} {k} questions that the modules can express ({v['skipped']:,} "
                           f"skipped before them; {v['images']:,} images)" for k, v in read.items())
            + f", images squashed to {config.image_size}x{config.image_size}. For seed s, drawn at random with "
            f"seed s: Table 4.2 and the SGM study train on {config.n_train:,} train questions of depth "
            f"2-{config.max_train_depth}, validate on {config.n_valid:,} others and test on up to "
            f"{config.n_test_per_depth} val questions per depth (data seed s); the depth study trains on train "
            f"questions of depth 2-{config.max_train_depth} (s + 1000) and, for the reference, of every depth "
            f"(s + 31000), each validated on {config.n_valid:,} other train questions of its depths, and tests on "
            f"up to {config.n_test_per_depth} val questions per depth 2-"
            f"{config.max_test_depth}. Drawing the questions took {data_seconds:.1f} s per seed. Checkpoints: "
            "`checkpoints/`; TensorBoard logs: `tensorboard/`."
        )
    depth_n = config.depth_training[0]
    return (
        f"Procedurally generated CLEVR-like data (`modnets.data.make_clevr_like`): {config.image_size}x"
        f"{config.image_size} renders of 2-10 objects, programs with their question text, answers balanced per "
        f"question type. Table 4.2 and the SGM study: the `sets` family (find / relate / and / or / exist / count / "
        f"describe); for seed s: train {config.n_train:,} (data seed s), validation {config.n_valid:,} "
        f"(s + 20000), test {config.n_test_per_depth} per depth (s + 10000). The depth study: the "
        f"`{config.depth_programs}` family, train {depth_n:,} of depth 2-{config.max_train_depth} (s + 1000), "
        f"validation {config.n_valid:,} of the same depths (s + 21000), test {config.n_test_per_depth} per depth "
        f"2-{config.max_test_depth} (s + 11000), and for the reference {depth_n:,} of every depth (s + 31000) and "
        f"{config.n_valid:,} to validate it (s + 51000). Data generation took "
        f"{data_seconds:.1f} s per seed (Table 4.2 data). Checkpoints: `checkpoints/`; TensorBoard logs: "
        "`tensorboard/`."
    )
