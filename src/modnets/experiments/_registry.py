"""The experiments modnets knows, imported on demand."""

from __future__ import annotations

import importlib
from types import ModuleType

from ..errors import UnknownNameError

__all__ = ["EXPERIMENTS", "get_experiment"]

#: name -> (module path, one-line description)
EXPERIMENTS: dict[str, tuple[str, str]] = {
    "nmn": (
        "modnets.experiments.nmn",
        "Neural Module Networks on generated CLEVR-like scenes: typed vs untyped interfaces, error by depth",
    ),
    "routing": (
        "modnets.experiments.routing",
        "Routers and modules trained together: EM, top-K buffer, REINFORCE, soft, Gumbel; structure recovery",
    ),
    "reuse": (
        "modnets.experiments.reuse",
        "Modules stored in the hub, found by signature and reused frozen in a new question family vs scratch",
    ),
    "sorting": (
        "modnets.experiments.sorting",
        "List-sorting agent (perception-action loop): monolithic vs modular training time and generalisation",
    ),
    "layouts": (
        "modnets.experiments.layouts",
        "NMN programs written by a ProgramPolicy (from answers alone; cloned from 10 % gold, then answers) vs gold",
    ),
    "generalization": (
        "modnets.experiments.generalization",
        "Held-out combinations: compositions, CLEVR-CoGenT, CLOSURE-style, SCAN; routed, NMN, executor vs baselines",
    ),
    "imn": (
        "modnets.experiments.imn",
        "Independent Modular Networks on generated 3D-shapes-like images: Table I shape decomposition, ID classifier",
    ),
}


def get_experiment(name: str) -> ModuleType:
    """The experiment module (with ``Config`` and ``run``) of a name.

    Raises:
        UnknownNameError: unknown name; the message lists the known ones.
    """
    if name not in EXPERIMENTS:
        raise UnknownNameError(f"unknown experiment {name!r}; known experiments: {', '.join(EXPERIMENTS)}")
    return importlib.import_module(EXPERIMENTS[name][0])
