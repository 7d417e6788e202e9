"""One entry point for every native format: ``convert(format, root, split, out)`` writes a manifest.

``FORMATS`` maps a format name to its reader (``module:function``, imported when used). Every reader has the
signature ``load_x(root, split=None, *, skips, progress, **options) -> list[dict]``.
"""

from __future__ import annotations

import importlib
import logging
from dataclasses import dataclass
from pathlib import Path

from crowdvlm.data.errors import SkipLog
from crowdvlm.data.manifest import check_unique_ids, write_manifest

logger = logging.getLogger(__name__)

FORMATS: dict[str, str] = {
    "shanghaitech": "crowdvlm.data.shanghaitech:load_shanghaitech",
    "ucf-qnrf": "crowdvlm.data.ucf_qnrf:load_ucf_qnrf",
    "ucf-cc-50": "crowdvlm.data.ucf_cc_50:load_ucf_cc_50",
    "jhu-crowd": "crowdvlm.data.jhu:load_jhu",
    "nwpu": "crowdvlm.data.nwpu:load_nwpu",
    "fsc147": "crowdvlm.data.fsc147:load_fsc147",
    "crowdvlm": "crowdvlm.data.crowdvlm_records:load_crowdvlm",
    "folder": "crowdvlm.data.folder:load_folder",
    "countbenchqa": "crowdvlm.data.countbenchqa:load_countbenchqa",
    "pixmo-count": "crowdvlm.data.pixmo_count:load_pixmo_count",
    "tallyqa": "crowdvlm.data.tallyqa:load_tallyqa",
    "parquet": "crowdvlm.data.tables:load_table",
}
#: Formats whose images are inside the table: written to ``image_dir``, by default ``<out stem>_images/``.
EMBEDDED_IMAGES = ("countbenchqa", "parquet")


def reader(fmt: str):
    """The reader function of a format."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; formats: {', '.join(FORMATS)}")
    module, func = FORMATS[fmt].split(":")
    return getattr(importlib.import_module(module), func)


@dataclass
class ConvertResult:
    """What :func:`convert` wrote."""

    manifest: Path
    n_records: int
    skips: SkipLog
    report: Path | None  # the list of skipped records, when any
    dropped_outside: int  # UCF-QNRF points dropped for lying outside their image


def convert(
    fmt: str,
    root: str | Path,
    out: str | Path,
    *,
    split: str | None = None,
    skip_bad: bool = False,
    progress: bool = True,
    **options,
) -> ConvertResult:
    """Read a dataset in its native format and write it as a manifest.

    Args:
        fmt: a key of :data:`FORMATS`.
        root: the dataset folder (or, for ``crowdvlm``, the record file).
        out: the manifest to write.
        split: one split only (default: all of them).
        skip_bad: leave bad records out (listed in ``<out stem>.skipped.tsv``) instead of raising.
        **options: reader-specific (``keep_outside``, ``parts``, ``image_root``, ``csv_path``, ``image_dir``,
            ``image_column``, ...).

    Raises:
        DataError: the first bad record, unless ``skip_bad``.
        ValueError: nothing left to write.
    """
    skips = SkipLog(skip_bad=skip_bad)
    if fmt in EMBEDDED_IMAGES and not options.get("image_dir"):
        options["image_dir"] = Path(out).parent / f"{Path(out).stem}_images"
    records = reader(fmt)(root, split, skips=skips, progress=progress, **options)
    records = check_unique_ids(
        ((f"record {i} ({r['image']})", r) for i, r in enumerate(records)), root, skips
    )
    report = skips.write_report(out)
    if not records:
        raise ValueError(
            f"{fmt}: no records found under {root}"
            + (f" for split {split!r}" if split else "")
            + (f" ({skips.summary()}, see {report})" if report else "")
        )
    manifest = write_manifest(records, out)
    dropped = sum(r.get("meta", {}).get("dropped_outside", 0) for r in records)
    logger.info("%s: wrote %d records to %s (%s)", fmt, len(records), manifest, skips.summary())
    return ConvertResult(manifest, len(records), skips, report, dropped)
