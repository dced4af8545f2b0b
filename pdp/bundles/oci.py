"""Signed bundles as OCI artifacts: pushed to a registry with the `oras` CLI (scripts/build-oras),
pulled by OPA's `type: oci` services.

OPA (v1/download/oci_download.go at the pinned version) resolves the tag, copies the manifest and
its blobs, and takes the first layer of media type `application/vnd.oci.image.layer.v1.tar+gzip`
as the bundle tarball; the config's media type is not read. The layer is the signed bundle file
unchanged, so OPA checks its `.signatures.json` exactly as for a bundle served over HTTP: a tampered
or unsigned artifact pushed under the tag is refused and the last good revision keeps serving.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import shutil
import subprocess
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pdp.opa.binary import PROJECT_ROOT
from pdp.opa.bundle import CURRENT_BUNDLE

# Bump together with scripts/build-oras.
ORAS_VERSION = "1.3.6"
BUNDLE_LAYER_MEDIA_TYPE = "application/vnd.oci.image.layer.v1.tar+gzip"
CONFIG_MEDIA_TYPE = "application/vnd.oci.image.config.v1+json"
REVISION_ANNOTATION = "org.opencontainers.image.version"

# The distribution spec's grammar for repository names and tags.
_REPOSITORY = re.compile(r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*")
_TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")
_REGISTRY = re.compile(r"(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+)(?::[0-9]{1,5})?")


class OciError(RuntimeError):
    pass


@dataclass(frozen=True)
class OciReference:
    """`registry/repository:tag`, the registry named explicitly (OPA's resource needs it)."""

    registry: str
    repository: str
    tag: str

    @classmethod
    def parse(cls, text: str) -> OciReference:
        registry, slash, rest = text.partition("/")
        if (
            not slash
            or not _REGISTRY.fullmatch(registry)
            or not ("." in registry or ":" in registry or registry == "localhost")
        ):
            raise ValueError(
                f"--oci {text!r}: expected REGISTRY/REPOSITORY:TAG with the registry's host "
                "(and port) first, e.g. registry.example.com/gpupaas/bundle:prod"
            )
        repository, colon, tag = rest.rpartition(":")
        if not colon:
            raise ValueError(f"--oci {text!r}: no tag; OPA follows a tag, e.g. {text}:prod")
        if not _REPOSITORY.fullmatch(repository):
            raise ValueError(
                f"--oci {text!r}: repository {repository!r} is not a valid name "
                "(lowercase letters, digits, and . _ - / between them)"
            )
        if not _TAG.fullmatch(tag):
            raise ValueError(f"--oci {text!r}: tag {tag!r} is not a valid tag ([A-Za-z0-9_.-], at most 128)")
        return cls(registry, repository, tag)

    def __str__(self) -> str:
        return f"{self.registry}/{self.repository}:{self.tag}"

    @property
    def host(self) -> str:
        host = self.registry.rsplit(":", 1)[0] if not self.registry.endswith("]") else self.registry
        return host.strip("[]")

    @property
    def on_loopback(self) -> bool:
        if self.host == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return False


@dataclass(frozen=True)
class PushedBundle:
    reference: str
    digest: str
    revision: str

    @property
    def pinned(self) -> str:
        """The reference by manifest digest: what exactly was pushed, whatever the tag moves to."""
        return f"{self.reference.rsplit(':', 1)[0]}@{self.digest}"


def bundle_revision(bundle: Path, *, require_signature: bool = True) -> str:
    """The bundle's revision from its `.manifest`; raises OciError for a file that is not a bundle,
    or (with `require_signature`) one without `.signatures.json`."""
    try:
        with tarfile.open(bundle, "r:gz") as tar:
            members = {m.name.lstrip("/"): m for m in tar.getmembers()}
            manifest_member = members.get(".manifest")
            manifest_file = tar.extractfile(manifest_member) if manifest_member else None
            manifest = json.load(manifest_file) if manifest_file else None
    except (OSError, tarfile.TarError, json.JSONDecodeError) as exc:
        raise OciError(f"{bundle}: not a bundle tarball ({exc})") from exc
    if not isinstance(manifest, dict) or not isinstance(manifest.get("revision"), str):
        raise OciError(f"{bundle}: no .manifest with a revision: not a bundle built by `pdp build`")
    if require_signature and ".signatures.json" not in members:
        raise OciError(
            f"{bundle}: unsigned (no .signatures.json); OPA would refuse it: build it with `pdp build`"
        )
    return str(manifest["revision"])


def find_oras() -> Path:
    """The oras binary: $PDP_ORAS_BIN, the one scripts/build-oras builds, or PATH."""
    built = PROJECT_ROOT / ".cache" / "oras" / f"v{ORAS_VERSION}" / "oras"
    for candidate in (os.environ.get("PDP_ORAS_BIN"), str(built), shutil.which("oras")):
        if candidate and os.access(candidate, os.X_OK):
            return Path(candidate)
    raise OciError(f"oras {ORAS_VERSION} not found: run scripts/build-oras, or point PDP_ORAS_BIN at one")


def transport_args(
    reference: OciReference, *, ca_file: Path | None, plain_http: bool, registry_config: Path | None
) -> list[str]:
    """oras's options for reaching the registry: TLS (trusting `ca_file` when given) unless plain
    HTTP is asked for, which only a loopback registry may be (bundles carry every tenant's data)."""
    if plain_http and not reference.on_loopback:
        raise ValueError(
            f"--plain-http: registry {reference.registry} is not on loopback; bundles carry every "
            "tenant's data, so they travel over TLS (--ca-file to trust a private CA)"
        )
    if plain_http and ca_file is not None:
        raise ValueError("--plain-http and --ca-file: choose one (--ca-file is for TLS)")
    args = ["--plain-http"] if plain_http else []
    if ca_file is not None:
        args += ["--ca-file", str(ca_file)]
    if registry_config is not None:
        args += ["--registry-config", str(registry_config)]
    return args


def push_bundle(
    bundle: Path,
    reference: OciReference,
    *,
    ca_file: Path | None = None,
    plain_http: bool = False,
    registry_config: Path | None = None,
    require_signature: bool = True,
    oras: Path | None = None,
    timeout: float = 120,
) -> PushedBundle:
    """Push `bundle` under `reference` as the artifact OPA's OCI downloader reads: one
    tar+gzip layer (the bundle file, byte for byte) and an empty image config."""
    revision = bundle_revision(bundle, require_signature=require_signature)
    args = transport_args(reference, ca_file=ca_file, plain_http=plain_http, registry_config=registry_config)
    with tempfile.TemporaryDirectory(prefix="pdp-oci-") as tmp:
        # oras names the layer by the path it is given, relative: the layer's title is the file name.
        shutil.copyfile(bundle, Path(tmp) / CURRENT_BUNDLE)
        (Path(tmp) / "config.json").write_text("{}")
        argv = [
            str(oras or find_oras()),
            "push",
            *args,
            "--format",
            "json",
            "--config",
            f"config.json:{CONFIG_MEDIA_TYPE}",
            "--annotation",
            f"{REVISION_ANNOTATION}={revision}",
            str(reference),
            f"{CURRENT_BUNDLE}:{BUNDLE_LAYER_MEDIA_TYPE}",
        ]
        proc = subprocess.run(argv, cwd=tmp, capture_output=True, text=True, timeout=timeout, check=False)
    if proc.returncode != 0:
        raise OciError(f"oras push {reference} failed: {(proc.stderr or proc.stdout).strip()}")
    try:
        pushed: dict[str, Any] = json.loads(proc.stdout)
        digest = str(pushed["digest"])
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise OciError(f"oras push {reference}: unexpected output {proc.stdout[:400]!r}") from exc
    return PushedBundle(str(reference), digest, revision)
