"""The CrowdVLM-R1 experiment in miniature (``crowdvlm demo``): SFT vs GRPO 0/1 vs GRPO FGRPR on a CPU.

The demo is one experiment file, ``crowdvlm/recipes/experiments/demo.yaml`` (``--quick``:
``demo_quick.yaml``), run by :mod:`crowdvlm.experiments`; its arms' training settings are the recipes
``crowdvlm/recipes/demo/sft.yaml`` and ``grpo.yaml``. All of them ship inside the package, so the demo runs from an
installed wheel. What stays here is the command and the base checkpoint it starts from, shipped in ``base/`` and
rebuilt by :mod:`~crowdvlm.demo.base_model` from ``crowdvlm/recipes/demo/base_sft.yaml``.
"""

from crowdvlm.experiments.yamlfile import SHIPPED_EXPERIMENTS

#: The demo's experiment files, inside the package.
DEMO_FILE = SHIPPED_EXPERIMENTS / "demo.yaml"
QUICK_FILE = SHIPPED_EXPERIMENTS / "demo_quick.yaml"
