"""Reproduced experiments: one thin file each, a config dataclass and ``run(config, out_dir) -> Report``.

Each experiment module (``nmn``, ``imn``, ``reuse``, ``routing``, ``sorting``) wires library parts
together; :data:`EXPERIMENTS` lists them by name, and the command line's ``modnets run NAME`` finds them
there. A :class:`Report` holds what a run measured.

Public names:

- ``EXPERIMENTS``: experiment name -> (module path, one-line description).
- ``get_experiment``: the experiment module (with ``Config`` and ``run``) of a name.
- ``Report``: what an experiment measured.
- ``markdown_table``: a GitHub-flavoured markdown table.
- ``read_run_config``: the config fields in a JSON or YAML config file, or in the ``metrics.json`` of a run.
"""

from ._registry import EXPERIMENTS as EXPERIMENTS
from ._registry import get_experiment as get_experiment
from ._report import Report as Report
from ._report import markdown_table as markdown_table
from ._report import read_run_config as read_run_config
