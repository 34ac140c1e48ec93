"""The checkov gate (`make iac`) still runs every check and still fails: seeded bad resources go through the very same
target, and each skip in template.yaml reaches the resources that name it and no other."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from scripts.cfn_yaml import load_template
from tests.conftest import REPO_ROOT
from tests.infrastructure.conftest import needs_checkov

pytestmark = [pytest.mark.infrastructure, needs_checkov]

FUNCTIONS = (
    "ConnectFunction",
    "OAuthCallbackFunction",
    "ConsentsFunction",
    "AccountsFunction",
    "TokenRefresherFunction",
    "AccountSyncFunction",
    "AuditShipperFunction",
)
_FAILED = re.compile(r"^Check: (CKV2?_[A-Z]+_\d+):.*\n\s*FAILED for resource: [\w:]+\.(\w+)$", re.MULTILINE)
_SUMMARY = re.compile(r"Passed checks: (\d+), Failed checks: (\d+), Skipped checks: (\d+)")

# Resources added as a careless change would add them: nothing but what they need to exist.
SEEDED_RESOURCES = """\
  SeededFunction:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: functions/connect/

  SeededTable:
    Type: AWS::DynamoDB::Table
    Properties:
      BillingMode: PAY_PER_REQUEST
      AttributeDefinitions:
        - AttributeName: id
          AttributeType: S
      KeySchema:
        - AttributeName: id
          KeyType: HASH

"""


def _scan(template: Path) -> subprocess.CompletedProcess[str]:
    """`make iac` on ``template``: the target CI runs, with its flags, on another file."""
    command = ["make", "--no-print-directory", "-s", "iac", f"IAC_TEMPLATE={template}"]
    return subprocess.run(  # noqa: S603 - fixed arguments
        command, capture_output=True, text=True, timeout=300, check=False, cwd=REPO_ROOT
    )


def _summary(output: str) -> tuple[int, int, int]:
    """(passed, failed, skipped) from checkov's summary line."""
    match = _SUMMARY.search(output)
    assert match, output
    passed, failed, skipped = map(int, match.groups())
    return passed, failed, skipped


def _seed(text: str, old: str, new: str) -> str:
    assert old in text, f"the template no longer contains {old!r}: update the seed"
    return text.replace(old, new, 1)


def test_the_scan_fails_on_each_seeded_finding_and_names_it(tmp_path):
    # Given the template with bad resources and settings seeded in
    text = (REPO_ROOT / "template.yaml").read_text(encoding="utf-8")
    # the audit shipper, invoked asynchronously, loses its dead-letter queue
    dead_letter_queue = (
        "      DeadLetterQueue:\n        Type: SQS\n        TargetArn: !GetAtt AuditShipperDeadLetterQueue.Arn\n"
    )
    text = _seed(text, dead_letter_queue, "")
    # a function and a table that name no skip
    text = _seed(text, "\nResources:\n", "\nResources:\n" + SEEDED_RESOURCES)
    # every function on a deprecated runtime, through Globals
    text = _seed(
        text, "Globals:\n  Function:\n    Runtime: python3.13\n", "Globals:\n  Function:\n    Runtime: python3.7\n"
    )
    seeded = tmp_path / "template.yaml"
    seeded.write_text(text, encoding="utf-8")

    # When it goes through the checkov gate
    result = _scan(seeded)

    # Then the gate fails, naming each finding and nothing else
    assert result.returncode != 0, result.stdout
    failed = set(_FAILED.findall(result.stdout))
    assert failed == {
        ("CKV_AWS_116", "AuditShipperFunction"),
        # no skip reaches a resource that does not name it
        ("CKV_AWS_115", "SeededFunction"),
        ("CKV_AWS_116", "SeededFunction"),
        ("CKV_AWS_117", "SeededFunction"),
        ("CKV_AWS_173", "SeededFunction"),
        ("CKV_AWS_28", "SeededTable"),
        ("CKV_AWS_119", "SeededTable"),
        # Globals are scanned as part of every function
        *{("CKV_AWS_363", name) for name in (*FUNCTIONS, "SeededFunction")},
    }, result.stdout
    passed, failures, _ = _summary(result.stdout)
    assert (failures, passed > 0) == (len(failed), True)


def test_the_real_template_passes_with_exactly_the_skips_it_declares():
    # Every (resource, check) skip the template declares, as checkov reads them
    resources = load_template(REPO_ROOT / "template.yaml")["Resources"]
    declared = [
        (name, skip["id"])
        for name, resource in resources.items()
        for skip in resource.get("Metadata", {}).get("checkov", {}).get("skip", [])
    ]

    result = _scan(REPO_ROOT / "template.yaml")

    # No finding, and each declared skip applied once (none names a check that does not apply to its resource)
    assert result.returncode == 0, result.stdout + result.stderr
    _, failures, skipped = _summary(result.stdout)
    assert (failures, skipped) == (0, len(declared))
    assert len(set(declared)) == len(declared)
