"""IBAN checks: electronic format, the country's registry length, and the mod-97 check digits."""

from __future__ import annotations

import pytest

from aisp.iban import IBAN_LENGTHS, is_valid_iban, normalise_iban


@pytest.mark.parametrize(
    "iban",
    [
        "FR7613807008043001965405158",  # the seed's Marc
        "FR7613807008043001965409135",  # Tech-N Co
        "DE89370400440532013000",
        "GB82WEST12345698765432",
        "BE68539007547034",
        "NO9386011117947",
    ],
)
def test_valid_ibans(iban):
    assert is_valid_iban(iban)


@pytest.mark.parametrize(
    ("iban", "why"),
    [
        ("FR7613807008043001965405159", "check digits"),
        ("FR761380700804300196540515", "length for FR"),
        ("XX7613807008043001965405158", "unknown country"),
        ("FR76 1380 7008 0430 0196 5405 158", "not normalised"),
        ("fr7613807008043001965405158", "not normalised"),
        ("FR7613807008043001965405!58", "character"),
        ("", "empty"),
    ],
)
def test_invalid_ibans(iban, why):
    assert not is_valid_iban(iban), why


def test_normalise_removes_spaces_and_upper_cases():
    assert normalise_iban(" fr76 1380 7008 0430 0196 5405 158 ") == "FR7613807008043001965405158"


def test_registry_lengths_are_plausible():
    assert all(15 <= length <= 34 for length in IBAN_LENGTHS.values())
    assert IBAN_LENGTHS["FR"] == 27 and IBAN_LENGTHS["MC"] == 27
