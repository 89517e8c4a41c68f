"""Outbound HTTP that refuses this machine's own addresses, for webhook deliveries.

Loopback and link-local addresses reach this machine's own services (Redis, the database, a
cloud's metadata service at 169.254.169.254) with a request an admin controls; private ranges
stay allowed, since self-hosted receivers such as JIRA live there. WEBHOOK_ALLOW_LOCAL=1 lifts
the refusal (a receiver on this machine).
"""
from __future__ import annotations

import http.client
import ipaddress
import socket
import urllib.request

from flask import current_app


def _ip(address: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    ip = ipaddress.ip_address(address.split("%", 1)[0])  # fe80::1%eth0: the scope does not matter
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped  # ::ffff:127.0.0.1 is 127.0.0.1
    return ip


def local_address(address: str) -> bool:
    """Whether an IP address is loopback, link-local or unspecified (0.0.0.0 and :: reach this host)."""
    ip = _ip(address)
    return ip.is_loopback or ip.is_link_local or ip.is_unspecified


def address_kind(address: str) -> str:
    ip = _ip(address)
    return "a loopback" if ip.is_loopback else "a link-local" if ip.is_link_local else "an unspecified (0.0.0.0)"


def literal_address(host: str) -> str | None:
    """The IP address a URL's host spells out, including the old IPv4 forms (127.1, 2130706433)
    that resolvers accept, or None for a name."""
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        pass
    try:
        return socket.inet_ntoa(socket.inet_aton(host))
    except OSError:
        return None


class LocalAddressRefused(OSError):
    """A delivery's host resolved to a local address: nothing was sent."""


def _connect_checked(address: tuple[str, int], timeout: object = socket._GLOBAL_DEFAULT_TIMEOUT,
                     source_address: tuple[str, int] | None = None, *, allow_local: bool) -> socket.socket:
    """socket.create_connection that resolves the host once, judges every address it resolves
    to, and connects to those very addresses: looking the name up again to connect could answer
    otherwise (DNS rebinding)."""
    host, port = address
    resolved = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    local = [sockaddr[0] for *_, sockaddr in resolved if local_address(sockaddr[0])]
    if local and not allow_local:
        raise LocalAddressRefused(f"{host} resolves to {local[0]}, {address_kind(local[0])} address; webhooks are not "
                                  "sent to this machine or its link-local network unless WEBHOOK_ALLOW_LOCAL=1 "
                                  "is set")
    error: OSError | None = None
    for family, kind, protocol, _name, sockaddr in resolved:
        sock = socket.socket(family, kind, protocol)
        try:
            if timeout is not socket._GLOBAL_DEFAULT_TIMEOUT:
                sock.settimeout(timeout)
            if source_address:
                sock.bind(source_address)
            sock.connect(sockaddr)
            return sock
        except OSError as failed:
            sock.close()
            error = failed
    raise error or OSError(f"{host} resolves to no address")


class CheckedHTTPConnection(http.client.HTTPConnection):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        allow = current_app.config["WEBHOOK_ALLOW_LOCAL"]
        self._create_connection = lambda *a: _connect_checked(*a, allow_local=allow)


class CheckedHTTPSConnection(http.client.HTTPSConnection):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        allow = current_app.config["WEBHOOK_ALLOW_LOCAL"]
        self._create_connection = lambda *a: _connect_checked(*a, allow_local=allow)


class _CheckedHTTPHandler(urllib.request.HTTPHandler):
    def http_open(self, req):
        return self.do_open(CheckedHTTPConnection, req)


class _CheckedHTTPSHandler(urllib.request.HTTPSHandler):
    def https_open(self, req):
        return self.do_open(CheckedHTTPSConnection, req, context=self._context)


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):  # a redirect is an answer, not a success
        return None


# The opener deliveries are sent with: checked connections, and a redirect is not followed.
opener = urllib.request.build_opener(_NoRedirects, _CheckedHTTPHandler, _CheckedHTTPSHandler)
