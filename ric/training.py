"""Moved: the training pipeline lives in ric.data (offline data), ric.sft (SFT and adapters),
ric.mors (online stage) and ric.runlog (cost, command line, lineage).

Only the two names ric/diffusion.py and bench/throughput.py still import from here are kept; import them from their
own modules in new code.
"""

from ric.data import read_prompts
from ric.runlog import command_line

__all__ = ["command_line", "read_prompts"]
