"""The CrowdVLM-R1 experiment in miniature (``crowdvlm demo``): SFT vs GRPO 0/1 vs GRPO FGRPR on a CPU.

The demo is one experiment file, ``recipes/experiments/demo.yaml`` (``--quick``: ``demo_quick.yaml``), run by
:mod:`crowdvlm.experiments`; its arms' training settings are the recipes ``recipes/demo/sft.yaml`` and
``recipes/demo/grpo.yaml``. What stays here is the command and the base checkpoint it starts from, shipped in
``base/`` and rebuilt by :mod:`~crowdvlm.demo.base_model` from ``recipes/demo/base_sft.yaml``.
"""

from pathlib import Path

_EXPERIMENTS = Path(__file__).resolve().parents[3] / "recipes" / "experiments"
#: The demo's experiment files (in a source checkout: recipes live beside ``src/``).
DEMO_FILE = _EXPERIMENTS / "demo.yaml"
QUICK_FILE = _EXPERIMENTS / "demo_quick.yaml"
