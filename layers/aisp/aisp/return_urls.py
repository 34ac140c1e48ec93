"""Where the OAuth callback may send the user's browser back to: the ``return_url`` allowlist.

An allowlist entry is a URL prefix: ``https://app.example.com/connect/`` or a custom app scheme such as
``com.fintech.app:/oauth`` or ``fintechapp://connect``. A ``return_url`` matches an entry when, after
normalisation, its scheme, host and port are *equal* to the entry's and its path starts with the entry's path on a
segment boundary. Host comparison is exact, so ``https://app.example.com.evil.com/`` never matches
``https://app.example.com/``. Rejected outright: anything but https (http only towards a loopback host, and only
when an entry says so; a custom scheme only when an entry has it), userinfo (``user@host``), fragments, dot
segments (also percent-encoded), backslashes, whitespace, control or non-ASCII characters, and over-long URLs.
"""

from __future__ import annotations

import string
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Final
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit, urlunsplit

__all__ = ["AllowedPrefix", "append_query", "is_allowed", "parse_allowlist", "parse_allowlist_entry"]

MAX_URL_LENGTH: Final = 2048
LOOPBACK_HOSTS: Final = frozenset({"127.0.0.1", "localhost", "::1"})
_DEFAULT_PORTS: Final = {"https": 443, "http": 80}
_SCHEME_CHARS: Final = frozenset(string.ascii_lowercase + string.digits + "+.-")
# Schemes a browser or OS would execute, render or hand to another program: never a place to send a user back to.
_FORBIDDEN_SCHEMES: Final = frozenset(
    {
        "about",
        "blob",
        "chrome",
        "data",
        "file",
        "filesystem",
        "ftp",
        "intent",
        "javascript",
        "jar",
        "mailto",
        "sms",
        "tel",
        "view-source",
        "vbscript",
        "ws",
        "wss",
    }
)


@dataclass(frozen=True, slots=True)
class AllowedPrefix:
    """A normalised allowlist entry."""

    scheme: str
    host: str
    port: int | None
    path: str

    def matches(self, candidate: AllowedPrefix) -> bool:
        """Same origin, and ``candidate.path`` is under this entry's path (segment boundary)."""
        if (candidate.scheme, candidate.host, candidate.port) != (self.scheme, self.host, self.port):
            return False
        if self.path in {"", "/"} or candidate.path == self.path:
            return True
        prefix = self.path if self.path.endswith("/") else self.path + "/"
        return candidate.path.startswith(prefix)


def _check_text(url: str) -> None:
    if not url or len(url) > MAX_URL_LENGTH:
        raise ValueError("empty or too long")
    if any(char <= " " or char >= "\x7f" or char == "\\" for char in url):
        raise ValueError("whitespace, control, non-ASCII or backslash character")


def _check_path(path: str) -> None:
    decoded = unquote(path)
    if "\\" in decoded or any(segment in {".", ".."} for segment in decoded.split("/")):
        raise ValueError("dot segments or encoded separators not allowed")


def _scheme(raw: str) -> str:
    scheme = raw.lower()
    if not scheme or not set(scheme) <= _SCHEME_CHARS or not scheme[0].isalpha():
        raise ValueError("not an absolute URL")
    if scheme in _FORBIDDEN_SCHEMES:
        raise ValueError("scheme not allowed")
    return scheme


def _normalise(url: str) -> tuple[AllowedPrefix, str, str]:
    """Parse and normalise ``url``; return it with its query and fragment. Raises ``ValueError``."""
    _check_text(url)
    parts = urlsplit(url)
    scheme = _scheme(parts.scheme)
    if "@" in parts.netloc:
        raise ValueError("userinfo not allowed")
    try:
        port = parts.port
    except ValueError:
        raise ValueError("invalid port") from None
    host = (parts.hostname or "").lower()
    if port is not None and port == _DEFAULT_PORTS.get(scheme):
        port = None
    path = parts.path
    if scheme in _DEFAULT_PORTS:
        if not host:
            raise ValueError("host required")
        if scheme == "http" and host not in LOOPBACK_HOSTS:
            raise ValueError("http only towards a loopback host")
        path = path or "/"
    _check_path(path)
    return AllowedPrefix(scheme=scheme, host=host, port=port, path=path), parts.query, parts.fragment


def parse_allowlist_entry(entry: str) -> AllowedPrefix:
    """Validate and normalise one allowlist entry.

    Raises
    ------
    ValueError
        The entry is not an https URL (or http to a loopback host, or a custom app scheme) without query,
        fragment or userinfo.
    """
    prefix, query, fragment = _normalise(entry.strip())
    if query or fragment:
        raise ValueError("an allowlist entry has no query or fragment")
    return prefix


def parse_allowlist(entries: Iterable[str]) -> tuple[AllowedPrefix, ...]:
    """Validate every non-blank entry (see :func:`parse_allowlist_entry`); ``ValueError`` on the first bad one."""
    return tuple(parse_allowlist_entry(entry) for entry in entries if entry.strip())


def is_allowed(url: str, allowlist: Sequence[AllowedPrefix]) -> bool:
    """Whether ``url`` may be used as a ``return_url`` (see the module docstring for the rules)."""
    try:
        candidate, _query, fragment = _normalise(url)
    except ValueError:
        return False
    if fragment:
        return False
    return any(entry.matches(candidate) for entry in allowlist)


def append_query(url: str, params: Mapping[str, str]) -> str:
    """Return ``url`` with ``params`` set in its query; existing parameters of the same names are dropped."""
    parts = urlsplit(url)
    kept = [(key, value) for key, value in parse_qsl(parts.query, keep_blank_values=True) if key not in params]
    query = urlencode([*kept, *params.items()])
    return urlunsplit((parts.scheme, parts.netloc, parts.path, query, parts.fragment))
