"""The CrowdVLM-R1 experiment in miniature (``crowdvlm demo``): SFT vs GRPO 0/1 vs GRPO FGRPR on a CPU.

The flow, one module per step: :mod:`~crowdvlm.demo.plan` (every size and seed, fixed up front) →
:mod:`~crowdvlm.demo.pipeline` (resumable stages, run by :mod:`~crowdvlm.demo.stages`) calling
:mod:`~crowdvlm.demo.jobs` (data, training, evaluation through crowdvlm's public APIs) →
:mod:`~crowdvlm.demo.summary` (aligned results, :mod:`~crowdvlm.demo.claims` tested with
:mod:`~crowdvlm.demo.stats`) → :mod:`~crowdvlm.demo.report` and :mod:`~crowdvlm.demo.plots`.
The base checkpoint it starts from is shipped in ``base/`` and rebuilt by :mod:`~crowdvlm.demo.base_model`.
"""
