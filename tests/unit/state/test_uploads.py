"""A package upload is cut to what a node may be handed: no setuid, setgid or sticky bit
survives, and a package of too many entries is refused before anything is written."""

from __future__ import annotations

import io
import zipfile

import pytest

from headway.state import uploads


def _zip(entries: dict[str, int]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, mode in entries.items():
            info = zipfile.ZipInfo(name)
            info.external_attr = (0o100000 | mode) << 16
            zf.writestr(info, b"#!/bin/sh\nid\n")
    return out.getvalue()


def _modes(data: bytes) -> dict[str, int]:
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        return {i.filename: (i.external_attr >> 16) & 0o7777 for i in zf.infolist()}


def test_setuid_setgid_and_sticky_bits_are_stripped_and_the_rest_kept():
    data = _zip(
        {
            "working_dir/suid": 0o4755,
            "working_dir/sgid": 0o2750,
            "working_dir/sticky": 0o1644,
            "working_dir/plain.py": 0o644,
        }
    )
    cleaned = uploads.check_zip(data)
    assert _modes(cleaned) == {
        "working_dir/suid": 0o755,
        "working_dir/sgid": 0o750,
        "working_dir/sticky": 0o644,
        "working_dir/plain.py": 0o644,
    }
    with zipfile.ZipFile(io.BytesIO(cleaned)) as zf:
        assert zf.read("working_dir/suid") == b"#!/bin/sh\nid\n"


def test_a_clean_package_is_kept_byte_for_byte():
    data = _zip({"working_dir/a.py": 0o644, "working_dir/run.sh": 0o755})
    assert uploads.check_zip(data) == data


def test_too_many_entries_are_refused(monkeypatch):
    monkeypatch.setattr(uploads, "MAX_ENTRIES", 5)
    with pytest.raises(uploads.UploadError, match="6 entries, more than 5"):
        uploads.check_zip(_zip({f"working_dir/f{i}": 0o644 for i in range(6)}))
