"""``python -m modnets``: the ``modnets`` command (what ``torchrun -m modnets ...`` starts)."""

from .cli import run_main

run_main()
