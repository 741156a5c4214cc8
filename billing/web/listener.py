"""The listening socket of ``billing serve``, bound before the server starts (so that
``--port 0`` can say which port it got)."""

from __future__ import annotations

import socket

from billing.errors import BillingError

BACKLOG = 2048


def listen(host: str, port: int) -> socket.socket:
    """A TCP socket listening on ``host:port``.

    Made with ``IPPROTO_TCP`` spelled out: asyncio turns Nagle's algorithm off (TCP_NODELAY)
    only on sockets whose ``proto`` says TCP, and without that every small answer waits
    about 40 ms for the client's delayed ACK.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(BACKLOG)
    except OSError as exc:
        sock.close()
        raise BillingError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    return sock


def address(sock: socket.socket) -> str:
    """``http://host:port`` of a listening socket."""
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"
