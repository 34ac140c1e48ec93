"""A local identity provider: RS256 JWTs signed with a key generated at start, checked like the HTTP API does.

:class:`LocalIssuer` plays the fintech's identity provider (``GET /_local/token`` on the adapter): user tokens
(``?user=marc``: ``sub`` = the user) and the backend's server tokens (``?client=backend&scope=aisp/unattended``:
``sub`` = the client, ``scope`` = the template's server scopes, no user);
:class:`JwtValidator` plays the HTTP API JWT authorizer (``JwtConfiguration`` of ``template.yaml``): RS256 only, a
known ``kid``, the signature, ``iss``, ``aud`` (or ``client_id``), ``exp``, ``nbf`` and ``iat``. Claims reach the
function as strings, like API Gateway passes them (``"exp": "1795431600"``, arrays as ``"[a b]"``).

RS256 is small enough to implement on ``cryptography`` (RFC 7515 §3, RFC 7518 §3.3), so no JWT package is needed.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

ALGORITHM: Final = "RS256"
DEFAULT_TTL_SECONDS: Final = 3600
USER_PATTERN: Final = re.compile(r"^[A-Za-z0-9._@-]{1,64}$")
KEY_SIZE: Final = 2048


class JwtError(Exception):
    """A token the authorizer refuses; the message is the reason (safe to show: it never holds the token)."""


def b64url(data: bytes) -> str:
    """Base64url without padding (RFC 7515 §2)."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str) -> bytes:
    """Inverse of :func:`b64url`; raises :class:`JwtError` on malformed input."""
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        raise JwtError("the token is not valid base64url") from None


def _uint(value: int) -> str:
    return b64url(value.to_bytes((value.bit_length() + 7) // 8, "big"))


def public_jwk(key: rsa.RSAPublicKey) -> dict[str, str]:
    """The RSA public key as a JWK (``kty``, ``n``, ``e``)."""
    numbers = key.public_numbers()
    return {"kty": "RSA", "n": _uint(numbers.n), "e": _uint(numbers.e)}


def thumbprint(key: rsa.RSAPublicKey) -> str:
    """RFC 7638 JWK thumbprint (SHA-256), used as the ``kid``."""
    jwk = public_jwk(key)
    canonical = json.dumps({"e": jwk["e"], "kty": "RSA", "n": jwk["n"]}, separators=(",", ":"), sort_keys=True)
    return b64url(hashlib.sha256(canonical.encode()).digest())


def encode(claims: Mapping[str, Any], key: rsa.RSAPrivateKey, *, kid: str) -> str:
    """Sign ``claims`` as a compact RS256 JWS."""
    header = {"alg": ALGORITHM, "typ": "JWT", "kid": kid}
    signing_input = ".".join(
        b64url(json.dumps(part, separators=(",", ":")).encode()) for part in (header, dict(claims))
    )
    signature = key.sign(signing_input.encode("ascii"), padding.PKCS1v15(), hashes.SHA256())
    return f"{signing_input}.{b64url(signature)}"


def _json_part(text: str, what: str) -> dict[str, Any]:
    try:
        value = json.loads(b64url_decode(text))
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise JwtError(f"the token {what} is not JSON") from None
    if not isinstance(value, dict):
        raise JwtError(f"the token {what} is not a JSON object")
    return value


def _numeric(claims: Mapping[str, Any], name: str) -> float | None:
    value = claims.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise JwtError(f"the {name} claim is not a number")
    return float(value)


class JwtValidator:
    """The HTTP API JWT authorizer for one ``JwtConfiguration``.

    Parameters
    ----------
    issuer
        The exact ``iss`` required.
    audiences
        Accepted audiences: the token's ``aud`` (string or list) or, without ``aud``, its ``client_id`` must be
        one of them.
    keys
        ``kid`` → RSA public key (the issuer's JWKS).
    clock
        Current time in epoch seconds (tests move it).
    """

    def __init__(
        self,
        *,
        issuer: str,
        audiences: Sequence[str],
        keys: Mapping[str, rsa.RSAPublicKey],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.issuer = issuer
        self.audiences = tuple(audiences)
        self._keys = dict(keys)
        self._clock = clock

    def validate(self, token: str) -> dict[str, Any]:
        """Return the claims of a valid token.

        Raises
        ------
        JwtError
            With the reason: malformed, unknown key, bad signature, wrong issuer or audience, expired, not yet
            valid, issued in the future.
        """
        parts = token.split(".")
        if len(parts) != 3:  # noqa: PLR2004 - header.payload.signature
            raise JwtError("the token is not a compact JWS")
        header = _json_part(parts[0], "header")
        if header.get("alg") != ALGORITHM:
            raise JwtError("the token is not signed with RS256")
        key = self._keys.get(str(header.get("kid", "")))
        if key is None:
            raise JwtError("the token's kid is not a key of the issuer")
        try:
            key.verify(
                b64url_decode(parts[2]), f"{parts[0]}.{parts[1]}".encode("ascii"), padding.PKCS1v15(), hashes.SHA256()
            )
        except (InvalidSignature, UnicodeEncodeError):
            raise JwtError("the token signature is invalid") from None
        claims = _json_part(parts[1], "payload")
        self._check_claims(claims)
        return claims

    def _check_claims(self, claims: Mapping[str, Any]) -> None:
        if claims.get("iss") != self.issuer:
            raise JwtError("the token issuer is not accepted")
        audience = claims.get("aud", claims.get("client_id"))
        audiences = audience if isinstance(audience, list) else [audience]
        if not any(isinstance(a, str) and a in self.audiences for a in audiences):
            raise JwtError("the token audience is not accepted")
        now = self._clock()
        expires = _numeric(claims, "exp")
        if expires is None:
            raise JwtError("the token has no exp claim")
        if now >= expires:
            raise JwtError("the token has expired")
        not_before = _numeric(claims, "nbf")
        if not_before is not None and now < not_before:
            raise JwtError("the token is not valid yet")
        issued = _numeric(claims, "iat")
        if issued is not None and issued > now:
            raise JwtError("the token was issued in the future")


def claim_strings(claims: Mapping[str, Any]) -> dict[str, str]:
    """Claims as API Gateway passes them to the function: every value a string, arrays as ``"[a b]"``."""

    def text(value: Any) -> str:
        if isinstance(value, str):
            return value
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, list):
            return "[" + " ".join(text(item) for item in value) + "]"
        if isinstance(value, int | float):
            return str(value)
        return json.dumps(value, separators=(",", ":"))

    return {name: text(value) for name, value in claims.items()}


def token_scopes(claims: Mapping[str, Any]) -> list[str]:
    """The space-separated ``scope`` (or ``scp``) claim as a list."""
    raw = claims.get("scope", claims.get("scp", ""))
    items = raw if isinstance(raw, list) else str(raw).split()
    return [str(item) for item in items if str(item)]


class LocalIssuer:
    """Issues RS256 tokens for local users with a key generated at start (never written to disk).

    Parameters
    ----------
    issuer
        The ``iss`` claim (the template's ``JwtIssuer``).
    audience
        The ``aud`` claim (the first of the template's ``JwtAudience``).
    ttl_seconds
        Lifetime of issued tokens.
    key
        The signing key (a new 2048-bit key when omitted).
    clock
        Current time in epoch seconds.
    server_scopes
        The scopes a server token may carry (the template's ``UnattendedScope`` and ``AttendedProxyScope``); none:
        no server token is issued.
    server_audience
        The ``aud`` of server tokens (the template's ``BackendJwtAudience``), default ``audience``.
    """

    def __init__(  # noqa: PLR0913 - the identity provider's settings
        self,
        *,
        issuer: str,
        audience: str,
        ttl_seconds: int = DEFAULT_TTL_SECONDS,
        key: rsa.RSAPrivateKey | None = None,
        clock: Callable[[], float] = time.time,
        server_scopes: Sequence[str] = (),
        server_audience: str | None = None,
    ) -> None:
        self.issuer = issuer
        self.audience = audience
        self.ttl_seconds = ttl_seconds
        self.server_scopes = tuple(dict.fromkeys(scope for scope in server_scopes if scope))
        self.server_audience = server_audience or audience
        self._key = key or rsa.generate_private_key(public_exponent=65537, key_size=KEY_SIZE)
        self.kid = thumbprint(self._key.public_key())
        self._clock = clock

    @property
    def public_keys(self) -> dict[str, rsa.RSAPublicKey]:
        """``kid`` → public key, for :class:`JwtValidator`."""
        return {self.kid: self._key.public_key()}

    def jwks(self) -> dict[str, Any]:
        """The JSON Web Key Set an authorizer would fetch."""
        return {"keys": [{**public_jwk(self._key.public_key()), "kid": self.kid, "use": "sig", "alg": ALGORITHM}]}

    def issue(self, user: str, *, ttl_seconds: int | None = None, extra_claims: Mapping[str, Any] | None = None) -> str:
        """A token whose ``sub`` is ``user``.

        Raises
        ------
        ValueError
            ``user`` is not 1 to 64 characters of ``[A-Za-z0-9._@-]``.
        """
        if not USER_PATTERN.fullmatch(user):
            raise ValueError("user must be 1 to 64 characters among A-Z a-z 0-9 . _ @ -")
        now = int(self._clock())
        claims: dict[str, Any] = {
            "iss": self.issuer,
            "aud": self.audience,
            "sub": user,
            "iat": now,
            "nbf": now,
            "exp": now + (self.ttl_seconds if ttl_seconds is None else ttl_seconds),
            **(extra_claims or {}),
        }
        return encode(claims, self._key, kid=self.kid)

    def issue_server(self, client: str, scopes: Sequence[str], *, ttl_seconds: int | None = None) -> str:
        """A server token of the fintech's backend (an OAuth client-credentials grant): ``sub`` = ``client``, the
        ``scope`` claim = ``scopes``, no user (the backend names the user it acts for in ``Aisp-User``).

        Raises
        ------
        ValueError
            ``client`` is not 1 to 64 characters of ``[A-Za-z0-9._@-]``, no scope, or a scope that is not one of
            :attr:`server_scopes` (the message lists them).
        """
        if not USER_PATTERN.fullmatch(client):
            raise ValueError("client must be 1 to 64 characters among A-Z a-z 0-9 . _ @ -")
        if not self.server_scopes:
            raise ValueError("this API declares no server scope (UnattendedScope): no server token")
        known = " or ".join(self.server_scopes)
        if not scopes:
            raise ValueError(f"a server token needs a scope: {known}")
        unknown = [scope for scope in scopes if scope not in self.server_scopes]
        if unknown:
            raise ValueError(f"unknown scope {unknown[0][:64]!r}: a server token's scope is {known}")
        claims = {"aud": self.server_audience, "scope": " ".join(dict.fromkeys(scopes))}
        return self.issue(client, ttl_seconds=ttl_seconds, extra_claims=claims)
