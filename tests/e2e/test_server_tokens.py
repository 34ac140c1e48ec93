"""Server tokens of the local identity provider on a stack whose backend has its own audience
(``BackendJwtAudience``). Kept apart from test_stack.py: one stack runs per process at a time."""

from __future__ import annotations

import json

import pytest
import requests

from local.jwt import b64url_decode
from tests.reliability.stack_helpers import local_stack

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(60)]

TIMEOUT = 10


def test_server_tokens_carry_the_backend_audience_when_the_template_has_one(state_dir):
    # Given a stack whose backend has its own audience (a client-credentials app client)
    with local_stack(state_dir, BackendJwtAudience="aisp-backend") as stack:
        # When the backend gets a server token at /_local/token and asks for a user's quota
        issued = requests.get(
            f"{stack.api_url}/_local/token", params={"client": "backend", "scope": "aisp/unattended"}, timeout=TIMEOUT
        )
        token = issued.json()["access_token"]
        answer = requests.get(
            f"{stack.api_url}/v1/connections/13807/quota",
            headers={"Authorization": f"Bearer {token}", "Aisp-User": "marc"},
            timeout=TIMEOUT,
        )

        # Then the token names the backend's audience, which the API's authorizer accepts beside the app's
        (authorizer,) = stack.app.authorizers
        assert authorizer.audiences == ("aisp-local", "aisp-backend")
        claims = json.loads(b64url_decode(token.split(".")[1]))
        assert (claims["aud"], claims["sub"], claims["scope"]) == ("aisp-backend", "backend", "aisp/unattended")
        assert answer.status_code == 200, answer.text
        # And the user's own tokens keep the app's audience
        user = json.loads(b64url_decode(stack.token("marc").split(".")[1]))
        assert (user["aud"], "scope" in user) == ("aisp-local", False)
