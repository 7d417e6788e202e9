"""Counting by pointing: the frame the model points in, point matching, SFT targets, overlays, metrics.

The answer format, its instruction and its parser live with the others (:mod:`crowdvlm.prompts`,
:func:`crowdvlm.parsing.parse_points`); the point rewards are registered in :mod:`crowdvlm.rewards`.
See ``docs/pointing.md``.
"""
