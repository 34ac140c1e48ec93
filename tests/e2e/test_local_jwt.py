"""The adapter checks JWTs like the HTTP API JWT authorizer; /_local/token issues them for local users."""

from __future__ import annotations

import time

import pytest
import requests
from cryptography.hazmat.primitives.asymmetric import rsa

from local.jwt import JwtError, JwtValidator, LocalIssuer, b64url, encode
from tests.e2e.conftest import AUDIENCE, ISSUER

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(60)]

TIMEOUT = 10


def _get(api, path: str, token: str | None = None, scheme: str = "Bearer ") -> requests.Response:
    headers = {"Authorization": f"{scheme}{token}"} if token is not None else {}
    return requests.get(f"{api.url}{path}", headers=headers, timeout=TIMEOUT)


@pytest.fixture(scope="module")
def other_key():
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _claims(**overrides):
    now = int(time.time())
    return {"iss": ISSUER, "aud": AUDIENCE, "sub": "marc", "iat": now, "exp": now + 300, **overrides}


def test_missing_token_is_401(echo_api):
    response = _get(echo_api, "/items/1")

    assert response.status_code == 401
    assert response.json() == {"message": "Unauthorized"}
    assert response.headers["www-authenticate"] == "Bearer"


@pytest.mark.parametrize(
    ("case", "reason"),
    [
        ("expired", "the token has expired"),
        ("wrong_audience", "the token audience is not accepted"),
        ("wrong_issuer", "the token issuer is not accepted"),
        ("bad_signature", "the token signature is invalid"),
        ("tampered", "the token signature is invalid"),
        ("not_yet_valid", "the token is not valid yet"),
        ("unknown_kid", "the token's kid is not a key of the issuer"),
        ("alg_none", "the token is not signed with RS256"),
        ("garbage", "the token is not a compact JWS"),
    ],
)
def test_invalid_token_is_401(echo_api, signing_key, other_key, case, reason):
    # Given a token that the HTTP API authorizer would refuse
    kid = echo_api.issuer.kid
    tokens = {
        "expired": lambda: echo_api.issuer.issue("marc", ttl_seconds=-10),
        "wrong_audience": lambda: encode(_claims(aud="someone-else"), signing_key, kid=kid),
        "wrong_issuer": lambda: encode(_claims(iss="https://evil.example/"), signing_key, kid=kid),
        "bad_signature": lambda: encode(_claims(), other_key, kid=kid),
        "tampered": lambda: _tamper(echo_api.issuer.issue("marc")),
        "not_yet_valid": lambda: encode(_claims(nbf=int(time.time()) + 120), signing_key, kid=kid),
        "unknown_kid": lambda: encode(_claims(), signing_key, kid="another-kid"),
        "alg_none": lambda: b64url(b'{"alg":"none","kid":"' + kid.encode() + b'"}') + "." + b64url(b"{}") + ".",
        "garbage": lambda: "not-a-jwt",
    }

    # When it is presented
    response = _get(echo_api, "/items/1", tokens[case]())

    # Then the request never reaches the function
    assert response.status_code == 401
    assert response.json() == {"message": "Unauthorized"}
    assert f'error_description="{reason}"' in response.headers["www-authenticate"]


def _tamper(token: str) -> str:
    header, _payload, signature = token.split(".")
    return ".".join((header, b64url(b'{"sub":"admin"}'), signature))


def test_valid_token_reaches_the_function_with_its_claims(echo_api):
    # Given a token from the local issuer
    token = echo_api.issuer.issue("user.name@example-1")

    # When it is presented, with or without the Bearer scheme (API Gateway accepts both)
    for scheme in ("Bearer ", "bearer ", ""):
        response = _get(echo_api, "/items/1", token, scheme)

        # Then the function sees the claims as strings
        assert response.status_code == 200
        claims = response.json()["event"]["requestContext"]["authorizer"]["jwt"]["claims"]
        assert claims["sub"] == "user.name@example-1"
        assert claims["exp"] == str(int(claims["iat"]) + echo_api.issuer.ttl_seconds)


def test_route_scopes_are_enforced(echo_api):
    # Given a route with AuthorizationScopes [accounts.read]
    without = echo_api.issuer.issue("marc")
    with_scope = echo_api.issuer.issue("marc", extra_claims={"scope": "openid accounts.read"})

    # When / Then
    assert _get(echo_api, "/scoped", without).status_code == 403
    assert _get(echo_api, "/scoped", with_scope).status_code == 200


def test_local_token_endpoint_issues_tokens_the_api_accepts(echo_api):
    # When a token is asked for a user
    response = requests.get(f"{echo_api.url}/_local/token", params={"user": "marc"}, timeout=TIMEOUT)

    # Then it is a bearer token the authorizer accepts, for that user
    assert response.status_code == 200
    assert response.headers["cache-control"] == "no-store"
    body = response.json()
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == 3600
    event = _get(echo_api, "/items/1", body["access_token"]).json()["event"]
    assert event["requestContext"]["authorizer"]["jwt"]["claims"]["sub"] == "marc"


@pytest.mark.parametrize("query", ["", "user=", "user=a%20b", "user=" + "x" * 65, "user=%C3%A9", "user=a&user=b"])
def test_local_token_endpoint_validates_the_user(echo_api, query):
    response = requests.get(f"{echo_api.url}/_local/token?{query}", timeout=TIMEOUT)

    assert response.status_code == 400
    assert "user" in response.json()["message"]


def test_local_token_endpoint_issues_server_tokens(echo_api):
    # When the fintech's backend asks for a server token (a client-credentials grant), with one scope or both
    for query, scopes in (
        ("client=backend&scope=aisp/unattended", ["aisp/unattended"]),
        ("client=backend&scope=aisp/unattended%20aisp/attended-proxy", ["aisp/unattended", "aisp/attended-proxy"]),
        (
            "client=batch-job&scope=aisp/attended-proxy&scope=aisp/unattended",
            ["aisp/attended-proxy", "aisp/unattended"],
        ),
    ):
        response = requests.get(f"{echo_api.url}/_local/token?{query}", timeout=TIMEOUT)
        assert response.status_code == 200, response.text
        assert response.headers["cache-control"] == "no-store"
        body = response.json()
        assert (body["token_type"], body["expires_in"]) == ("Bearer", 3600)

        # Then the authorizer accepts it: its sub is the client (no user), its scope claim the scopes, which
        # API Gateway also passes parsed
        authorizer = _get(echo_api, "/items/1", body["access_token"]).json()["event"]["requestContext"]["authorizer"]
        client = query.split("&", 1)[0].removeprefix("client=")
        assert authorizer["jwt"]["claims"]["sub"] == client
        assert authorizer["jwt"]["claims"]["scope"] == " ".join(scopes)
        assert authorizer["jwt"]["claims"]["aud"] == AUDIENCE
        assert authorizer["jwt"]["scopes"] == scopes


@pytest.mark.parametrize(
    ("query", "reason"),
    [
        (
            "user=marc&client=backend&scope=aisp/unattended",
            "a user (a user token) or a client (a server token), not both",
        ),
        ("client=backend", "a server token needs a scope: aisp/unattended or aisp/attended-proxy"),
        ("client=backend&scope=", "a server token needs a scope"),
        ("client=backend&scope=admin", "unknown scope 'admin': a server token's scope is aisp/unattended or"),
        ("client=backend&scope=aisp/unattended%20openid", "unknown scope 'openid'"),
        ("client=a&client=b&scope=aisp/unattended", "give exactly one client"),
        ("client=a%20b&scope=aisp/unattended", "client must be 1 to 64 characters"),
        ("client=" + "x" * 65 + "&scope=aisp/unattended", "client must be 1 to 64 characters"),
        ("user=marc&scope=aisp/unattended", "scope is for server tokens (client=<id>): a user token has no scope"),
        ("scope=aisp/unattended", "give exactly one user: /_local/token?user=<id> (a user token), or a client"),
    ],
)
def test_local_token_endpoint_refuses_what_makes_no_sense(echo_api, query, reason):
    # When the token endpoint is asked for a token no identity provider would issue
    response = requests.get(f"{echo_api.url}/_local/token?{query}", timeout=TIMEOUT)

    # Then it answers 400 saying what is wrong, and no token
    assert response.status_code == 400
    assert reason in response.json()["message"]
    assert "access_token" not in response.json()


def test_server_tokens_need_server_scopes_declared(signing_key):
    # Given an issuer for a template that declares no server scope
    issuer = LocalIssuer(issuer=ISSUER, audience=AUDIENCE, key=signing_key)

    # Then it issues no server token, and says why
    with pytest.raises(ValueError, match="declares no server scope"):
        issuer.issue_server("backend", ["aisp/unattended"])


def test_server_tokens_carry_the_backends_own_audience(signing_key):
    # Given the backend's audience (BackendJwtAudience), which the authorizer accepts beside the app's
    issuer = LocalIssuer(
        issuer=ISSUER,
        audience=AUDIENCE,
        key=signing_key,
        server_scopes=["aisp/unattended"],
        server_audience="aisp-backend",
    )
    validator = JwtValidator(issuer=ISSUER, audiences=[AUDIENCE, "aisp-backend"], keys=issuer.public_keys)

    # When it issues a server token and a user token
    server = validator.validate(issuer.issue_server("backend", ["aisp/unattended"]))
    user = validator.validate(issuer.issue("marc"))

    # Then the server token has the backend's audience, the user's token the app's
    assert (server["aud"], server["sub"], server["scope"]) == ("aisp-backend", "backend", "aisp/unattended")
    assert (user["aud"], user["sub"], "scope" in user) == (AUDIENCE, "marc", False)


def test_jwks_publishes_the_signing_key(echo_api):
    # When the key set is fetched
    jwks = requests.get(f"{echo_api.url}/_local/jwks.json", timeout=TIMEOUT).json()

    # Then it holds the issuer's key under its kid (RFC 7638 thumbprint)
    (key,) = jwks["keys"]
    assert key["kid"] == echo_api.issuer.kid
    assert key["kty"] == "RSA"
    assert key["alg"] == "RS256"


def test_validator_checks_time_claims_against_its_clock(signing_key):
    # Given an issuer and a validator sharing a clock
    now = [1_800_000_000.0]
    issuer = LocalIssuer(issuer=ISSUER, audience=AUDIENCE, key=signing_key, ttl_seconds=60, clock=lambda: now[0])
    validator = JwtValidator(issuer=ISSUER, audiences=[AUDIENCE], keys=issuer.public_keys, clock=lambda: now[0])
    token = issuer.issue("marc")

    # When time passes
    assert validator.validate(token)["sub"] == "marc"
    now[0] += 60

    # Then the token expires exactly at exp
    with pytest.raises(JwtError, match="expired"):
        validator.validate(token)


def test_audience_list_and_client_id_are_accepted(signing_key):
    # Given the authorizer's audience rule (aud, else client_id)
    issuer = LocalIssuer(issuer=ISSUER, audience=AUDIENCE, key=signing_key)
    validator = JwtValidator(issuer=ISSUER, audiences=["other", AUDIENCE], keys=issuer.public_keys)
    kid = issuer.kid

    # When / Then
    assert validator.validate(encode(_claims(aud=["x", AUDIENCE]), signing_key, kid=kid))
    claims = _claims(client_id=AUDIENCE)
    del claims["aud"]
    assert validator.validate(encode(claims, signing_key, kid=kid))
    with pytest.raises(JwtError, match="exp"):
        validator.validate(encode({k: v for k, v in _claims().items() if k != "exp"}, signing_key, kid=kid))
