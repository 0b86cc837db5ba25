"""`python -m cgi_testbed ARGS`: the same as `cgi-testbed ARGS`.

For example `python -m cgi_testbed --root . --listen 127.0.0.1:8000` in place of
`python -m http.server --cgi 8000`.
"""

from __future__ import annotations

import os
import sys
from typing import NoReturn, Optional, Sequence

from ._binary import find_binary


def main(argv: Optional[Sequence[str]] = None) -> NoReturn:
    args = sys.argv[1:] if argv is None else list(argv)
    try:
        binary = find_binary()
    except FileNotFoundError as e:
        sys.exit(f"python -m cgi_testbed: {e}")
    sys.stdout.flush()
    sys.stderr.flush()
    # exec rather than a child process: Ctrl-C, SIGTERM and the exit status then
    # reach and come from the server itself, with no Python process in between.
    os.execv(binary, [binary, *args])


if __name__ == "__main__":
    main()
