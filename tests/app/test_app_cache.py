"""The app's cache folders are bounded by age and total size, swept periodically."""

from __future__ import annotations

import os
import time

from crowdvlm.app.cache import CacheJanitor


def _file(path, size: int, age_s: float):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x" * size)
    then = time.time() - age_s
    os.utime(path, (then, then))
    os.utime(path.parent, (then, then))  # its folder was last changed when the file was written
    return path


def test_files_past_the_age_limit_go(tmp_path):
    old = _file(tmp_path / "a1" / "old.png", 10, age_s=7200)
    new = _file(tmp_path / "b2" / "new.png", 10, age_s=5)
    removed = CacheJanitor([tmp_path], max_age_s=3600, max_bytes=10**9).sweep()
    assert removed == 1 and not old.exists() and new.exists()
    assert not (tmp_path / "a1").exists()  # its emptied folder went too (it is older than the grace period)


def test_the_oldest_files_go_until_the_total_fits(tmp_path):
    files = [_file(tmp_path / f"d{i}" / f"{i}.png", 1000, age_s=100 - i) for i in range(5)]  # files[0] oldest
    janitor = CacheJanitor([tmp_path], max_age_s=3600, max_bytes=2500)
    assert janitor.sweep() == 3
    assert [f.exists() for f in files] == [False, False, False, True, True]


def test_links_are_never_followed_and_missing_roots_are_fine(tmp_path):
    outside = _file(tmp_path / "outside" / "keep.png", 10, age_s=7200)
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "link.png").symlink_to(outside)
    CacheJanitor([cache, tmp_path / "absent"], max_age_s=1, max_bytes=1).sweep()
    assert outside.exists()


def test_the_janitor_sweeps_in_the_background_until_stopped(tmp_path):
    old = _file(tmp_path / "old.png", 10, age_s=7200)
    janitor = CacheJanitor([tmp_path], max_age_s=3600, max_bytes=10**9, every_s=0.05)
    janitor.start()
    try:
        for _ in range(200):
            if not old.exists():
                break
            time.sleep(0.05)
    finally:
        janitor.stop()
    assert not old.exists()
