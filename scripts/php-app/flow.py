#!/usr/bin/env python3
"""Walks a DokuWiki made by instance.sh as a browser would, and prints a transcript.

    scripts/php-app/flow.py BASE_URL      e.g. http://127.0.0.1:8080
    scripts/php-app/flow.py --compare A.txt B.txt   two transcripts, line by line

The start page, then every stylesheet, script and image it names; then a page edited
through its form (the session cookie, the form's security token, a POST, the
redirect after it) and read back, as HTML and as raw text; then paths that must never
send a script's source or run a file that is not a script. One line per request:
method, path, status, Content-Type, Location, the names of the cookies set, and a
digest of the body with what differs from run to run (tokens, times, the port) taken
out (for a refusal, the status alone), so two servers' transcripts over the same directory can be compared line by
line (--compare, which knows the differences that are by design and says why).
Exits 1, saying why, when an answer is not what a working wiki gives.
Standard library only.
"""

import hashlib
import http.client
import re
import sys
import urllib.parse
from html.parser import HTMLParser

PAGE = "playground:cgi-testbed"
TEXT = "Written through the form by flow.py.\n\n  * a list item\n  * **bold** text\n"


class Fail(Exception):
    pass


class Page(HTMLParser):
    """What the flow needs from a page: its title, assets and forms."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.title = ""
        self.assets = []
        self.forms = {}
        self._form = None
        self._textarea = None
        self._in_title = False

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "title":
            self._in_title = True
        elif tag == "link" and a.get("href") and (
            "stylesheet" in a.get("rel", "") or "icon" in a.get("rel", "")
        ):
            self.assets.append(a["href"])
        elif tag in ("script", "img") and a.get("src"):
            self.assets.append(a["src"])
        elif tag == "form":
            self._form = a.get("id") or a.get("name") or str(len(self.forms))
            self.forms[self._form] = {
                "action": a.get("action", ""),
                "method": a.get("method", "get").lower(),
                "fields": [],
            }
        elif tag == "input" and self._form is not None and a.get("name"):
            kind = a.get("type", "text").lower()
            if kind not in ("submit", "button", "checkbox", "radio") or "checked" in a:
                self.forms[self._form]["fields"].append((a["name"], a.get("value") or ""))
        elif tag == "textarea" and self._form is not None:
            self._textarea = a.get("name")
            self.forms[self._form]["fields"].append((self._textarea, ""))

    def handle_endtag(self, tag):
        if tag == "title":
            self._in_title = False
        elif tag == "form":
            self._form = None
        elif tag == "textarea":
            self._textarea = None

    def handle_data(self, data):
        if self._in_title:
            self.title += data
        elif self._textarea is not None and self._form is not None:
            name, value = self.forms[self._form]["fields"][-1]
            self.forms[self._form]["fields"][-1] = (name, value + data)


class Browser:
    """One client with a cookie jar; never follows redirects by itself."""

    def __init__(self, base):
        self.base = base.rstrip("/")
        u = urllib.parse.urlsplit(self.base)
        self.host, self.port = u.hostname, u.port or 80
        self.cookies = {}
        self.lines = []

    def request(self, method, path, body=None, headers=None):
        conn = http.client.HTTPConnection(self.host, self.port, timeout=60)
        h = {"Host": f"{self.host}:{self.port}", "User-Agent": "flow.py"}
        if self.cookies:
            h["Cookie"] = "; ".join(f"{k}={v}" for k, v in sorted(self.cookies.items()))
        h.update(headers or {})
        conn.request(method, path, body=body, headers=h)
        r = conn.getresponse()
        data = r.read()
        conn.close()
        set_names = []
        for value in r.msg.get_all("Set-Cookie") or []:
            name, _, rest = value.partition("=")
            val = rest.split(";", 1)[0]
            set_names.append(name.strip())
            if "deleted" == val or "Max-Age=0" in rest or "expires=Thu, 01-Jan-1970" in rest:
                self.cookies.pop(name.strip(), None)
            else:
                self.cookies[name.strip()] = val
        ctype = r.getheader("Content-Type", "-")
        location = r.getheader("Location", "-")
        # A refusal is the server's own page, worded as each server words it.
        shown_type, shown_body = (
            ("-", "(refused)") if r.status >= 400 else (ctype, self.digest(ctype, data))
        )
        self.lines.append(
            " ".join(
                [
                    method,
                    self.normalize(path),
                    "->",
                    str(r.status),
                    shown_type.replace(" ", ""),
                    "location=" + self.normalize(self.local(location)),
                    "cookies=" + (",".join(sorted(set(set_names))) or "-"),
                    "body=" + shown_body,
                ]
            )
        )
        return r.status, ctype, location, data

    def local(self, url):
        """A URL of this site as a path."""
        if url.startswith(self.base):
            return url[len(self.base):] or "/"
        return url

    def normalize(self, text):
        text = text.replace(self.base, "BASE").replace(f"{self.host}:{self.port}", "HOST")
        text = re.sub(r"\b[0-9a-f]{32}\b", "HEX", text)
        text = re.sub(r"\b\d{4}/\d{2}/\d{2} \d{2}:\d{2}(:\d{2})?\b", "DATE", text)
        text = re.sub(r"\b\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}[+-]\d{2}:?\d{2}\b", "DATE", text)
        text = re.sub(r"\b1\d{9}\b", "TIME", text)
        # The session id PHP picks (in the cookie, and in links before it is set).
        text = re.sub(r"\b[0-9a-z]{26}\b", "SESSION", text)
        return text

    def digest(self, ctype, data):
        textual = ctype.startswith("text/") or any(
            t in ctype for t in ("javascript", "json", "xml")
        )
        if textual:
            data = self.normalize(data.decode("utf-8", "replace")).encode()
        return f"{hashlib.sha256(data).hexdigest()[:16]}/{len(data)}"


def expect(cond, why):
    if not cond:
        raise Fail(why)


def run(b):
    # The start page: `/` runs doku.php (the index), with its assets.
    status, ctype, _, body = b.request("GET", "/")
    expect(status == 200 and ctype.startswith("text/html"), f"/ answered {status} {ctype}")
    page = Page()
    page.feed(body.decode("utf-8", "replace"))
    expect("cgi-testbed DokuWiki" in page.title, f"/ is not the wiki: {page.title!r}")
    expect("DokuWiki" in b.cookies, "no session cookie on the start page")
    kinds = set()
    for url in dict.fromkeys(page.assets):
        path = b.local(urllib.parse.urljoin(b.base + "/", url))
        if not path.startswith("/"):
            continue
        status, ctype, _, data = b.request("GET", path)
        expect(status == 200 and data, f"{path} answered {status} with {len(data)} bytes")
        kinds.add(ctype.split(";")[0])
    for kind in ("text/css", "image/png"):
        expect(kind in kinds, f"the start page named no {kind} that loaded: {sorted(kinds)}")
    expect(any("javascript" in k for k in kinds), f"no script loaded: {sorted(kinds)}")

    # Edit a page through its form: PATH_INFO names the page, the form carries the
    # session's security token, the POST redirects to the page.
    status, _, _, body = b.request("GET", f"/doku.php/{PAGE}?do=edit")
    expect(status == 200, f"the editor answered {status}")
    page = Page()
    page.feed(body.decode("utf-8", "replace"))
    form = page.forms.get("dw__editform")
    expect(form and form["method"] == "post", f"no edit form: {list(page.forms)}")
    fields = [(k, v) for k, v in form["fields"] if k != "wikitext"]
    expect(b"read only" not in body, "the page is read only (locked, or data not writable)")
    # Empty for an anonymous editor, whom DokuWiki knows by the session cookie.
    expect(any(k == "sectok" for k, v in fields), "the form has no security token")
    fields += [("wikitext", TEXT), ("do[save]", "Save")]
    action = b.local(urllib.parse.urljoin(b.base + f"/doku.php/{PAGE}", form["action"]))
    status, _, location, _ = b.request(
        "POST",
        action,
        body=urllib.parse.urlencode(fields),
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    expect(status in (302, 303), f"saving answered {status}, not a redirect")
    target = b.local(urllib.parse.urljoin(b.base + action, location))
    expect(target.startswith(f"/doku.php/{PAGE}"), f"saved, then sent to {location}")

    # Read it back.
    status, _, _, body = b.request("GET", target)
    expect(status == 200 and b"<strong>bold</strong>" in body, "the saved page does not show")
    status, ctype, _, body = b.request("GET", f"/doku.php/{PAGE}?do=export_raw")
    expect(
        status == 200 and body.decode().strip() == TEXT.strip(),
        f"the raw page is {body[:200]!r}",
    )
    status, _, _, body = b.request("GET", f"/doku.php/{PAGE}?do=revisions")
    expect(status == 200 and b"current" in body, "no revision list")

    # Never a script's source; never a file that is not a script run. Past an image,
    # the rest of the path is not found, or ignored with the image sent (lighttpd).
    for path in ["/doku.php.", "/doku.php%2e", "/DOKU.PHP"]:
        status, _, _, body = b.request("GET", path)
        expect(status == 404, f"{path} answered {status}, not 404")
    logo = "/lib/tpl/dokuwiki/images/logo.png"
    for path in [f"{logo}/x.php", f"{logo}/doku.php"]:
        status, ctype, _, body = b.request("GET", path)
        expect(
            status == 404 or status == 200 and ctype == "image/png",
            f"{path} answered {status} {ctype}: ran as a script?",
        )
        expect(b"<?php" not in body and b"<html" not in body, f"{path} ran or sent PHP")


# Where lighttpd and cgi-testbed answer differently by design, and why. Each is
# (what differs, a test on the two lines' fields, the reason); any other difference
# fails the comparison.
EXPLAINED = [
    (
        "static MIME table",
        lambda a, b: ".php" not in a["path"] and a["status"] == b["status"] == "200"
        and a["body"] == b["body"] and a["type"] != b["type"],
        "a static file's Content-Type comes from lighttpd's /etc/mime.types and our "
        "mime_guess table, which name a few types differently (image/x-icon)",
    ),
    (
        "script's Content-Type",
        lambda a, b: {a["type"].split(";")[0], b["type"].split(";")[0]}
        == {"text/javascript", "application/javascript"} and a["body"] == b["body"],
        "the script writes application/javascript; lighttpd sends text/javascript "
        "(the name RFC 9239 prefers) in its place, even for a script that sets no "
        "other header; cgi-testbed passes the script's header as written",
    ),
    (
        "path past a static file",
        lambda a, b: ".png/" in a["path"]
        and {a["status"], b["status"]} == {"200", "404"},
        "lighttpd sends the image and ignores the rest of the path; cgi-testbed answers "
        "404, as for /file.txt/more (only a script takes PATH_INFO); neither runs it",
    ),
]


def fields(line):
    method, path, _, status, ctype, location, cookies, body = line.split(" ")
    return {
        "method": method,
        "path": path,
        "status": status,
        "type": ctype,
        "location": location,
        "cookies": cookies,
        "body": body,
    }


def compare(a_file, b_file):
    """Line by line: the same, explained (EXPLAINED), or different. 1 if any is."""
    a_lines = open(a_file).read().splitlines()
    b_lines = open(b_file).read().splitlines()
    if len(a_lines) != len(b_lines):
        print(f"different: {len(a_lines)} and {len(b_lines)} lines")
        return 1
    same, explained, different = 0, {}, []
    for a, b in zip(a_lines[:-1], b_lines[:-1]):
        if a == b:
            same += 1
            continue
        fa, fb = fields(a), fields(b)
        why = next((e for e in EXPLAINED if fa["path"] == fb["path"] and e[1](fa, fb)), None)
        if why:
            explained.setdefault(why, []).append((a, b))
        else:
            different.append((a, b))
    print(f"{same} requests answered the same")
    for (name, _, reason), pairs in explained.items():
        print(f"{len(pairs)} differ by design ({name}): {reason}")
        for a, b in pairs:
            print(f"  < {a}\n  > {b}")
    for a, b in different:
        print(f"DIFFERENT:\n  < {a}\n  > {b}")
    return 1 if different else 0


def main():
    if len(sys.argv) == 4 and sys.argv[1] == "--compare":
        return compare(sys.argv[2], sys.argv[3])
    if len(sys.argv) != 2:
        print(__doc__.strip().splitlines()[2].strip(), file=sys.stderr)
        return 2
    b = Browser(sys.argv[1])
    try:
        run(b)
        ok = True
    except (Fail, OSError, http.client.HTTPException) as e:
        print(f"FAILED: {e}", file=sys.stderr)
        ok = False
    print("\n".join(b.lines))
    print(f"{'ok' if ok else 'FAILED'}: {len(b.lines)} requests")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
