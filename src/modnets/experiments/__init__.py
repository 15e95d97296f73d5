"""Reproduced experiments: one thin file each, a config dataclass and ``run(config, out_dir) -> Report``."""

from ._registry import EXPERIMENTS as EXPERIMENTS
from ._registry import get_experiment as get_experiment
from ._report import Report as Report
from ._report import markdown_table as markdown_table
from ._report import read_run_config as read_run_config
