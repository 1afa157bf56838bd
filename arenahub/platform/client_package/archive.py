"""ZIP files as the package needs them: Unix file modes, fixed timestamps, so the same input gives
the same bytes."""

from __future__ import annotations

import io
import zipfile
from collections.abc import Iterable

EXECUTABLE = 0o100755
REGULAR = 0o100644
Stamp = tuple[int, int, int, int, int, int]


def zip_bytes(files: Iterable[tuple[str, bytes, int]], stamp: Stamp) -> bytes:
    """A ZIP in memory of ``(name, data, mode)`` entries, all dated ``stamp``."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data, mode in files:
            info = zipfile.ZipInfo(name, date_time=stamp)
            info.create_system = 3  # Unix: unzip applies the mode below
            info.external_attr = mode << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, data)
    return buffer.getvalue()
