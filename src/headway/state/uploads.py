"""What a caller of the API hands over instead of naming files on the control host.

The control plane runs as root beside the managed store; a path in a request would let
anyone with the API token read that host's files (``working_dir: ../../etc`` zipped and
shipped, ``redis_password_file: /root/.ssh/id_ed25519`` sent as AUTH to an address of
the caller's choosing). So the API never opens a path it is given: the CLI packages the
``working_dir`` and reads the files the spec names, and uploads their contents; this
module checks them and keeps them in the service's own 0600 files.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import io
import time
import zipfile
from pathlib import Path, PurePosixPath

from headway.model import certificates
from headway.model.spec import GCS_FILE_FIELDS, ServiceSpec
from headway.system import paths

MAX_PACKAGE_BYTES = 64 * 1024 * 1024
MAX_UNPACKED_BYTES = 512 * 1024 * 1024
MAX_FILE_BYTES = 1024 * 1024
MAX_ENTRIES = 20_000  # files and folders of one package (Ray unpacks each on every node)
#: Mode bits a package keeps: no setuid, setgid or sticky bit (a node must not be handed
#: a binary that runs as someone else, whatever unpacks it).
KEPT_MODE = 0o777


class UploadError(ValueError):
    """The request's uploads do not fit its spec; the message says what to send."""


def needs_package(spec: ServiceSpec) -> bool:
    """A local folder (on the caller's machine) that must come uploaded."""
    return bool(spec.working_dir) and "://" not in (spec.working_dir or "")


#: The upload key of each file an endpoint's ``tls`` names, and its field there.
TLS_FILES = {"endpoint.tls.cert": "cert", "endpoint.tls.key": "key"}


def named_files(spec: ServiceSpec) -> dict[str, str]:
    """Upload key → path (on the deploying machine) of every file the spec names."""
    gcs = spec.ray_gcs_external_storage_config
    named = {f: getattr(gcs, f) for f in GCS_FILE_FIELDS if getattr(gcs, f)}
    if spec.endpoint.tls is not None:
        named |= {key: getattr(spec.endpoint.tls, field) for key, field in TLS_FILES.items()}
    return named


def yaml_field(key: str) -> str:
    """Where the service YAML names the file behind an upload key."""
    return key if key in TLS_FILES else f"ray_gcs_external_storage_config.{key}"


def check_zip(data: bytes) -> bytes:
    """A working_dir package as ``package.package_working_dir`` makes it: one top folder
    ``working_dir/``, relative names only, bounded when unpacked (Ray unpacks it) and in
    entries; returned with every setuid, setgid and sticky bit stripped."""
    if len(data) > MAX_PACKAGE_BYTES:
        raise UploadError(f"package: larger than {MAX_PACKAGE_BYTES // 2**20} MiB; use excludes to leave data out")
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            infos = zf.infolist()
    except zipfile.BadZipFile:
        raise UploadError("package: not a zip file; upload the working_dir as the CLI packages it") from None
    if len(infos) > MAX_ENTRIES:
        raise UploadError(f"package: {len(infos)} entries, more than {MAX_ENTRIES}; use excludes to leave files out")
    total = 0
    for info in infos:
        name = PurePosixPath(info.filename)
        if name.is_absolute() or ".." in name.parts or not name.parts or name.parts[0] != "working_dir":
            raise UploadError(f"package: entry {info.filename!r} is outside working_dir/; package the folder again")
        total += info.file_size
    if total > MAX_UNPACKED_BYTES:
        raise UploadError(f"package: unpacks to more than {MAX_UNPACKED_BYTES // 2**20} MiB")
    return _without_special_bits(data, infos)


def _without_special_bits(data: bytes, infos: list[zipfile.ZipInfo]) -> bytes:
    """The package again with each entry's Unix mode cut to ``KEPT_MODE`` (unchanged when
    none had more)."""
    if not any((info.external_attr >> 16) & ~KEPT_MODE & 0o7777 for info in infos):
        return data
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as src, zipfile.ZipFile(out, "w") as dst:
        for info in infos:
            mode = (info.external_attr >> 16) & 0xFFFF
            info.external_attr = ((mode & ~0o7000) << 16) | (info.external_attr & 0xFFFF)
            dst.writestr(info, src.read(info), compress_type=info.compress_type)
    return out.getvalue()


def store_package(service: str, encoded: str) -> str:
    """Keep an uploaded package in the service's folder; return the ``file://`` URI the
    nodes read (named by content, so Ray ships changed code on update)."""
    try:
        data = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise UploadError("package: not base64; upload the zip as the CLI does") from None
    data = check_zip(data)
    dest = paths.service_dir(service) / "pkg"
    dest.mkdir(parents=True, exist_ok=True, mode=0o700)
    target = dest / f"working_dir-{hashlib.sha256(data).hexdigest()[:12]}.zip"
    if not target.exists():
        paths.write_private(target, data)
    return f"file://{target}"


def prune_packages(service: str, keep: set[str]) -> None:
    """Remove the packages no kept version names (called once a version RUNS: until then
    a replaced worker may still need the old one, and a rollback needs its own)."""
    pkg = paths.service_dir(service) / "pkg"
    for old in [*pkg.glob("working_dir-*.zip"), *pkg.glob("deps-*.zip")]:
        if f"file://{old}" not in keep:
            old.unlink(missing_ok=True)


def store_files(spec: ServiceSpec, files: dict[str, str], folder: Path | None = None) -> ServiceSpec:
    """The spec with every file it names replaced by the uploaded content, kept 0600 in
    the service's folder (or ``folder``: a validation must not touch a running service's
    files). A named file without content, or content for no named file, is an error that
    says which field; so is a TLS certificate its key does not fit, or one that expired."""
    named = named_files(spec)
    extra = sorted(set(files) - set(named))
    if extra:
        raise UploadError(f"files: {', '.join(extra)} uploaded but the spec names no such file")
    for key, path in named.items():
        if key not in files:
            raise UploadError(
                f"{yaml_field(key)}: {path} is a path on your machine; upload its content "
                f"(files.{key}) — the control plane reads no file a caller names"
            )
        if len(files[key].encode()) > MAX_FILE_BYTES:
            raise UploadError(f"files.{key}: larger than {MAX_FILE_BYTES // 1024} KiB")
    if spec.endpoint.tls is not None:
        cert, key = (files[k] for k in TLS_FILES)
        try:
            certificates.check(cert, key, time.time())
        except certificates.CertificateError as exc:
            raise UploadError(str(exc)) from None
    target = folder or paths.service_dir(spec.name) / "files"
    stored: dict[str, str] = {}
    for key in named:
        content = files[key]
        # The TLS pair is named by its content: each version keeps its own (a rollback
        # serves the certificate it was deployed with).
        name = f"{key}-{hashlib.sha256(content.encode()).hexdigest()[:12]}" if key in TLS_FILES else key
        paths.write_private(target / name, content)
        stored[key] = str(target / name)
    if not stored:
        return spec
    gcs = spec.ray_gcs_external_storage_config.model_copy(
        update={k: v for k, v in stored.items() if k not in TLS_FILES}
    )
    update: dict = {"ray_gcs_external_storage_config": gcs}
    if spec.endpoint.tls is not None:
        tls = spec.endpoint.tls.model_copy(update={field: stored[key] for key, field in TLS_FILES.items()})
        update["endpoint"] = spec.endpoint.model_copy(update={"tls": tls})
    return spec.model_copy(update=update)


def encode_package(zip_path: Path) -> str:
    return base64.b64encode(zip_path.read_bytes()).decode()
