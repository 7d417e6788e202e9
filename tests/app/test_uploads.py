"""What `crowdvlm app` accepts from a request: upload locations, sizes, pixels, zips (no gradio, no model)."""

from __future__ import annotations

import io
import zipfile

import numpy as np
import pytest
from PIL import Image

from crowdvlm.app.uploads import (
    Limits,
    UploadRefused,
    check_upload_path,
    expand_uploads,
    open_checked_image,
)


def png_bytes(width: int = 32, height: int = 24, noise: bool = False) -> bytes:
    pixels = np.random.default_rng(0).integers(0, 255, (height, width, 3), dtype=np.uint8) if noise else None
    image = Image.fromarray(pixels) if noise else Image.new("RGB", (width, height), "gray")
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def write_zip(path, members: dict[str, bytes]):
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return path


def test_only_files_inside_the_upload_folders_are_opened(uploads, tmp_path):
    inside = uploads / "a.png"
    inside.write_bytes(png_bytes())
    secret = tmp_path / "private" / "key.png"
    secret.write_bytes(png_bytes())
    assert check_upload_path(inside, [uploads], Limits()) == inside.resolve()
    for outside in (secret, uploads / ".." / "private" / "key.png", "/etc/passwd"):
        with pytest.raises(UploadRefused, match="only files uploaded through this page"):
            check_upload_path(outside, [uploads], Limits())
    link = uploads / "link.png"
    link.symlink_to(secret)  # a link inside the folder to a file outside it is outside
    with pytest.raises(UploadRefused, match="only files uploaded"):
        check_upload_path(link, [uploads], Limits())
    with pytest.raises(UploadRefused, match="not an uploaded file"):
        check_upload_path(uploads, [uploads], Limits())


def test_upload_size_limit_names_size_and_limit(uploads):
    big = uploads / "big.png"
    big.write_bytes(png_bytes(200, 200, noise=True))
    limits = Limits(max_upload_bytes=50 * 1024)
    with pytest.raises(UploadRefused, match=r"big\.png is \d+ KB; the limit is 50 KB per file"):
        check_upload_path(big, [uploads], limits)
    assert check_upload_path(big, [uploads], Limits()) == big.resolve()


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"hello, not an image", "not an image file"),
        (b"", "not an image file"),
        (png_bytes(64, 64, noise=True)[:300], "corrupt or truncated"),
        (b"\x89PNG\r\n\x1a\n" + b"\0" * 40, "not an image file|corrupt or truncated"),
    ],
)
def test_bad_images_are_refused_with_their_name(data, message):
    with pytest.raises(UploadRefused, match=f"refused: photo.png is ({message})"):
        open_checked_image(data, "photo.png", Limits())


def test_pixel_limit_is_checked_before_decoding(monkeypatch):
    data = png_bytes(300, 200)
    with pytest.raises(
        UploadRefused,
        match=r"^refused: wide\.png is 300x200 = 0\.1 megapixels; the limit is 0\.1 megapixels$",
    ):
        open_checked_image(data, "wide.png", Limits(max_pixels=59_999))

    def no_decoding(self):
        raise AssertionError("an oversized image was decoded")

    monkeypatch.setattr(Image.Image, "load", no_decoding)
    with pytest.raises(UploadRefused, match="megapixels"):
        open_checked_image(data, "wide.png", Limits(max_pixels=100))


def test_a_good_image_decodes_as_rgb(uploads):
    path = uploads / "grey.png"
    Image.new("L", (20, 10), 128).save(path)
    image = open_checked_image(path, "grey.png", Limits())
    assert (image.mode, image.size) == ("RGB", (20, 10))


def test_files_and_zip_members_expand_in_order(uploads):
    one = uploads / "one.png"
    one.write_bytes(png_bytes())
    archive = write_zip(
        uploads / "batch.zip",
        {"x/two.png": png_bytes(), "x/": b"", "__MACOSX/x/._two.png": b"junk", "three.jpg": b"not really"},
    )
    images = expand_uploads([one, archive], [uploads], Limits())
    assert [i.name for i in images] == ["one.png", "batch.zip/x/two.png", "batch.zip/three.jpg"]
    assert images[0].path == one.resolve() and images[0].data is None
    assert images[1].data == png_bytes() and images[1].path is None


@pytest.mark.parametrize(
    ("member", "message"),
    [
        ("../evil.png", "leaves the archive"),
        ("a/../../evil.png", "leaves the archive"),
        ("/etc/evil.png", "leaves the archive"),
        ("C:/evil.png", "leaves the archive"),
        ("inner.zip", "nested archives are not accepted"),
        ("inner.tar.gz", "nested archives are not accepted"),
    ],
)
def test_unsafe_zip_members_refuse_the_whole_zip(uploads, member, message):
    archive = write_zip(uploads / "bad.zip", {"ok.png": png_bytes(), member: png_bytes()})
    with pytest.raises(UploadRefused, match=f"bad.zip: member .* {message}"):
        expand_uploads([archive], [uploads], Limits())


def test_a_zip_disguised_by_its_name_is_still_refused_as_nested(uploads):
    inner = io.BytesIO()
    write_zip(inner, {"a.png": png_bytes()})
    archive = write_zip(uploads / "outer.zip", {"picture.png": inner.getvalue()})
    with pytest.raises(UploadRefused, match="'picture.png' is a zip; nested archives"):
        expand_uploads([archive], [uploads], Limits())


def test_uncompressed_size_is_bounded_across_the_request(uploads):
    # 300 KB of zeros compress to almost nothing: the bound is on what the members unpack to.
    zeros = b"\0" * 300_000
    first = write_zip(uploads / "a.zip", {"a.png": zeros})
    second = write_zip(uploads / "b.zip", {"b.png": zeros})
    assert first.stat().st_size < 10_000
    limits = Limits(max_unzipped_bytes=500_000)
    assert len(expand_uploads([first], [uploads], limits)) == 1
    with pytest.raises(UploadRefused, match="b.zip unpacks to more than 488 KB"):
        expand_uploads([first, second], [uploads], limits)


def test_a_zip_header_that_understates_a_member_is_refused(uploads, monkeypatch):
    archive = write_zip(uploads / "liar.zip", {"a.png": b"\0" * 200_000})
    with zipfile.ZipFile(archive) as zf:
        info = zf.infolist()[0]
    info.file_size = 10  # what a crafted header could claim
    monkeypatch.setattr(zipfile.ZipFile, "infolist", lambda self: [info])
    with pytest.raises(UploadRefused, match="liar.zip: member 'a.png' cannot be read"):
        expand_uploads([archive], [uploads], Limits(max_unzipped_bytes=100_000))


def test_number_of_images_per_request_is_bounded(uploads):
    files = []
    for i in range(3):
        files.append(uploads / f"{i}.png")
        files[-1].write_bytes(png_bytes())
    archive = write_zip(uploads / "two.zip", {"a.png": png_bytes(), "b.png": png_bytes()})
    assert len(expand_uploads(files, [uploads], Limits(max_images=3))) == 3
    with pytest.raises(UploadRefused, match="more than 4 images in one request; the limit is 4"):
        expand_uploads([*files, archive], [uploads], Limits(max_images=4))


def test_empty_requests_and_broken_zips_are_refused(uploads):
    with pytest.raises(UploadRefused, match="nothing uploaded"):
        expand_uploads([], [uploads], Limits())
    empty = write_zip(uploads / "empty.zip", {})
    with pytest.raises(UploadRefused, match="holds no image"):
        expand_uploads([empty], [uploads], Limits())
    broken = uploads / "broken.zip"
    broken.write_bytes(b"PK\x03\x04 this is not really a zip")
    with pytest.raises(UploadRefused, match="broken.zip is not a readable zip archive"):
        expand_uploads([broken], [uploads], Limits())


def test_limits_must_be_positive():
    with pytest.raises(ValueError, match="max_images must be >= 1"):
        Limits(max_images=0)
