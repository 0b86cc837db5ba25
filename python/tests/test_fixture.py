"""The pytest plugin's `cgi_server` fixture, against the real binary."""

import re

from sites import INDEX, fetch, hello_site, refused, write


def test_serves_a_static_page_and_a_cgi_bin_script(cgi_server, tmp_path):
    hello_site(tmp_path)
    base = cgi_server(root=tmp_path)
    assert re.fullmatch(r"http://127\.0\.0\.1:\d+", base)
    assert fetch(base + "/") == (200, INDEX.encode())
    assert fetch(base + "/cgi-bin/hello") == (200, b"hello from /cgi-bin/hello\n")
    assert fetch(base + "/cgi-bin/absent")[0] == 404


def test_several_servers_with_cgi_dir_and_args(cgi_server, tmp_path):
    write(
        tmp_path / "a" / "who",
        "#!/bin/sh\nprintf 'Content-Type: text/plain\\n\\n%s\\n' \"$WHO\"\n",
        executable=True,
    )
    first = cgi_server(cgi_dir=tmp_path / "a", args=["--env", "WHO=first"])
    second = cgi_server(cgi_dir=tmp_path / "a", args=("--env", "WHO=second"))
    assert first != second
    assert fetch(first + "/cgi-bin/who") == (200, b"first\n")
    assert fetch(second + "/cgi-bin/who") == (200, b"second\n")


# The tests below run small test files in a pytest session of their own (pytester),
# since what they check is what the plugin does around a test: teardown and reports.

SITE = """
import pathlib, urllib.error, urllib.request

def site(tmp_path):
    (tmp_path / "cgi-bin").mkdir()
    script = tmp_path / "cgi-bin" / "hello"
    script.write_text(
        "#!/bin/sh\\n"
        "printf 'Content-Type: text/plain\\\\n\\\\nhello\\\\n'\\n"
        "echo 'the script says: something is off' >&2\\n"
    )
    script.chmod(0o755)
    return tmp_path
"""


def test_a_failed_test_reports_each_servers_error_log(pytester):
    pytester.makepyfile(
        SITE
        + """
def test_fails(cgi_server, tmp_path):
    base = cgi_server(root=site(tmp_path))
    other = cgi_server(root=tmp_path)
    urllib.request.urlopen(base + "/cgi-bin/hello").read()
    try:
        urllib.request.urlopen(other + "/cgi-bin/nope")
    except urllib.error.HTTPError:
        pass
    assert False, "on purpose"
"""
    )
    result = pytester.runpytest()
    result.assert_outcomes(failed=1)
    result.stdout.re_match_lines(
        [
            r".*AssertionError: on purpose",
            r"-+ cgi-testbed error log http://127\.0\.0\.1:\d+ -+",
            r".*GET /cgi-bin/hello pid \d+ stderr: the script says: something is off",
            r"-+ cgi-testbed error log http://127\.0\.0\.1:\d+ -+",
            r".*GET /cgi-bin/nope 404 no such script",
        ]
    )


def test_a_passing_test_has_no_log_section_and_its_servers_stop(pytester, tmp_path):
    urls = tmp_path / "urls"
    pytester.makepyfile(
        SITE
        + f"""
def test_passes(cgi_server, tmp_path):
    base = cgi_server(root=site(tmp_path))
    cgi_server(root=tmp_path)
    assert urllib.request.urlopen(base + "/cgi-bin/hello").read() == b"hello\\n"
    with open({str(urls)!r}, "a") as f:
        f.write(base + "\\n")
"""
    )
    result = pytester.runpytest("-rA")
    result.assert_outcomes(passed=1)
    result.stdout.no_fnmatch_line("*cgi-testbed error log*")
    [url] = urls.read_text().split()
    assert refused(url + "/")


def test_a_server_dying_during_a_passing_test_is_an_error(pytester):
    pytester.makepyfile(
        """
import urllib.request

def test_kills_its_server(cgi_server, tmp_path):
    (tmp_path / "cgi-bin").mkdir()
    die = tmp_path / "cgi-bin" / "die"
    # The pause lets the server log the line before it dies.
    die.write_text("#!/bin/sh\\necho 'last words' >&2\\nsleep 1\\nkill -KILL $PPID\\n")
    die.chmod(0o755)
    base = cgi_server(root=tmp_path)
    try:
        urllib.request.urlopen(base + "/cgi-bin/die")
    except OSError:
        pass
"""
    )
    result = pytester.runpytest()
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.re_match_lines(
        [
            r".*cgi-testbed \(http://127\.0\.0\.1:\d+\) exited with status -9 before it was stopped",
            r"-+ cgi-testbed error log http://127\.0\.0\.1:\d+ -+",
            r".*stderr: last words",
        ]
    )
