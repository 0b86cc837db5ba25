"""A form handler written for `python -m http.server --cgi`, unchanged.

It uses `cgi.FieldStorage`: Python 3.13 removed the `cgi` module, and `legacy-cgi`
(from PyPI) brings it back. On older Pythons the standard library's `cgi` comes
first on sys.path and answers the same. The expected answers below are what the
script printed under Python 3.11's own CGIHTTPRequestHandler.
"""

import sys

from sites import fetch, write

# On POSIX, CGIHTTPRequestHandler ran scripts through their #! line (they had to be
# executable), so this one names the interpreter that has legacy-cgi installed.
FORM = """#!{python}
import cgi
import sys

form = cgi.FieldStorage()
lines = [
    "Hello, %s!" % form.getfirst("name", "stranger"),
    "tags: %s" % (", ".join(form.getlist("tag")) or "none"),
]
if "upload" in form and form["upload"].filename:
    upload = form["upload"]
    data = upload.file.read()
    lines.append("upload: %s (%s, %d bytes, %d lines)"
                 % (upload.filename, upload.type, len(data), data.count(b"\\n")))
lines.append("fields: %s" % ", ".join(sorted(form.keys())))
sys.stdout.buffer.write(b"Content-Type: text/plain; charset=utf-8\\r\\n\\r\\n")
sys.stdout.buffer.write(("\\n".join(lines) + "\\n").encode("utf-8"))
"""


def site(root):
    write(root / "cgi-bin" / "form.py", FORM.format(python=sys.executable), executable=True)
    return root


def multipart(boundary, fields):
    body = b""
    for name, filename, value in fields:
        disposition = f'form-data; name="{name}"'
        if filename:
            disposition += f'; filename="{filename}"\r\nContent-Type: text/plain'
        body += f"--{boundary}\r\nContent-Disposition: {disposition}\r\n\r\n".encode()
        body += value.encode("utf-8") + b"\r\n"
    return body + f"--{boundary}--\r\n".encode()


def test_a_multipart_form_post_with_a_file(cgi_server, tmp_path):
    base = cgi_server(root=site(tmp_path))
    boundary = "cgi-testbed-boundary-7MA4YWxk"
    body = multipart(
        boundary,
        [
            ("name", None, "Zoë"),
            ("tag", None, "a"),
            ("tag", None, "b"),
            ("upload", "notes.txt", "line one\nline two\n"),
        ],
    )
    status, answer = fetch(
        base + "/cgi-bin/form.py?source=query",
        data=body,
        headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
    )
    assert (status, answer.decode("utf-8")) == (
        200,
        "Hello, Zoë!\n"
        "tags: a, b\n"
        "upload: notes.txt (text/plain, 18 bytes, 2 lines)\n"
        "fields: name, source, tag, upload\n",
    )


def test_a_urlencoded_form_post(cgi_server, tmp_path):
    base = cgi_server(root=site(tmp_path))
    status, answer = fetch(
        base + "/cgi-bin/form.py?source=query",
        data=b"name=Ada+Lovelace&tag=x",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert (status, answer.decode("utf-8")) == (
        200,
        "Hello, Ada Lovelace!\ntags: x\nfields: name, source, tag\n",
    )
