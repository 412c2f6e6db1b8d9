"""Install the Debian packages the local services run on, when they are missing.

Tests use Debian's own builds (docker.io, busybox-static) so a fresh Debian
machine or CI image needs nothing but apt to get a working environment.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable


def is_installed(package: str) -> bool:
    """Whether dpkg reports `package` as installed."""
    result = subprocess.run(
        ["dpkg-query", "--show", "--showformat=${Status}", package],
        capture_output=True,
        text=True,
        check=False,
    )
    return result.returncode == 0 and result.stdout.strip() == "install ok installed"


def install_if_missing(package: str, present: Callable[[], bool]) -> None:
    """Install `package` with apt-get unless `present()` already holds.

    Raises RuntimeError when apt-get is unavailable or the install does not make
    `present()` true, so callers never go on with a half-prepared machine.
    """
    if present():
        return
    if shutil.which("apt-get") is None:
        raise RuntimeError(f"{package} is missing and there is no apt-get to install it")
    sudo = [] if os.geteuid() == 0 else ["sudo", "-n"]
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run([*sudo, "apt-get", "update"], check=True, env=env)
    subprocess.run(
        [*sudo, "apt-get", "install", "-y", "--no-install-recommends", package],
        check=True,
        env=env,
    )
    if not present():
        raise RuntimeError(f"apt-get installed {package}, but it is still not usable")
