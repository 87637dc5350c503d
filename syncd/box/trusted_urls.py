"""Which URLs may receive the bearer token (issue 11 item 7).

Box hands out absolute URLs (the preflight's ``upload_url``, an upload session's
``session_endpoints``), and resume state keeps them for days. The token follows
them only when:

- the scheme is ``https``; plain ``http`` only when every configured Box URL is a
  loopback one (the emulator, a local proxy: the token is then only ever good on
  this machine), and
- the host is Box's (``box.com``, ``boxcloud.com`` and their sub-domains, e.g. a
  regional ``upload-las.app.box.com``) or the host of a configured Box URL.

Anything else raises :class:`UntrustedURL` before a byte is sent. The transport
checks every send, so a URL from any source is covered, and the upload layer checks
session URLs as soon as it gets them, so a bad one is never kept for a resume.
"""

from __future__ import annotations

import ipaddress
import threading
from urllib.parse import urlsplit

from .errors import BoxError, ErrorClass, redact_url

#: Box's own domains: a server-supplied URL on one of these (or below) may get the token over https.
BOX_DOMAINS = ("box.com", "boxcloud.com")


def is_loopback(url: str) -> bool:
    """Whether ``url`` names this machine (the only place plain HTTP / no TLS check is allowed)."""
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def is_box_host(host: str) -> bool:
    """``host`` is one of Box's domains or below one."""
    host = host.lower().rstrip(".")
    return any(host == domain or host.endswith("." + domain) for domain in BOX_DOMAINS)


class UntrustedURL(BoxError):
    """A URL that must not receive the bearer token (see :mod:`syncd.box.trusted_urls`).

    PERMANENT_CONFIG: nothing sent there will work until Box stops naming it or the
    configuration names its host.
    """

    error_class = ErrorClass.PERMANENT_CONFIG

    def __init__(self, url: str, reason: str) -> None:
        self.url = redact_url(url)
        self.reason = reason
        super().__init__(f"refusing to send the Box token to {self.url}: {reason}")


class TrustedURLs:
    """The configured Box URLs, and the rule deciding which other URLs may get the token."""

    def __init__(self, *configured: str) -> None:
        self._hosts: set[str] = set()
        self._all_loopback = True
        self._lock = threading.Lock()
        self.trust(*configured)

    def trust(self, *urls: str) -> None:
        """Add configured Box URLs (the API, upload and token URLs a user chose)."""
        with self._lock:
            for url in urls:
                host = urlsplit(url).hostname
                if host:
                    self._hosts.add(host.lower())
                    self._all_loopback = self._all_loopback and is_loopback(url)

    def problem(self, url: str) -> str | None:
        """Why ``url`` must not get the token, or None when it may.

        Raises ValueError for a string that is not an absolute URL (a caller's mistake).
        """
        try:
            parts = urlsplit(url)
            host = (parts.hostname or "").lower()
        except ValueError:
            host = ""
        if not host:
            raise ValueError(f"bad request to {redact_url(url)}: not an absolute URL")
        with self._lock:
            configured, all_loopback = host in self._hosts, self._all_loopback and bool(self._hosts)
        if parts.scheme == "http":
            if not all_loopback:
                return "it is plain http (allowed only when every configured Box URL is a loopback one)"
        elif parts.scheme != "https":
            return f"scheme {parts.scheme!r} is not https"
        if not (configured or is_box_host(host)):
            return (f"host {host!r} is neither Box's ({', '.join(BOX_DOMAINS)}) nor a configured Box URL's; "
                    "if it is a proxy in front of Box, configure it as box.api_url/box.upload_url")
        return None

    def check(self, url: str) -> str:
        """``url`` when it may get the token; else :class:`UntrustedURL` (ValueError when it is no URL)."""
        reason = self.problem(url)
        if reason is not None:
            raise UntrustedURL(url, reason)
        return url
