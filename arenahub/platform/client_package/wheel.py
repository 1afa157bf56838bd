"""A wheel of the running arenahub, made from its installed files (no build tools, no network), and
the cache that keeps it until the code changes."""

from __future__ import annotations

import base64
import hashlib
import importlib.metadata
import re
import threading
import tomllib
from dataclasses import dataclass
from pathlib import Path

import arenahub
from arenahub.platform.client_package.archive import REGULAR, Stamp, zip_bytes
from arenahub.platform.client_package.inputs import ClientPackageError

_WHEEL_DATE: Stamp = (1980, 1, 1, 0, 0, 0)  # fixed, so that the same code gives the same wheel


@dataclass(frozen=True)
class Wheel:
    filename: str
    version: str
    data: bytes = b""
    requires_python: str = ""
    dependencies: tuple[str, ...] = ()

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()

    @property
    def min_python(self) -> tuple[int, int]:
        """The oldest Python it declares, as (major, minor); (3, 11) when it names none."""
        found = re.search(r">=\s*(\d+)\.(\d+)", self.requires_python)
        return (int(found.group(1)), int(found.group(2))) if found else (3, 11)


@dataclass(frozen=True)
class _Project:
    summary: str
    requires_python: str
    dependencies: tuple[str, ...]
    scripts: tuple[tuple[str, str], ...]


def _package_dir() -> Path:
    return Path(arenahub.__file__).resolve().parent


def _project(package_dir: Path) -> _Project:
    """What pyproject.toml declares: from the source tree beside the package when there is one (a
    checkout may have changed it since the install), else from the installed metadata."""
    pyproject = package_dir.parent / "pyproject.toml"
    if pyproject.is_file():
        project = tomllib.loads(pyproject.read_text(encoding="utf-8")).get("project", {})
        if project.get("name") == "arenahub":
            return _Project(project.get("description", ""), project.get("requires-python", ""),
                            tuple(project.get("dependencies", ())), tuple(project.get("scripts", {}).items()))
    try:
        dist = importlib.metadata.distribution("arenahub")
    except importlib.metadata.PackageNotFoundError:
        raise ClientPackageError("arenahub's metadata is not installed (no pyproject.toml beside the package "
                                 "either): install it with pip to build client packages") from None
    deps = tuple(r for r in dist.requires or () if not re.search(r";.*\bextra\s*==", r))
    scripts = tuple((ep.name, ep.value) for ep in dist.entry_points if ep.group == "console_scripts")
    return _Project(dist.metadata["Summary"] or "", dist.metadata["Requires-Python"] or "", deps, scripts)


def _source_files(package_dir: Path) -> list[Path]:
    """The package's files as installed: no caches, no hidden or backup files."""
    files = []
    for path in sorted(package_dir.rglob("*")):
        parts = path.relative_to(package_dir).parts
        if (path.is_file() and not any(p == "__pycache__" or p.startswith(".") for p in parts)
                and not path.name.endswith((".pyc", ".pyo", "~"))):
            files.append(path)
    return files


def _record_hash(data: bytes) -> str:
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def build_wheel() -> Wheel:
    """A pure-Python wheel of the running arenahub, made from its installed files."""
    package_dir = _package_dir()
    project = _project(package_dir)
    version = arenahub.__version__
    dist_info = f"arenahub-{version}.dist-info"
    metadata = "".join([
        "Metadata-Version: 2.1\nName: arenahub\n", f"Version: {version}\n", f"Summary: {project.summary}\n",
        f"Requires-Python: {project.requires_python}\n" if project.requires_python else "",
        *(f"Requires-Dist: {dep}\n" for dep in project.dependencies)])
    entries: list[tuple[str, bytes]] = [
        (f"arenahub/{p.relative_to(package_dir).as_posix()}", p.read_bytes()) for p in _source_files(package_dir)]
    entries += [
        (f"{dist_info}/METADATA", metadata.encode()),
        (f"{dist_info}/WHEEL", (b"Wheel-Version: 1.0\nGenerator: arenahub.platform.client_package\n"
                                b"Root-Is-Purelib: true\nTag: py3-none-any\n")),
        (f"{dist_info}/entry_points.txt", ("[console_scripts]\n" + "".join(
            f"{name} = {target}\n" for name, target in project.scripts)).encode()),
        (f"{dist_info}/top_level.txt", b"arenahub\n"),
    ]
    record = "".join(f"{name},{_record_hash(data)},{len(data)}\n" for name, data in entries)
    entries.append((f"{dist_info}/RECORD", (record + f"{dist_info}/RECORD,,\n").encode()))
    data = zip_bytes(((name, data, REGULAR) for name, data in entries), _WHEEL_DATE)
    return Wheel(f"arenahub-{version}-py3-none-any.whl", version, data, project.requires_python, project.dependencies)


class WheelCache:
    """Builds the wheel once and again only when arenahub's version or files change. Thread-safe:
    the platform calls it from worker threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._key: tuple[str, str] | None = None
        self._wheel: Wheel | None = None

    @staticmethod
    def _fingerprint() -> tuple[str, str]:
        package_dir = _package_dir()
        digest = hashlib.sha256()
        for path in _source_files(package_dir):
            stat = path.stat()
            digest.update(f"{path.relative_to(package_dir)}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
        return arenahub.__version__, digest.hexdigest()

    def get(self) -> Wheel:
        with self._lock:
            key = self._fingerprint()
            if self._wheel is None or key != self._key:
                self._wheel, self._key = build_wheel(), key
            return self._wheel
