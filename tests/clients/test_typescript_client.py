"""TypeScript types generated from docs/openapi.json by ``openapi-typescript``, used through ``openapi-fetch``: the
journey a fintech would write (``journey.ts``) type-checks with ``tsc --strict --noEmit`` (and the stricter options
below), while misuses of the same types do not, so the check is real: nullable fields, error unions and enums are
what the contract says."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.clients.conftest import DOCUMENT, NODE_BIN, ROOT, node_tool

pytestmark = pytest.mark.timeout(180)

HERE = Path(__file__).resolve().parent
TSCONFIG = {
    "compilerOptions": {
        "target": "ES2022",
        "module": "ESNext",
        "moduleResolution": "Bundler",
        "lib": ["ES2022", "DOM"],
        "strict": True,
        "noEmit": True,
        "noUncheckedIndexedAccess": True,
        "exactOptionalPropertyTypes": True,
        "noImplicitOverride": True,
        # The generated schema.d.ts and openapi-fetch's own types are checked too.
        "skipLibCheck": False,
    },
}
# Each line misuses the generated types; tsc must refuse every one, with this error code.
MISUSES = {
    "an IBAN may be null": ("const iban: string = account.iban;", "TS2322"),
    "API Gateway's answers have no code": ("const code: string = failure.code;", "TS2339"),
    "statuses are lower case": ('const active: boolean = summary.status === "ACTIVE";', "TS2367"),
    "next_cursor is null after the last page": ("const cursor: string = page.next_cursor;", "TS2322"),
    "the consent body takes IBANs or cards only": (
        "const body: SubmitConsent = { balances: [null], transactions: [], psu_identity: true, "
        "trusted_beneficiaries: false };",
        "TS2322",
    ),
    "the idempotency header is spelled as sent": (
        'const header: CreateHeaders = { "idempotency-key": "k" };',
        "TS2353",
    ),
}
MISUSE_PRELUDE = """import type { components, operations } from "./schema";
type S = components["schemas"];
type SubmitConsent = S["SubmitConsentRequest"];
type CreateHeaders = NonNullable<operations["createConnection"]["parameters"]["header"]>;
export function misuse(
  account: S["AccountItem"],
  failure: S["ErrorResponse"],
  summary: S["ConnectionSummary"],
  page: S["TransactionsResponse"],
): void {
"""


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with the generated schema.d.ts, the journey and a tsconfig; the pinned node_modules linked in."""
    generator = node_tool("openapi-typescript")
    node_tool("tsc")
    folder = tmp_path_factory.mktemp("typescript-client")
    subprocess.run(  # noqa: S603 - our pinned tool, fixed arguments
        [str(generator), str(DOCUMENT), "--output", str(folder / "schema.d.ts")],
        check=True,
        capture_output=True,
        timeout=120,
        cwd=ROOT,
    )
    shutil.copy(HERE / "journey.ts", folder / "journey.ts")
    (folder / "node_modules").symlink_to(ROOT / "node_modules", target_is_directory=True)
    return folder


def tsc(folder: Path, *files: str) -> subprocess.CompletedProcess[str]:
    (folder / "tsconfig.json").write_text(json.dumps({**TSCONFIG, "files": list(files)}), encoding="utf-8")
    return subprocess.run(  # noqa: S603 - our pinned tool, fixed arguments
        [str(NODE_BIN / "tsc"), "--strict", "--noEmit", "--pretty", "false", "-p", str(folder / "tsconfig.json")],
        capture_output=True,
        text=True,
        timeout=150,
        cwd=folder,
        check=False,
    )


def test_the_journey_type_checks_strictly_against_the_generated_types(project):
    # When tsc checks the fintech's journey against the types generated from the contract
    result = tsc(project, "journey.ts")

    # Then there is no error, and the types it used are the contract's (not `any`)
    assert result.returncode == 0, result.stdout + result.stderr
    schema = (project / "schema.d.ts").read_text(encoding="utf-8")
    assert 'ErrorResponse: components["schemas"]["Problem"] | components["schemas"]["GatewayError"];' in schema
    assert '"Idempotency-Key"?: string;' in schema
    assert not re.search(r"[:|]\s*any\b", schema)


def test_misusing_the_generated_types_fails_the_check(project):
    # Given code that misuses the contract's types, one misuse a line
    body = "".join(f"  {line} // {why}\n" for why, (line, _) in MISUSES.items())
    (project / "misuse.ts").write_text(f"{MISUSE_PRELUDE}{body}}}\n", encoding="utf-8")

    # When tsc checks it
    result = tsc(project, "misuse.ts")

    # Then each line is refused, for the expected reason, and nothing else is
    found = re.findall(r"misuse\.ts\((\d+),\d+\): error (TS\d+)", result.stdout)
    first = MISUSE_PRELUDE.count("\n") + 1
    expected = [(str(first + index), code) for index, (_, code) in enumerate(MISUSES.values())]
    assert result.returncode != 0
    assert found == expected, result.stdout
