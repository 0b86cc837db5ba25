"""Helpers for the tests: sites written into a temporary directory, and HTTP."""

from __future__ import annotations

import urllib.error
import urllib.request
from pathlib import Path
from typing import Mapping, Optional, Tuple

INDEX = "<h1>static hello</h1>\n"

HELLO = """#!/bin/sh
printf 'Content-Type: text/plain\\n\\n'
printf 'hello from %s\\n' "$SCRIPT_NAME"
echo "hello wrote this to stderr" >&2
"""


def write(path: Path, text: str, executable: bool = False) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    if executable:
        path.chmod(0o755)
    return path


def hello_site(root: Path) -> Path:
    """`root/index.html` and the script `root/cgi-bin/hello`."""
    write(root / "index.html", INDEX)
    write(root / "cgi-bin" / "hello", HELLO, executable=True)
    return root


def fetch(
    url: str,
    data: Optional[bytes] = None,
    headers: Optional[Mapping[str, str]] = None,
) -> Tuple[int, bytes]:
    """Status and body; an error status is an answer here, not an exception."""
    request = urllib.request.Request(url, data=data, headers=dict(headers or {}))
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def refused(url: str) -> bool:
    """Whether nothing listens at `url` any more."""
    try:
        urllib.request.urlopen(url, timeout=5).close()
    except urllib.error.URLError as e:
        return isinstance(e.reason, ConnectionRefusedError)
    except OSError:
        # Reset after connecting: a server that is dying, not one that is gone.
        return False
    return False
