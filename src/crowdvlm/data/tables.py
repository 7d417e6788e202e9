"""Any parquet or arrow dataset with an image column and a count column (``--format parquet``)::

    <root>/data/<split>-00000-of-00001.parquet      a Hugging Face dataset repository, as downloaded
    <root>/<split>/data-00000-of-00001.arrow         datasets' save_to_disk
    <root>/*.parquet | *.arrow, or <root> one file   anything else

The image column holds, per row, the image itself (a Hugging Face ``Image`` cell ``{"bytes", "path"}``, or
raw bytes) or a path relative to the table's folder. Embedded images are written once to ``image_dir``
(default: ``<manifest stem>_images/`` beside the manifest) as ``<dataset>-<split>-<row>.<ext>``, the
extension from the image's own format, and skipped when already there. The count column is read by the one
rule of :mod:`crowdvlm.counts`. The benchmark readers (:mod:`~crowdvlm.data.countbenchqa`,
:mod:`~crowdvlm.data.pixmo_count`) are this reader with the publisher's column names.
"""

from __future__ import annotations

import io
import logging
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from crowdvlm.data.common import check_image, count_field, make_record
from crowdvlm.data.errors import DataError, SkipLog, collect
from crowdvlm.prompts import question_for

__all__ = [
    "image_extension",
    "load_table",
    "read_rows",
    "split_tables",
    "table_files",
    "write_embedded_image",
]

logger = logging.getLogger(__name__)

TABLE_SUFFIXES = (".parquet", ".arrow")
_SHARD = re.compile(r"^(?P<split>[A-Za-z_]+)-\d+-of-\d+$")
_FORMATS = {"JPEG": ".jpg", "PNG": ".png", "WEBP": ".webp", "GIF": ".gif", "BMP": ".bmp", "TIFF": ".tif"}


def table_files(root: Path, split: str | None) -> dict[str, list[Path]]:
    """``{split: [files]}`` of a dataset folder (or one file: split ``split or "all"``), sorted by name.

    A Hugging Face repository names its files ``<split>-NNNNN-of-NNNNN.parquet`` (under ``data/`` or a config
    folder); save_to_disk puts each split in its own folder. Raises ``FileNotFoundError`` when none is found.
    """
    if root.is_file():
        if root.suffix not in TABLE_SUFFIXES:
            raise ValueError(f"{root}: expected a .parquet or .arrow file")
        return {split or "all": [root]}
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: no such file or folder")
    by_split: dict[str, list[Path]] = {}
    for path in sorted(p for p in root.rglob("*") if p.suffix in TABLE_SUFFIXES and p.is_file()):
        by_split.setdefault(_split_of(path, root), []).append(path)
    if not by_split:
        raise FileNotFoundError(f"{root}: no .parquet or .arrow file")
    if split is None:
        return by_split
    if split not in by_split:
        raise ValueError(f"{root}: no split {split!r}; found {sorted(by_split)}")
    return {split: by_split[split]}


def split_tables(root: Path, split: str | None, dataset: str) -> Iterator[tuple[str, Path, str]]:
    """``(split, table, id prefix)`` of each file of :func:`table_files`: a row's record id is the prefix and
    the row's number, the prefix ``<dataset>/<split>/`` (``<dataset>/<split>/<file stem>-`` where the split is
    stored in several files)."""
    for sp, files in table_files(root, split).items():
        for table in files:
            yield sp, table, f"{dataset}/{sp}/{table.stem}-" if len(files) > 1 else f"{dataset}/{sp}/"


def image_extension(pil_format: str | None) -> str:
    """The file extension of a PIL image format (``.img`` for one PIL cannot name)."""
    return _FORMATS.get(pil_format or "", ".img")


def _split_of(path: Path, root: Path) -> str:
    """``test-00000-of-00001.parquet`` -> test; save_to_disk's ``test/data-00000-of-00001.arrow`` -> test."""
    match = _SHARD.match(path.stem)
    if match and match["split"] != "data":
        return match["split"]
    if match and path.parent != root:
        return path.parent.name
    return path.stem


def _read_table(path: Path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        if path.suffix == ".parquet":
            return pq.read_table(path)
        with pa.memory_map(str(path)) as source:
            try:
                return pa.ipc.open_stream(source).read_all()  # datasets writes arrow streams
            except pa.ArrowInvalid:
                source.seek(0)
                return pa.ipc.open_file(source).read_all()
    except (pa.ArrowException, OSError) as err:
        raise DataError(
            path, f"not a readable {path.suffix[1:]} table ({err})", kind="bad-annotation"
        ) from None


def read_rows(
    path: Path, columns: dict[str, str], optional: tuple[str, ...] = ()
) -> Iterator[dict[str, Any]]:
    """The rows of one table as ``{our name: value}``; ``columns`` maps our names to the table's.

    Raises:
        DataError: ``missing-key`` when a required column is absent, naming the columns the table has.
    """
    table = _read_table(path)
    missing = [col for name, col in columns.items() if col not in table.column_names and name not in optional]
    if missing:
        raise DataError(
            path, f"expected the column(s) {missing}, found {table.column_names}", kind="missing-key"
        )
    present = {name: col for name, col in columns.items() if col in table.column_names}
    data = {name: table.column(col).to_pylist() for name, col in present.items()}
    for i in range(table.num_rows):
        yield {"row": i, **{name: values[i] for name, values in data.items()}}


def write_embedded_image(cell: Any, out_stem: Path, file: Path, record: str) -> Path:
    """Write an embedded image (``{"bytes", "path"}`` or bytes) to ``out_stem`` + its format's extension.

    An image already written (same stem, any extension) is kept: a second convert is quick.
    """
    from PIL import Image, UnidentifiedImageError

    data = cell.get("bytes") if isinstance(cell, dict) else cell
    if not isinstance(data, bytes | bytearray) or not data:
        raise DataError(
            file,
            f"expected embedded image bytes, got {type(data).__name__}",
            record=record,
            kind="missing-image",
        )
    done = sorted(out_stem.parent.glob(out_stem.name + ".*"))
    if done:
        return done[0]
    try:
        with Image.open(io.BytesIO(data)) as img:
            suffix = image_extension(img.format)
    except UnidentifiedImageError:
        raise DataError(
            file,
            "the embedded image is not readable (not a format PIL knows)",
            record=record,
            kind="bad-image",
        ) from None
    except OSError as err:
        raise DataError(
            file, f"the embedded image is not readable ({err})", record=record, kind="bad-image"
        ) from None
    out = out_stem.with_suffix(suffix)
    out.parent.mkdir(parents=True, exist_ok=True)
    part = out.with_name(out.name + ".part")
    part.write_bytes(data)
    part.replace(out)
    return out


def image_of(cell: Any, table: Path, image_dir: Path, stem: str, record: str) -> Path:
    """The image file of one row: an embedded image written out, or a path relative to the table's folder."""
    path = cell.get("path") if isinstance(cell, dict) and not cell.get("bytes") else cell
    if isinstance(path, str) and path:
        return (table.parent / path).resolve()
    return write_embedded_image(cell, image_dir / stem, table, record)


def load_table(
    root: str | Path,
    split: str | None = None,
    *,
    image_column: str = "image",
    count_column: str = "count",
    question_column: str | None = None,
    objects: str = "objects",
    dataset: str | None = None,
    image_dir: str | Path | None = None,
    meta_columns: tuple[str, ...] = (),
    problem: Callable[[dict], str] | None = None,
    skips: SkipLog | None = None,
    progress: bool = True,
) -> list[dict]:
    """Records of a parquet/arrow dataset: one per row (see the module docstring for the layouts).

    Args:
        image_column, count_column: the table's columns holding the image and the count.
        question_column: a column holding each row's question (default: "How many <objects> ...").
        dataset: the records' dataset name (default: the folder's or file's name).
        image_dir: where embedded images are written (``crowdvlm data convert`` passes ``<out stem>_images``).
        meta_columns: columns copied into ``meta``.
        problem: builds the question from a row (the benchmark readers), instead of ``question_column``.
    """
    root, skips = Path(root), skips or SkipLog()
    dataset = dataset or (root.stem if root.is_file() else root.name)
    image_dir = Path(image_dir) if image_dir else root.parent / f"{dataset}_images"
    columns = {"image": image_column, "count": count_column, **{c: c for c in meta_columns}}
    if question_column:
        columns["question"] = question_column
    records: list[dict] = []
    for sp, table, prefix in split_tables(root, split, dataset):

        def build(row: dict, sp=sp, table=table, prefix=prefix) -> dict:
            record = f"row {row['row']}"
            rid = f"{prefix}{row['row']}"
            count = count_field(row["count"], table, record, name=count_column)
            stem = rid.replace("/", "-")
            image = image_of(row["image"], table, image_dir, stem, record)
            size = check_image(image, record=record)
            question = problem(row) if problem else row.get("question") or question_for(objects)
            meta = {c: row[c] for c in meta_columns if row.get(c) is not None}
            return make_record(
                image,
                dataset=dataset,
                split=sp,
                problem=question,
                points=None,
                size=size,
                solution=count,
                record_id=rid,
                meta=meta,
            )

        rows = read_rows(table, columns, optional=tuple(meta_columns))
        records += collect(rows, build, skips, desc=f"{dataset} {sp}", progress=progress)
    return records
