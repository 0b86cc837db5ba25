"""`python -m cgi_testbed ARGS`, the replacement for `python -m http.server --cgi`."""

import signal
import subprocess
import sys
from importlib.metadata import version

from sites import INDEX, fetch, hello_site


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "cgi_testbed", *args], capture_output=True, text=True, timeout=60
    )


def test_version_is_the_crates_and_the_packages():
    result = run("--version")
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"cgi-testbed {version('cgi-testbed')}\n"


def test_a_bad_flag_exits_with_status_2_and_the_servers_message():
    result = run("--no-such-flag")
    assert result.returncode == 2
    assert "unexpected argument '--no-such-flag'" in result.stderr


def test_root_dot_serves_the_directory_like_http_server_cgi(tmp_path):
    hello_site(tmp_path)
    with open(tmp_path / "stderr", "w") as stderr:
        server = subprocess.Popen(
            [sys.executable, "-m", "cgi_testbed", "--root", ".", "--listen", "127.0.0.1:0"],
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
        )
    try:
        line = server.stdout.readline()
        assert line.startswith("listening on http://127.0.0.1:"), (tmp_path / "stderr").read_text()
        base = line.split()[-1]
        assert fetch(base + "/") == (200, INDEX.encode())
        assert fetch(base + "/cgi-bin/hello") == (200, b"hello from /cgi-bin/hello\n")
    finally:
        server.send_signal(signal.SIGTERM)
        status = server.wait(timeout=30)
        server.stdout.close()
    # 0, not -SIGTERM: the signal reached the server itself, which Python exec'd.
    assert status == 0
