"""TallyQA (Acharya et al., AAAI 2019: counting questions over COCO and Visual Genome images), as released
(``tallyqa.zip``: ``train.json``, ``test.json``)::

    <root>/train.json, <root>/test.json     [{"image": "VG_100K_2/2410408.jpg" | "train2014/COCO_...jpg",
                                              "question": "How many ...?", "answer": 4, "issimple": false,
                                              "data_source": "amt" | "imported_genome" | ...,
                                              "image_id": ..., "question_id": ...}, ...]
    <image root>/VG_100K/, VG_100K_2/, train2014/, val2014/    the COCO and Visual Genome image folders

One record per question (an image asked about twice gives two records), with the question as written and
the answer as the count. TallyQA reports its test set as *simple* and *complex* questions, so the records'
dataset is ``tallyqa-simple`` or ``tallyqa-complex`` (by ``issimple``; ``tallyqa`` where it is absent) and ``crowdvlm eval`` reports each;
``data_source`` and the ids go to ``meta``. ``--image-dir`` is the folder holding the image folders
(default: ``<root>``).
"""

from __future__ import annotations

import json
from pathlib import Path

from crowdvlm.data.common import check_image, count_field, make_record, splits_to_read
from crowdvlm.data.errors import DataError, SkipLog, collect
from crowdvlm.data.text import read_text

__all__ = ["SPLITS", "load_tallyqa"]

SPLITS = ("train", "test")


def _questions(path: Path) -> list:
    if not path.is_file():
        raise FileNotFoundError(f"{path}: not found (TallyQA's {', '.join(s + '.json' for s in SPLITS)})")
    try:
        entries = json.loads(read_text(path))
    except json.JSONDecodeError as err:
        raise DataError(path, f"not valid JSON ({err})", kind="bad-annotation") from None
    if not isinstance(entries, list):
        raise DataError(
            path, f"expected a list of questions, got {type(entries).__name__}", kind="bad-annotation"
        )
    return entries


def load_tallyqa(
    root: str | Path,
    split: str | None = None,
    *,
    image_dir: str | Path | None = None,
    skips: SkipLog | None = None,
    progress: bool = True,
) -> list[dict]:
    """Records of TallyQA (datasets ``tallyqa-simple`` / ``tallyqa-complex``; splits train, test)."""
    root, skips = Path(root), skips or SkipLog()
    images = Path(image_dir) if image_dir else root
    records: list[dict] = []
    for sp in splits_to_read(split, SPLITS, "tallyqa"):
        path = root / f"{sp}.json"

        def build(entry: tuple[int, object], sp=sp, path=path) -> dict:
            index, raw = entry
            record = f"entry {index}"
            if not isinstance(raw, dict):
                raise DataError(
                    path, f"expected an object, got {type(raw).__name__}", record=record, kind="malformed"
                )
            missing = [k for k in ("image", "question", "answer") if k not in raw]
            if missing:
                raise DataError(path, f"missing field(s) {missing}", record=record, kind="missing-key")
            record = f"entry {index} (question_id {raw.get('question_id', '?')})"
            count = count_field(raw["answer"], path, record, name="answer")
            image = images / str(raw["image"])
            size = check_image(image, record=record)
            kind = ("-simple" if raw["issimple"] else "-complex") if "issimple" in raw else ""
            meta = {k: raw[k] for k in ("data_source", "image_id", "question_id", "issimple") if k in raw}
            qid = raw.get("question_id", index)
            return make_record(
                image,
                dataset=f"tallyqa{kind}",
                split=sp,
                problem=str(raw["question"]).strip(),
                points=None,
                size=size,
                solution=count,
                record_id=f"tallyqa/{sp}/{qid}",
                meta=meta,
            )

        entries = _questions(path)
        records += collect(
            enumerate(entries), build, skips, desc=f"tallyqa {sp}", total=len(entries), progress=progress
        )
    return records
