#!/usr/bin/env python3
"""A small HTML form handled with POST, without the removed `cgi` module."""
import html
import os
import sys
from urllib.parse import parse_qs

PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>form.py</title></head>
<body>
<h1>Say hello</h1>
{message}
<form method="post" action="{action}">
  <label>Name <input name="name" value=""></label>
  <label>Colour <select name="colour">
    <option>red</option><option>green</option><option>blue</option></select></label>
  <button type="submit">Send</button>
</form>
</body></html>
"""


def main():
    message = ""
    if os.environ.get("REQUEST_METHOD") == "POST":
        length = int(os.environ.get("CONTENT_LENGTH") or 0)
        fields = parse_qs(sys.stdin.buffer.read(length).decode("utf-8", "replace"))
        name = fields.get("name", ["stranger"])[0]
        colour = fields.get("colour", ["no colour"])[0]
        message = "<p>Hello, <b>{}</b>! You like {}.</p>".format(
            html.escape(name), html.escape(colour))
    action = html.escape(os.environ.get("SCRIPT_NAME", ""))
    body = PAGE.format(message=message, action=action).encode()
    sys.stdout.buffer.write(b"Content-Type: text/html; charset=utf-8\r\n")
    sys.stdout.buffer.write(b"Content-Length: %d\r\n\r\n" % len(body))
    sys.stdout.buffer.write(body)


main()
