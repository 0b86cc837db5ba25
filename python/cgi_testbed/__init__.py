"""Run CGI scripts under cgi-testbed from Python: the drop-in for
`python -m http.server --cgi`, which Python 3.15 removed.

    with cgi_testbed.serve(root="site") as base:
        urllib.request.urlopen(base + "/cgi-bin/app")

`python -m cgi_testbed ARGS` runs the server in the foreground, and the pytest
plugin gives tests the `cgi_server` fixture.
"""

from ._binary import ENV_VAR, find_binary
from ._server import Server, ServerError, serve, server_args

__all__ = ["ENV_VAR", "Server", "ServerError", "find_binary", "serve", "server_args"]
