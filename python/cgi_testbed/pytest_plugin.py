"""The pytest plugin (entry point `pytest11`, name `cgi_testbed`): the `cgi_server` fixture.

    def test_form(cgi_server, tmp_path):
        base = cgi_server(root=tmp_path)
        ...

Every server a test started is stopped at its teardown. When the test fails, each
server's error log (its stderr, with the scripts' stderr in it) is added to the
report as a section, shown under the failure like captured output.
"""

from __future__ import annotations

from typing import Callable, Iterator, List, Mapping, Optional, Sequence

import pytest

from ._server import PathLike, Server, server_args

_SERVERS = pytest.StashKey[List[Server]]()
_FAILED = pytest.StashKey[bool]()


@pytest.fixture
def cgi_server(request: pytest.FixtureRequest) -> Iterator[Callable[..., str]]:
    """Starts a cgi-testbed on 127.0.0.1 (a free port); returns its base URL.

    `cgi_server(root=None, cgi_dir=None, args=(), env=None)`: `root` is served as
    static files with `root/cgi-bin/` and `root/htbin/` run as scripts; `cgi_dir`
    names the script directory instead; `args` are more command-line options. Call
    it as often as the test needs servers.
    """
    servers = request.node.stash.setdefault(_SERVERS, [])

    def start(
        root: Optional[PathLike] = None,
        cgi_dir: Optional[PathLike] = None,
        args: Sequence[PathLike] = (),
        env: Optional[Mapping[str, str]] = None,
    ) -> str:
        server = Server.start(server_args(root, cgi_dir, args), env=env)
        servers.append(server)
        return server.url

    yield start

    for server in servers:
        server.stop()
    failures = [f for f in (s.failure() for s in servers) if f]
    # A failed test already shows the logs; a passing one would hide the crash.
    if failures and not request.node.stash.get(_FAILED, False):
        pytest.fail("; ".join(failures) + " (error log below)", pytrace=False)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Iterator[None]:
    outcome = yield
    report: pytest.TestReport = outcome.get_result()
    if not report.failed:
        return
    item.stash[_FAILED] = True
    for server in item.stash.get(_SERVERS, []):
        # error_log() reads the pipe up to now, so a line the server wrote just
        # before the failing response is in it.
        log = server.error_log() or "(empty)\n"
        report.sections.append((f"cgi-testbed error log {server.url}", log))
