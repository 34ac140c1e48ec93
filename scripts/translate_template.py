"""Translate template.yaml with the SAM translator and write plain CloudFormation for cfn-lint.

cfn-lint on the SAM source misses some mistakes that only exist after the transform (an unsupported ``Runtime``,
a ``!Ref`` to a missing resource inside a SAM policy template, a broken event). Linting the translated output
catches them. No AWS call is made: managed policy names resolve from a fixed map.

Usage (from the repository root): python -m scripts.translate_template [TEMPLATE] [OUTPUT]
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

from scripts.cfn_yaml import load_template

# Parameters without a default need a value to translate; any syntactically valid value will do.
PLACEHOLDER_PARAMETERS = {
    "JwtIssuer": "https://issuer.example.com/",
    "JwtAudience": "aisp-gateway",
}

# The AWS-managed policies SAM attaches by itself (basic execution role, X-Ray for Tracing: Active).
MANAGED_POLICIES = {
    "AWSLambdaBasicExecutionRole": "arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole",
    "AWSXrayWriteOnlyAccess": "arn:aws:iam::aws:policy/AWSXrayWriteOnlyAccess",
    "AWSXRayDaemonWriteAccess": "arn:aws:iam::aws:policy/AWSXRayDaemonWriteAccess",
}


# Local code locations become S3 URIs, as `sam package` would make them, so the translator accepts them.
PACKAGED_PROPERTIES = {"AWS::Serverless::Function": "CodeUri", "AWS::Serverless::LayerVersion": "ContentUri"}


def as_packaged(template: dict[str, Any]) -> dict[str, Any]:
    """Return a copy of the template with local code paths replaced by placeholder S3 URIs."""
    packaged: dict[str, Any] = json.loads(json.dumps(template))
    for resource in packaged.get("Resources", {}).values():
        prop = PACKAGED_PROPERTIES.get(resource.get("Type", ""))
        properties = resource.get("Properties", {})
        if prop and isinstance(properties.get(prop), str) and not properties[prop].startswith("s3://"):
            properties[prop] = "s3://packaged-code/" + properties[prop].strip("/")
    return packaged


def translate(template: dict[str, Any]) -> dict[str, Any]:
    """Run the SAM transform offline and return the CloudFormation template.

    Needs ``aws-sam-translator``, which lives in the SAM CLI venv (.tools/sam), not in the app venv.
    """
    from samtranslator.translator.managed_policy_translator import ManagedPolicyLoader  # noqa: PLC0415
    from samtranslator.translator.transform import transform  # noqa: PLC0415

    class OfflinePolicyLoader(ManagedPolicyLoader):  # type: ignore[misc] # untyped outside the SAM venv
        """Answers managed policy look-ups from a fixed map instead of calling IAM."""

        def __init__(self) -> None:
            super().__init__(iam_client=None)

        def load(self) -> dict[str, str]:
            return dict(MANAGED_POLICIES)

    translated: dict[str, Any] = transform(as_packaged(template), dict(PLACEHOLDER_PARAMETERS), OfflinePolicyLoader())
    return translated


def main(argv: list[str]) -> int:
    # The translator needs a region for ARNs; the value does not matter offline (Paris, where BPCE is).
    os.environ.setdefault("AWS_DEFAULT_REGION", "eu-west-3")
    source = Path(argv[1]) if len(argv) > 1 else Path("template.yaml")
    target = Path(argv[2]) if len(argv) > 2 else Path(".aws-sam/translated.json")  # noqa: PLR2004
    from samtranslator.model.exceptions import InvalidDocumentException  # noqa: PLC0415 - SAM venv only

    try:
        translated = translate(load_template(source))
    except InvalidDocumentException as exc:
        for cause in exc.causes:
            print(f"{source}: SAM transform error: {cause.message}", file=sys.stderr)  # noqa: T201
        return 1
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(translated, indent=1, sort_keys=True), encoding="utf-8")
    print(f"translated {source} -> {target}")  # noqa: T201
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
