"""Writers of the counting benchmarks' published files (the Hugging Face parquet layouts), for the tests."""

from __future__ import annotations

import io

import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

HF_IMAGE = pa.struct([("bytes", pa.binary()), ("path", pa.string())])  # datasets' Image() in parquet


def image_bytes(color=(200, 30, 30), size=(40, 30), fmt="PNG") -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, format=fmt)
    return buffer.getvalue()


def write_countbenchqa(root, rows) -> None:
    """``vikhyatk/CountBenchQA``: data/test-00000-of-00001.parquet with image, text, question, number (int32)."""
    (root / "data").mkdir(parents=True)
    table = pa.table(
        {
            "image": pa.array([{"bytes": b, "path": None} for b, *_ in rows], HF_IMAGE),
            "text": [t for _, t, _, _ in rows],
            "question": [q for _, _, q, _ in rows],
            "number": pa.array([n for *_, n in rows], pa.int32()),
        }
    )
    pq.write_table(table, root / "data" / "test-00000-of-00001.parquet")


def write_pixmo(root, split, rows, *, points=True) -> None:
    """``allenai/pixmo-count``: data/<split>-00000-of-00001.parquet; points a Sequence of {x, y} (train only)."""
    (root / "data").mkdir(parents=True, exist_ok=True)
    columns = {
        "image_url": [u for u, *_ in rows],
        "image_sha256": [s for _, s, *_ in rows],
        "count": pa.array([c for _, _, c, *_ in rows], pa.int32()),
    }
    if points:  # datasets stores a Sequence of a struct as a struct of lists
        columns["points"] = pa.array(
            [{"x": [p[0] for p in pts], "y": [p[1] for p in pts]} for *_, pts, _ in rows],
            pa.struct([("x", pa.list_(pa.float32())), ("y", pa.list_(pa.float32()))]),
        )
    columns["label"] = [label for *_, label in rows]
    pq.write_table(pa.table(columns), root / "data" / f"{split}-00000-of-00001.parquet")
