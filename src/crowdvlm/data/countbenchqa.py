"""CountBenchQA (PaliGemma's question version of CountBench: 491 LAION images, counts 2-10), as published on
the Hugging Face Hub (``vikhyatk/CountBenchQA``)::

    <root>/data/test-00000-of-00001.parquet     columns image (embedded {bytes, path}), text (the caption),
                                                question ("How many ... are there in the image?"), number

The record's question is the benchmark's own (``question``), so an evaluation asks what the benchmark asks;
the caption goes to ``meta.text``. Images are written once beside the manifest (:mod:`~crowdvlm.data.tables`).
"""

from __future__ import annotations

from pathlib import Path

from crowdvlm.data.errors import SkipLog
from crowdvlm.data.tables import load_table

__all__ = ["load_countbenchqa"]


def load_countbenchqa(
    root: str | Path,
    split: str | None = None,
    *,
    image_dir: str | Path | None = None,
    skips: SkipLog | None = None,
    progress: bool = True,
) -> list[dict]:
    """Records of CountBenchQA (dataset ``countbenchqa``, split ``test``, the only one published)."""
    return load_table(
        root,
        split,
        image_column="image",
        count_column="number",
        question_column="question",
        dataset="countbenchqa",
        image_dir=image_dir,
        meta_columns=("text",),
        skips=skips,
        progress=progress,
    )
