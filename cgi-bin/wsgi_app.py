#!/usr/bin/env python3
"""Dual-mode WSGI hello: one application, run as CGI or as a FastCGI worker.

At start-up it looks at fd 0: a listening socket (getpeername fails with
ENOTCONN) means FastCGI, served by flup (PyPI: flup) for as many requests as
come; anything else (pipe, file, /dev/null) means classic CGI, served once by
wsgiref's CGIHandler. flup is only used in FastCGI mode because its own
detection crashes when stdin is not a socket.
"""
import errno
import os
import socket
import sys
import threading

FASTCGI = False
_lock = threading.Lock()
_requests = 0


def application(environ, start_response):
    global _requests
    with _lock:  # flup serves connections from several threads
        _requests += 1
        requests = _requests
    # WSGI strings carry the raw bytes as latin-1; turn them back into bytes.
    body = b"".join([
        b"Hello from Python WSGI\n",
        b"pid: %d\n" % os.getpid(),
        b"requests: %d\n" % requests,
        b"mode: " + (b"fastcgi" if FASTCGI else b"cgi") + b"\n",
        b"method: " + environ.get("REQUEST_METHOD", "").encode("latin-1") + b"\n",
        b"query: " + environ.get("QUERY_STRING", "").encode("latin-1") + b"\n",
    ])
    start_response("200 OK", [
        ("Content-Type", "text/plain; charset=utf-8"),
        ("Content-Length", str(len(body))),
    ])
    return [body]


def stdin_is_fastcgi_listener():
    """True iff fd 0 is a socket without a peer (a listening socket)."""
    try:
        fd = os.dup(0)
    except OSError:
        return False  # fd 0 closed
    try:
        sock = socket.socket(fileno=fd)
    except OSError:
        os.close(fd)
        return False  # ENOTSOCK: a pipe, a file or /dev/null
    try:
        sock.getpeername()
    except OSError as e:
        return e.errno == errno.ENOTCONN
    finally:
        sock.close()
    return False  # a connected socket: treat as CGI


def main():
    global FASTCGI
    FASTCGI = stdin_is_fastcgi_listener()
    if FASTCGI:
        try:
            from flup.server.fcgi import WSGIServer
        except ImportError:
            sys.stderr.write("wsgi_app.py: FastCGI mode needs flup "
                             "(python3 -m pip install flup)\n")
            sys.exit(1)
        WSGIServer(application).run()
    else:
        from wsgiref.handlers import CGIHandler
        CGIHandler().run(application)


if __name__ == "__main__":
    main()
