"""The TRL extension that shares work across each GRPO group (targets trl 1.16.0, transformers 5.24).

- ``trainer``: ``GroupSharedGRPOTrainer``, a drop-in ``trl.GRPOTrainer`` overriding three methods.
- ``processing``: the image processor once per distinct prompt (``DedupProcessor``).
- ``prefill``: generation prefills each distinct prompt once, the cache indexed out to the rows.
- ``vision``: the vision tower once per distinct image in the log-prob passes (``mm_encoder_outputs``).
- ``packing``: the language model over each distinct prompt once, its completions packed after it.
- ``families``: what each model family can share (the one place a new family is added).
- ``fallbacks``: ``FallbackReason``, why a part ran TRL's code instead.
- ``group_layout``: whether a batch layout keeps whole groups in one forward.
"""
