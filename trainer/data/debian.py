"""Debian packages as a data source: `apt-get download` (no root needed, nothing installed) and reading the
files inside a .deb, with dpkg-deb where it exists and without it otherwise."""

from __future__ import annotations

import io
import shutil
import subprocess
import tarfile
from dataclasses import dataclass
from pathlib import Path

from trainer.data.fetch import FetchError


@dataclass(frozen=True)
class DebianPackage:
    """A downloaded .deb and what its file name says (name_version_arch.deb, the version %-escaped)."""

    path: Path
    name: str
    version: str


def download_packages(names: list[str], into: Path, help_text: str) -> list[DebianPackage]:
    """`apt-get download NAME ...` into `into`; one DebianPackage per name, in the order given. `help_text` is
    added to the error when apt-get is missing or fails (what the user can do instead)."""
    if shutil.which("apt-get") is None:
        raise FetchError(f"apt-get is not available to download {', '.join(names)}. {help_text}")
    result = subprocess.run(["apt-get", "download", *names], cwd=into, capture_output=True, text=True)
    packages = []
    for name in names:
        debs = sorted(Path(into).glob(f"{name}_*.deb"))
        if result.returncode != 0 or not debs:
            raise FetchError(
                f"`apt-get download {' '.join(names)}` failed: {result.stderr.strip()[-1000:]}\n"
                f"If a package is unknown, run `apt-get update` first. {help_text}"
            )
        version = debs[0].name[len(name) + 1 :].rsplit("_", 1)[0].replace("%3a", ":")
        packages.append(DebianPackage(debs[0], name, version))
    return packages


def members_of_deb(deb: Path) -> tarfile.TarFile:
    """The data archive of a .deb. dpkg-deb reads every compression Debian and Ubuntu use (xz, zstd);
    without it, the ar container is read here (xz, gzip, bzip2 only)."""
    if shutil.which("dpkg-deb"):
        result = subprocess.run(["dpkg-deb", "--fsys-tarfile", str(deb)], capture_output=True)
        if result.returncode != 0:
            raise FetchError(f"dpkg-deb could not read {deb}: {result.stderr.decode(errors='replace').strip()}")
        return tarfile.open(fileobj=io.BytesIO(result.stdout))
    content = deb.read_bytes()
    if not content.startswith(b"!<arch>\n"):
        raise FetchError(f"{deb} is not a Debian package (no ar header)")
    offset = 8
    while offset + 60 <= len(content):
        header = content[offset : offset + 60]
        name, size = header[:16].decode().strip().rstrip("/"), int(header[48:58].decode().strip())
        body = content[offset + 60 : offset + 60 + size]
        if name.startswith("data.tar"):
            try:
                return tarfile.open(fileobj=io.BytesIO(body))
            except tarfile.ReadError:
                raise FetchError(f"{deb}: cannot read {name} without dpkg-deb (install dpkg)") from None
        offset += 60 + size + (size % 2)
    raise FetchError(f"{deb}: no data archive inside")
