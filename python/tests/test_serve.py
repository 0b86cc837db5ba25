"""cgi_testbed.serve(): the context manager, against the real binary."""

import os
import re
import time

import pytest

import cgi_testbed
from cgi_testbed import Server, ServerError
from cgi_testbed._binary import _install_dirs
from sites import INDEX, fetch, hello_site, refused, write


def test_serves_a_static_page_and_a_cgi_bin_script(tmp_path):
    hello_site(tmp_path)
    with cgi_testbed.serve(root=tmp_path) as base:
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+", base)
        assert fetch(base + "/") == (200, INDEX.encode())
        assert fetch(base + "/index.html") == (200, INDEX.encode())
        assert fetch(base + "/cgi-bin/hello") == (200, b"hello from /cgi-bin/hello\n")
    assert refused(base + "/")


def test_htbin_runs_as_scripts_too(tmp_path):
    write(tmp_path / "htbin" / "hi", "#!/bin/sh\nprintf 'Content-Type: text/plain\\n\\nhi\\n'\n", True)
    with cgi_testbed.serve(root=tmp_path) as base:
        assert fetch(base + "/htbin/hi") == (200, b"hi\n")


def test_cgi_dir_args_and_env(tmp_path):
    write(
        tmp_path / "scripts" / "vars",
        "#!/bin/sh\nprintf 'Content-Type: text/plain\\n\\n%s %s\\n' \"$FROM_ENV_FLAG\" \"$PASSED\"\n",
        executable=True,
    )
    with cgi_testbed.serve(
        cgi_dir=tmp_path / "scripts",
        args=["--env", "FROM_ENV_FLAG=flag", "--pass-env", "PASSED"],
        env={"PASSED": "passed"},
    ) as base:
        assert fetch(base + "/cgi-bin/vars") == (200, b"flag passed\n")


def test_a_bad_flag_raises_with_the_servers_message():
    with pytest.raises(ServerError) as caught:
        with cgi_testbed.serve(args=["--no-such-flag"]):
            pytest.fail("the server should not have started")
    assert caught.value.returncode == 2
    assert "unexpected argument '--no-such-flag'" in caught.value.stderr
    assert "unexpected argument '--no-such-flag'" in str(caught.value)


def test_a_missing_root_raises_with_the_servers_message(tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(ServerError, match=re.escape(f"document root {missing}")) as caught:
        with cgi_testbed.serve(root=missing):
            pass
    assert caught.value.returncode == 1


def test_a_server_that_dies_while_serving_raises_at_exit(tmp_path):
    write(tmp_path / "cgi-bin" / "die", "#!/bin/sh\nkill -KILL $PPID\n", executable=True)
    with pytest.raises(ServerError, match=r"exited with status -9 before it was stopped"):
        with cgi_testbed.serve(root=tmp_path) as base:
            fetch_ignoring_errors(base + "/cgi-bin/die")
            wait_until_refused(base + "/")


def test_an_error_in_the_block_propagates_and_the_server_stops(tmp_path):
    hello_site(tmp_path)
    with pytest.raises(KeyError):
        with cgi_testbed.serve(root=tmp_path) as base:
            raise KeyError("from the test")
    assert refused(base + "/")


def test_a_large_error_log_does_not_block_the_server(tmp_path):
    # Far more than a pipe holds: unread, the server would block writing its log.
    write(
        tmp_path / "cgi-bin" / "noisy",
        "#!/bin/sh\n"
        "i=0; while [ $i -lt 4000 ]; do echo \"noise line $i $(printf '%0100d' 0)\" >&2; i=$((i+1)); done\n"
        "printf 'Content-Type: text/plain\\n\\ndone\\n'\n",
        executable=True,
    )
    server = Server.start(cgi_testbed.server_args(root=tmp_path))
    try:
        for _ in range(3):
            assert fetch(server.url + "/cgi-bin/noisy") == (200, b"done\n")
        log = server.error_log()
        assert log.count("noise line 3999 ") == 3
        assert len(log) > 3 * 4000 * 100
    finally:
        assert server.stop() == 0


def test_the_error_log_has_what_was_written_before_the_response(tmp_path):
    hello_site(tmp_path)
    server = Server.start(cgi_testbed.server_args(root=tmp_path))
    try:
        fetch(server.url + "/cgi-bin/hello")
        fetch(server.url + "/cgi-bin/missing")
        # Read at once, with no wait: error_log() reads what is still in the pipe.
        log = server.error_log()
        assert "hello wrote this to stderr" in log
        assert "GET /cgi-bin/missing 404" in log
    finally:
        server.stop()
    assert "SIGTERM" in server.error_log()


def test_a_server_that_never_listens_times_out(tmp_path, monkeypatch):
    silent = write(tmp_path / "silent", "#!/bin/sh\nexec sleep 60\n", executable=True)
    monkeypatch.setenv(cgi_testbed.ENV_VAR, str(silent))
    started = time.monotonic()
    with pytest.raises(ServerError, match=r"did not listen within 0\.5 s"):
        with cgi_testbed.serve(timeout=0.5):
            pass
    assert time.monotonic() - started < 10


def test_the_binary_comes_from_the_override_then_the_install(tmp_path, monkeypatch):
    monkeypatch.delenv(cgi_testbed.ENV_VAR, raising=False)
    installed = cgi_testbed.find_binary()
    # The one pip put beside this interpreter, not whichever PATH has first.
    assert os.path.basename(installed) == "cgi-testbed"
    assert os.path.dirname(installed) in _install_dirs()
    monkeypatch.setenv(cgi_testbed.ENV_VAR, str(tmp_path / "absent"))
    with pytest.raises(FileNotFoundError, match="CGI_TESTBED_BIN"):
        cgi_testbed.find_binary()


def test_args_must_be_a_sequence_not_a_string():
    with pytest.raises(TypeError):
        cgi_testbed.server_args(args="--no-status")


def fetch_ignoring_errors(url):
    try:
        fetch(url)
    except OSError:
        pass  # the server died while answering; that is the point


def wait_until_refused(url):
    deadline = time.monotonic() + 10
    while not refused(url):
        assert time.monotonic() < deadline, f"{url} still answers"
        time.sleep(0.05)
