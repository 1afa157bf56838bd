"""The client package ``lmarena-client-<CLIENT_ID>.zip``: everything one client owner needs, filled in.

Built in memory when a client's API key is (re)generated, since the platform keeps only the key's
hash. It holds ``config.jsonc`` (the only file with the key), ``start_client.sh``, ``README.txt``,
``userscript.js``, ``requirements_platform.txt``, ``lmarena_platform_integration.py`` and a wheel of
the running arenahub (it is not on PyPI): ``start_client.sh`` installs that wheel and its
dependencies from PyPI into a venv beside itself, then runs ``arenahub bridge``, which runs the
client inside it.

The wheel is made from the installed package's own files (no build tools, no network) and kept by a
``WheelCache`` until the code changes, so that a download is fast.

Modules: ``inputs`` (the values a package is filled in with, checked), ``wheel`` (the wheel and its
cache), ``texts`` and ``start_script`` (the files' texts), ``archive`` (deterministic ZIPs) and
``assembly`` (the package itself).
"""

from arenahub.platform.client_package.assembly import build_client_package
from arenahub.platform.client_package.inputs import (
    DEFAULT_BRIDGE_URL,
    DEFAULT_CAPABILITIES,
    ClientPackageError,
    package_filename,
)
from arenahub.platform.client_package.wheel import Wheel, WheelCache, build_wheel

__all__ = [
    "DEFAULT_BRIDGE_URL",
    "DEFAULT_CAPABILITIES",
    "ClientPackageError",
    "Wheel",
    "WheelCache",
    "build_client_package",
    "build_wheel",
    "package_filename",
]
