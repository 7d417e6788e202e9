"""Data: the manifest format, one reader per native dataset format, and the synthetic generator.

- :mod:`~crowdvlm.data.manifest`: the JSONL record, read/write, and ``manifest_to_dataset`` for TRL.
- :mod:`~crowdvlm.data.convert`: ``convert(format, root, out)``, dispatching to one module per format
  (``shanghaitech``, ``ucf_qnrf``, ``ucf_cc_50``, ``jhu``, ``nwpu``, ``fsc147``, ``crowdvlm_records``,
  ``folder``), which share :mod:`~crowdvlm.data.common` and report bad input through
  :mod:`~crowdvlm.data.errors`.
- :mod:`~crowdvlm.data.synth` (+ ``synth_styles``): procedural images with exact counts and points.
- :mod:`~crowdvlm.data.stats`, :mod:`~crowdvlm.data.show`, :mod:`~crowdvlm.data.cli`: looking at the data.
"""
