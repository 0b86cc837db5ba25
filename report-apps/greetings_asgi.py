"""greetings.py's answer as an ASGI application, for uvicorn."""

import asyncio.base_events
import socket

BODY = b"Greetings universe\n"


async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    await send({
        "type": "http.response.start",
        "status": 200,
        "headers": [
            (b"content-type", b"text/plain; charset=utf-8"),
            (b"content-length", str(len(BODY)).encode()),
        ],
    })
    await send({"type": "http.response.body", "body": BODY})


# `uvicorn --workers N` binds its listening socket as socket.socket(family), whose
# protocol number reads 0, and asyncio only sets TCP_NODELAY on connections whose
# protocol reads IPPROTO_TCP. Without it the body (a second write) waits behind the
# head for the client's delayed ACK: about 40 ms per keep-alive request, which would
# measure a timer, not uvicorn. Set it on every TCP connection, as a single-process
# uvicorn (which binds through getaddrinfo) already does.
def _set_nodelay(sock):
    if sock.family in (socket.AF_INET, socket.AF_INET6) and sock.type == socket.SOCK_STREAM:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


asyncio.base_events._set_nodelay = _set_nodelay
