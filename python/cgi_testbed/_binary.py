"""Where the `cgi-testbed` executable that this package drives lives."""

from __future__ import annotations

import os
import shutil
import sys
import sysconfig
from typing import Iterator

NAME = "cgi-testbed"
ENV_VAR = "CGI_TESTBED_BIN"


def find_binary() -> str:
    """The path of the `cgi-testbed` executable to run.

    `$CGI_TESTBED_BIN` wins (to test a cargo-built binary). Otherwise the one that pip
    installed with this package, then the first on PATH.
    """
    override = os.environ.get(ENV_VAR)
    if override:
        if not _is_executable(override):
            raise FileNotFoundError(f"${ENV_VAR} is {override!r}, which is not an executable file")
        return override
    # The wheel puts the binary in the scripts directory of the environment it was
    # installed into. Looking there before PATH runs the binary that belongs to this
    # package even when its venv is not activated, or when PATH has another build.
    for directory in _install_dirs():
        candidate = os.path.join(directory, NAME)
        if _is_executable(candidate):
            return candidate
    on_path = shutil.which(NAME)
    if on_path:
        return on_path
    raise FileNotFoundError(
        f"no {NAME} executable: not in {', '.join(_install_dirs())} nor on PATH; "
        f"`pip install cgi-testbed` installs it, or set ${ENV_VAR} to a built one"
    )


def _install_dirs() -> list[str]:
    seen: list[str] = []
    for directory in _candidate_dirs():
        if directory and directory not in seen:
            seen.append(directory)
    return seen


def _candidate_dirs() -> Iterator[str]:
    yield sysconfig.get_path("scripts")
    # A venv's bin/ is where its python is; not resolved, since the venv's python is
    # usually a symlink to an interpreter elsewhere.
    yield os.path.dirname(sys.executable)
    # `pip install --user` puts scripts in the user scheme's directory instead.
    for scheme in (f"{os.name}_user", "osx_framework_user"):
        if scheme in sysconfig.get_scheme_names():
            yield sysconfig.get_path("scripts", scheme)


def _is_executable(path: str) -> bool:
    return os.path.isfile(path) and os.access(path, os.X_OK)
