#!/usr/bin/env python3
"""The seed's WSGI example, for the report's Python ladder: one application that
answers "Greetings universe", served four ways from this one file:

  /cgi-bin/greetings.py    classic CGI, once per process (wsgiref's CGIHandler)
  /fcgi-bin/greetings.py   a FastCGI worker (flup), when fd 0 is a listening socket
  gunicorn greetings:application     a WSGI HTTP server
  (greetings_asgi.py is the same answer as an ASGI app, for uvicorn)
"""
import errno
import os
import socket
import sys

BODY = b"Greetings universe\n"


def application(environ, start_response):
    start_response("200 OK", [
        ("Content-Type", "text/plain; charset=utf-8"),
        ("Content-Length", str(len(BODY))),
    ])
    return [BODY]


def stdin_is_fastcgi_listener():
    """True iff fd 0 is a socket without a peer (a listening socket)."""
    try:
        fd = os.dup(0)
    except OSError:
        return False
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
    return False


if __name__ == "__main__":
    if stdin_is_fastcgi_listener():
        try:
            from flup.server.fcgi import WSGIServer
        except ImportError:
            sys.stderr.write("greetings.py: FastCGI mode needs flup\n")
            sys.exit(1)
        WSGIServer(application).run()
    else:
        from wsgiref.handlers import CGIHandler
        CGIHandler().run(application)
