"""Experiments as YAML over the public commands (``crowdvlm experiment run FILE``).

The flow, one module per step: :mod:`~crowdvlm.experiments.spec` (the file, validated before anything runs)
→ :mod:`~crowdvlm.experiments.pipeline` (resumable stages, run by :mod:`~crowdvlm.experiments.stages`)
calling :mod:`~crowdvlm.experiments.jobs` (data, ``crowdvlm train`` recipes, ``crowdvlm eval``) →
:mod:`~crowdvlm.experiments.summary` (aligned :mod:`~crowdvlm.experiments.results`, a verdict per
comparison from :mod:`~crowdvlm.experiments.verdicts`) → :mod:`~crowdvlm.experiments.report` and
:mod:`~crowdvlm.experiments.plots`. ``crowdvlm demo`` is one such file (``crowdvlm/recipes/experiments/demo.yaml``).
"""
