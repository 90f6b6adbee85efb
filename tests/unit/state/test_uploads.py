"""A package upload is cut to what a node may be handed: no setuid, setgid or sticky bit
survives, and a package of too many entries is refused before anything is written."""

from __future__ import annotations

import io
import os
import zipfile
from pathlib import Path

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


def _tls_spec():
    from headway.model.spec import ServiceSpec

    return ServiceSpec.model_validate(
        {
            "name": "secure",
            "applications": [{"import_path": "m:a"}],
            "endpoint": {"tls": {"cert": "certs/fullchain.pem", "key": "certs/key.pem"}},
        }
    )


def _pair(tmp_path, sub: str) -> dict[str, str]:
    from headway.store import store_tls

    made = store_tls.ensure(tmp_path / sub, ["localhost"])
    return {"endpoint.tls.cert": Path(made.cert).read_text(), "endpoint.tls.key": Path(made.key).read_text()}


def test_the_endpoint_certificate_is_kept_private_by_content_and_the_spec_names_the_copies(tmp_path):
    first, second = _pair(tmp_path, "a"), _pair(tmp_path, "b")
    assert uploads.named_files(_tls_spec()) == {
        "endpoint.tls.cert": "certs/fullchain.pem",
        "endpoint.tls.key": "certs/key.pem",
    }
    kept = uploads.store_files(_tls_spec(), first, tmp_path / "files")
    tls = kept.endpoint.tls
    assert (
        Path(tls.cert).read_text() == first["endpoint.tls.cert"]
        and Path(tls.key).read_text() == first["endpoint.tls.key"]
    )
    assert {oct(os.stat(f).st_mode & 0o777) for f in (tls.cert, tls.key)} == {"0o600"}
    again = uploads.store_files(_tls_spec(), second, tmp_path / "files").endpoint.tls
    assert again.cert != tls.cert and Path(tls.cert).read_text() == first["endpoint.tls.cert"]  # each version its own


@pytest.mark.parametrize(
    "change,said",
    [
        (lambda f, other: f | {"endpoint.tls.key": other["endpoint.tls.key"]}, "endpoint.tls.key does not match"),
        (lambda f, other: {"endpoint.tls.cert": f["endpoint.tls.cert"]}, "endpoint.tls.key: certs/key.pem is a path"),
        (lambda f, other: f | {"endpoint.tls.cert": "x" * (2**20 + 1)}, "files.endpoint.tls.cert: larger than"),
        (lambda f, other: f | {"redis_password_file": "pw"}, "redis_password_file uploaded but the spec names no"),
    ],
    ids=["other key", "no key", "huge", "unnamed"],
)
def test_an_endpoint_certificate_that_cannot_serve_is_refused_before_anything_is_written(tmp_path, change, said):
    files = change(_pair(tmp_path, "a"), _pair(tmp_path, "b"))
    with pytest.raises(uploads.UploadError) as err:
        uploads.store_files(_tls_spec(), files, tmp_path / "files")
    assert said in str(err.value)
    assert not (tmp_path / "files").exists()
