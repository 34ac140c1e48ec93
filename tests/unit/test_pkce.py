"""PKCE helpers: RFC 7636's own example, and the verifier sealed with its state."""

from __future__ import annotations

import pytest

from aisp.errors import TokenIntegrityError
from aisp.pkce import code_challenge, new_code_verifier, open_verifier, seal_verifier


def test_the_challenge_is_rfc_7636_appendix_b() -> None:
    verifier, challenge = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk", "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"

    assert code_challenge(verifier) == challenge


def test_new_verifiers_are_valid_and_distinct() -> None:
    verifiers = {new_code_verifier() for _ in range(50)}

    assert len(verifiers) == 50
    assert all(43 <= len(v) <= 128 and code_challenge(v) for v in verifiers)


@pytest.mark.parametrize("bad", ["short", "x" * 129, "a" * 42 + "/", "é" * 43])
def test_an_invalid_verifier_has_no_challenge(bad: str) -> None:
    with pytest.raises(ValueError, match="43-128"):
        code_challenge(bad)


def test_a_sealed_verifier_opens_with_its_state_only() -> None:
    # Given a verifier sealed with a state
    verifier = new_code_verifier()
    blob = seal_verifier(verifier, state="the-state")

    # Then the blob does not carry it in clear, opens with that state, and with no other
    assert verifier.encode() not in blob
    assert open_verifier(blob, state="the-state") == verifier
    with pytest.raises(TokenIntegrityError):
        open_verifier(blob, state="another-state")


@pytest.mark.parametrize("damage", [lambda b: b[:-1], lambda b: b"\x02" + b[1:], lambda b: b[:5], lambda b: b""])
def test_a_damaged_blob_does_not_open(damage) -> None:
    blob = seal_verifier(new_code_verifier(), state="s")

    with pytest.raises(TokenIntegrityError):
        open_verifier(damage(blob), state="s")
