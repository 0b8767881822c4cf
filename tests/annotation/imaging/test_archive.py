"""Safe zip extraction: zip slip, symlinks, zip bombs, corrupt archives, OS clutter."""

from __future__ import annotations

import random
import stat
import struct
import zipfile

import pytest

from annotation.imaging import ArchiveLimits, CorruptFileError, UnsafeArchiveError, extract_zip


def _zip(path, entries, compression=zipfile.ZIP_DEFLATED):
    with zipfile.ZipFile(path, "w", compression=compression) as archive:
        for name, data in entries:
            archive.writestr(name, data)
    return path


def test_extracts_files_and_ignores_directories_and_macos_clutter(tmp_path):
    archive = _zip(
        tmp_path / "upload.zip",
        [
            ("series/", b""),
            ("series/a.dcm", b"a" * 10),
            ("series/sub/b.dcm", b"b" * 10),
            ("__MACOSX/series/._a.dcm", b"fork"),
            ("series/.DS_Store", b"finder"),
        ],
    )
    skipped = []

    files = extract_zip(archive, tmp_path / "out", ArchiveLimits(), on_skip=lambda n, r: skipped.append(n))

    out = (tmp_path / "out").resolve()
    assert files == [out / "series" / "a.dcm", out / "series" / "sub" / "b.dcm"]
    assert files[1].read_bytes() == b"b" * 10
    assert sorted(skipped) == ["__MACOSX/series/._a.dcm", "series/.DS_Store"]
    assert not (out / "__MACOSX").exists()


@pytest.mark.parametrize(
    "name", ["../evil.txt", "series/../../evil.txt", "/tmp/evil.txt", "..\\evil.txt", "C:/evil.txt"]
)
def test_rejects_entry_escaping_the_destination(tmp_path, name):
    archive = _zip(tmp_path / "upload.zip", [("ok.dcm", b"fine"), (name, b"owned")])

    with pytest.raises(UnsafeArchiveError) as excinfo:
        extract_zip(archive, tmp_path / "out", ArchiveLimits())

    assert excinfo.value.code == "unsafe_archive"
    assert not (tmp_path / "evil.txt").exists()
    assert not (tmp_path / "out" / "ok.dcm").exists()  # refused before anything was written


def test_rejects_symlink_entry(tmp_path):
    link = zipfile.ZipInfo("series/link.dcm")
    link.create_system = 3  # Unix: the mode bits below are meaningful
    link.external_attr = (stat.S_IFLNK | 0o777) << 16
    with zipfile.ZipFile(tmp_path / "upload.zip", "w") as archive:
        archive.writestr(link, "/etc/passwd")

    with pytest.raises(UnsafeArchiveError, match="symbolic link"):
        extract_zip(tmp_path / "upload.zip", tmp_path / "out", ArchiveLimits())


def test_rejects_zip_bomb_before_extracting(tmp_path):
    # 300 MB of zeros deflate to ~300 KB: written in chunks, never held in memory or on disk.
    path = tmp_path / "bomb.zip"
    chunk = bytes(1 << 20)
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        with archive.open("zeros.dcm", "w", force_zip64=True) as entry:
            for _ in range(300):
                entry.write(chunk)
    assert path.stat().st_size < 1 << 20

    with pytest.raises(UnsafeArchiveError, match="zip bomb"):
        extract_zip(path, tmp_path / "out", ArchiveLimits())
    assert not (tmp_path / "out" / "zeros.dcm").exists()


def test_rejects_archive_declaring_more_than_the_size_limit(tmp_path):
    archive = _zip(tmp_path / "big.zip", [("a.dcm", random.Random(0).randbytes(2 << 20))])  # incompressible

    with pytest.raises(UnsafeArchiveError, match="expands to"):
        extract_zip(archive, tmp_path / "out", ArchiveLimits(max_total_bytes=1 << 20))


def test_rejects_archive_with_too_many_files(tmp_path):
    archive = _zip(tmp_path / "many.zip", [(f"{n}.dcm", b"x") for n in range(5)])

    with pytest.raises(UnsafeArchiveError, match="more than 4 files"):
        extract_zip(archive, tmp_path / "out", ArchiveLimits(max_files=4))


def test_never_writes_more_than_an_entry_declares(tmp_path):
    archive = _zip(tmp_path / "liar.zip", [("a.dcm", b"y" * 100_000)])
    data = bytearray(archive.read_bytes())
    # Make both headers claim 1000 bytes: local header offset 22, central directory offset 24 (APPNOTE 4.3.7/4.3.12).
    local = data.find(b"PK\x03\x04")
    central = data.find(b"PK\x01\x02")
    struct.pack_into("<I", data, local + 22, 1000)
    struct.pack_into("<I", data, central + 24, 1000)
    archive.write_bytes(bytes(data))

    with pytest.raises((CorruptFileError, UnsafeArchiveError)):
        extract_zip(archive, tmp_path / "out", ArchiveLimits())
    assert not (tmp_path / "out" / "a.dcm").exists()


def test_rejects_corrupt_zip(tmp_path):
    archive = _zip(tmp_path / "upload.zip", [("a.dcm", random.Random(0).randbytes(50_000))])
    archive.write_bytes(archive.read_bytes()[:25_000])  # cut in the middle: no central directory

    with pytest.raises(CorruptFileError, match="upload.zip"):
        extract_zip(archive, tmp_path / "out", ArchiveLimits())


def test_rejects_zip_with_damaged_entry_data(tmp_path):
    archive = _zip(tmp_path / "upload.zip", [("a.dcm", bytes(range(256)) * 400)], compression=zipfile.ZIP_STORED)
    data = bytearray(archive.read_bytes())
    data[100:110] = b"\xff" * 10  # inside the stored bytes: the CRC-32 no longer matches
    archive.write_bytes(bytes(data))

    with pytest.raises(CorruptFileError, match="a.dcm"):
        extract_zip(archive, tmp_path / "out", ArchiveLimits())
