"""The official STET OpenAPI files as a test oracle: AIS extracts, request validation, response generation.

The extracts in ``tests/fixtures/stet/`` (see its ``SOURCE.md``) keep the AISP operations of STET 1.4.0.47
(Swagger 2.0) and 1.5.0.43 (OpenAPI 3.0.1) with every component they reference, examples included, prose dropped.
:func:`extract` rebuilds them from ``../shared/reference/stet/`` when that folder is beside the repository (a drift
test compares); ``python -m tests.stet_contract`` rewrites them.

:class:`Spec` answers "is this request what the spec of the bank's version allows?" (operation, path parameters,
query parameters, headers, Accept, Content-Type, body) and gives each operation's response schema, from which
:func:`from_schema` builds a Hypothesis strategy of conforming bodies.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, unquote, urlsplit

import jsonschema
import requests
import yaml
from hypothesis import strategies as st
from requests.adapters import BaseAdapter

if TYPE_CHECKING:
    from aisp.stet import BankClient

FIXTURES = Path(__file__).parent / "fixtures" / "stet"
REFERENCE_DIR = Path(
    os.environ.get("STET_REFERENCE_DIR", Path(__file__).resolve().parents[2] / "shared/reference/stet")
)
SOURCES = {
    "1.4.0.47": ("stet-psd2-api-1.4.0.47.swagger.yaml", "stet-1.4.0.47-ais.json"),
    "1.5.0.43": ("stet-ais-pis-1.5.0.json", "stet-1.5.0.43-ais.json"),
}
AIS_TAG = "AISP"
_PROSE = {"description", "title"}
_HTTP_METHODS = ("get", "put", "post", "delete", "patch")

Json = Any


# ----------------------------------------------------------------------------------------------------------------
# Extraction
# ----------------------------------------------------------------------------------------------------------------


def _strip(node: Json) -> Json:
    """Drop prose and ``x-`` annotations (never the names under ``properties``)."""
    if isinstance(node, dict):
        return {
            str(key): ({name: _strip(sub) for name, sub in value.items()} if key == "properties" else _strip(value))
            for key, value in node.items()
            if key not in _PROSE and not str(key).lower().startswith("x-")
        }
    if isinstance(node, list):
        return [_strip(item) for item in node]
    return node


def _refs(node: Json) -> Iterator[str]:
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/"):
            yield ref
        for value in node.values():
            yield from _refs(value)
    elif isinstance(node, list):
        for item in node:
            yield from _refs(item)


def _pointer(ref: str) -> list[str]:
    return [part.replace("~1", "/").replace("~0", "~") for part in ref[2:].split("/")]


def resolve(document: Json, ref: str) -> Json:
    """The node a local ``$ref`` points to."""
    node = document
    for part in _pointer(ref):
        node = node[part]
    return node


def extract(spec: Json) -> Json:
    """The AISP operations of ``spec`` and the transitive closure of what they reference, without prose."""
    paths: dict[str, Json] = {}
    for path, item in spec["paths"].items():
        ops = {m: op for m, op in item.items() if m in _HTTP_METHODS and AIS_TAG in op.get("tags", ())}
        if ops:
            paths[path] = ops
    keep = ("swagger", "openapi", "basePath", "servers", "consumes", "produces", "securityDefinitions")
    document: Json = {key: spec[key] for key in keep if key in spec}
    document["info"] = {key: spec["info"][key] for key in ("title", "version", "license", "contact")}
    document["paths"] = paths
    if "components" in spec:
        document["components"] = {"securitySchemes": spec["components"].get("securitySchemes", {})}
    todo, seen = list(_refs(paths)), set()
    while todo:
        ref = todo.pop()
        if ref in seen:
            continue
        seen.add(ref)
        node = resolve(spec, ref)
        target = document
        *parents, name = _pointer(ref)
        for part in parents:
            target = target.setdefault(part, {})
        target[name] = node
        todo.extend(_refs(node))
    return _strip(document)


def load_reference(version: str) -> Json:
    """The original file of ``version`` from ``shared/reference/stet`` (tests skip when it is absent)."""
    raw = (REFERENCE_DIR / SOURCES[version][0]).read_bytes()
    return yaml.safe_load(raw) if raw.lstrip()[:1] != b"{" else json.loads(raw)


def reference_sha256(version: str) -> str:
    return hashlib.sha256((REFERENCE_DIR / SOURCES[version][0]).read_bytes()).hexdigest()


def load_extract(version: str) -> Json:
    return json.loads((FIXTURES / SOURCES[version][1]).read_text(encoding="utf-8"))


# ----------------------------------------------------------------------------------------------------------------
# Request validation
# ----------------------------------------------------------------------------------------------------------------

_FORMATS = jsonschema.FormatChecker(())


@_FORMATS.checks("date-time", raises=ValueError)
def _is_date_time(value: object) -> bool:
    """RFC 3339 date-time: a date, ``T``, a time and an offset (``Z`` or ``±hh:mm``); a plain date is not one."""
    if not isinstance(value, str):
        return True
    if not re.fullmatch(r"\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})", value):
        raise ValueError("not an RFC 3339 date-time")
    datetime.fromisoformat(value.upper().replace("Z", "+00:00"))
    return True


@_FORMATS.checks("date", raises=ValueError)
def _is_date(value: object) -> bool:
    if isinstance(value, str):
        date.fromisoformat(value) if re.fullmatch(r"\d{4}-\d{2}-\d{2}", value) else date.fromisoformat("x")
    return True


def _media_type(value: str) -> str:
    return value.split(";", 1)[0].strip().lower()


def _accepts(accept: str, produced: set[str]) -> bool:
    for media_range in (_media_type(part) for part in accept.split(",")):
        kind, _, sub = media_range.partition("/")
        for media in produced:
            p_kind, _, p_sub = media.partition("/")
            if kind in {"*", p_kind} and sub in {"*", p_sub}:
                return True
    return False


@dataclass(frozen=True)
class Operation:
    """One AISP operation of a spec, its parameters resolved."""

    method: str
    template: str
    parameters: tuple[Json, ...]
    body_schema: Json | None
    consumes: frozenset[str]
    produces: frozenset[str]
    responses: Mapping[str, Json]

    def matches(self, path: str) -> dict[str, str] | None:
        names = re.findall(r"{([^}]+)}", self.template)
        pattern = re.escape(self.template)
        for name in names:
            pattern = pattern.replace(re.escape(f"{{{name}}}"), f"(?P<{name}>[^/]+)")
        found = re.fullmatch(pattern, path)
        return None if found is None else {k: unquote(v) for k, v in found.groupdict().items()}


class Spec:
    """One STET version's AIS extract."""

    def __init__(self, document: Json, *, patches: Callable[[Json], None] | None = None) -> None:
        self.document = json.loads(json.dumps(document))
        if patches is not None:
            patches(self.document)
        self.swagger2 = "swagger" in self.document
        self.operations = [
            self._operation(path, method, op)
            for path, item in self.document["paths"].items()
            for method, op in item.items()
        ]

    @property
    def version(self) -> str:
        return str(self.document["info"]["version"])

    def deref(self, node: Json) -> Json:
        while isinstance(node, dict) and "$ref" in node:
            node = resolve(self.document, node["$ref"])
        return node

    def _param_schema(self, parameter: Json) -> Json:
        if "schema" in parameter:
            return parameter["schema"]
        return {k: v for k, v in parameter.items() if k not in {"name", "in", "required", "description"}}

    def _operation(self, path: str, method: str, op: Json) -> Operation:
        parameters = tuple(self.deref(p) for p in op.get("parameters", ()))
        body_schema = None
        if self.swagger2:
            body = [p for p in parameters if p["in"] == "body"]
            body_schema = body[0]["schema"] if body else None
            consumes = op.get("consumes", self.document.get("consumes", ()))
            produces = op.get("produces", self.document.get("produces", ()))
        else:
            request_body = self.deref(op.get("requestBody")) if op.get("requestBody") else None
            content = request_body["content"] if request_body else {}
            consumes = tuple(content)
            body_schema = next(iter(content.values()))["schema"] if content else None
            produces = tuple(
                media for response in op["responses"].values() for media in self.deref(response).get("content", {})
            )
        return Operation(
            method=method.upper(),
            template=path,
            parameters=tuple(p for p in parameters if p["in"] != "body"),
            body_schema=body_schema,
            consumes=frozenset(_media_type(m) for m in consumes),
            produces=frozenset(_media_type(m) for m in produces),
            responses={str(code): self.deref(response) for code, response in op["responses"].items()},
        )

    def operation(self, method: str, path: str) -> tuple[Operation, dict[str, str]] | None:
        for operation in self.operations:
            if operation.method == method.upper() and (params := operation.matches(path)) is not None:
                return operation, params
        return None

    def validator(self, schema: Json) -> jsonschema.Draft4Validator:
        root = {**self.document, **schema}
        return jsonschema.Draft4Validator(root, format_checker=_FORMATS)

    def response_schema(self, operation: Operation, status: str = "200") -> Json:
        response = operation.responses[status]
        if self.swagger2:
            return response["schema"]
        return next(iter(response["content"].values()))["schema"]

    def examples(self, operation: Operation, status: str = "200") -> list[Json]:
        """The response examples the spec gives for ``operation``: the response's own, else its schema's."""
        response = operation.responses[status]
        found: list[Json] = []
        if self.swagger2:
            found.extend((response.get("examples") or {}).values())
        else:
            for content in response.get("content", {}).values():
                if "example" in content:
                    found.append(content["example"])
                found.extend(e.get("value") for e in (content.get("examples") or {}).values())
        if not found:
            schema = self.deref(self.response_schema(operation, status))
            if "example" in schema:
                found.append(schema["example"])
        return [json.loads(e) if isinstance(e, str) else e for e in found]

    def check_request(
        self, method: str, url: str, headers: Mapping[str, str], body: bytes | None, *, base: str
    ) -> list[str]:
        """Every way the request breaks this spec (empty when it conforms). ``base`` = bank origin + API prefix."""
        if not url.startswith(base):
            return [f"{url} is not under the API base {base}"]
        parts = urlsplit(url[len(base) :])
        found = self.operation(method, parts.path)
        if found is None:
            return [f"{method} {parts.path}: no such operation in STET {self.version}"]
        operation, path_values = found
        lowered = {name.lower(): value for name, value in headers.items()}
        query = parse_qsl(parts.query, keep_blank_values=True)
        problems: list[str] = []
        declared_query = {p["name"] for p in operation.parameters if p["in"] == "query"}
        problems += [f"query parameter {name!r} is not in the spec" for name, _ in query if name not in declared_query]
        values = {"path": path_values, "query": dict(query), "header": lowered}
        for parameter in operation.parameters:
            where, name = parameter["in"], parameter["name"]
            value = values[where].get(name.lower() if where == "header" else name)
            if value is None:
                if parameter.get("required"):
                    problems.append(f"required {where} parameter {name!r} is missing")
                continue
            for error in self.validator(self._param_schema(parameter)).iter_errors(value):
                problems.append(f"{where} parameter {name!r}: {error.message}")
        problems += self._check_media(operation, lowered, body)
        return problems

    def _check_media(self, operation: Operation, headers: Mapping[str, str], body: bytes | None) -> list[str]:
        problems: list[str] = []
        accept = headers.get("accept")
        if operation.produces and (accept is None or not _accepts(accept, set(operation.produces))):
            problems.append(f"Accept {accept!r} accepts none of {sorted(operation.produces)}")
        if operation.body_schema is None:
            if body:
                problems.append("a body is sent to an operation that takes none")
            return problems
        content_type = headers.get("content-type")
        if content_type is None or _media_type(content_type) not in operation.consumes:
            problems.append(f"Content-Type {content_type!r} is not one of {sorted(operation.consumes)}")
        try:
            payload = json.loads(body or b"")
        except ValueError:
            return [*problems, "the body is not JSON"]
        for error in self.validator(operation.body_schema).iter_errors(payload):
            path = "/".join(str(p) for p in error.absolute_path)
            problems.append(f"body {path or '<root>'}: {error.message}")
        return problems


# ----------------------------------------------------------------------------------------------------------------
# A bank in the test process
# ----------------------------------------------------------------------------------------------------------------


@dataclass
class Recorded:
    method: str
    url: str
    headers: dict[str, str]
    body: bytes | None


@dataclass
class InProcessBank(BaseAdapter):
    """A bank inside the test process (a ``requests`` adapter: no socket). It records each request and answers
    ``answer(method, url)`` → (status, body): a JSON value, raw ``bytes`` sent as they are, or ``None`` (no body)."""

    answer: Callable[[str, str], tuple[int, Any]] = lambda _m, _u: (200, {})
    seen: list[Recorded] = field(default_factory=list)

    def __post_init__(self) -> None:
        super().__init__()

    def send(self, request: requests.PreparedRequest, **_kwargs: Any) -> requests.Response:
        body = request.body.encode() if isinstance(request.body, str) else request.body
        self.seen.append(Recorded(request.method or "", request.url or "", dict(request.headers), body))
        status, payload = self.answer(request.method or "", request.url or "")
        response = requests.Response()
        response.status_code = status
        raw = payload if isinstance(payload, bytes) else b"" if payload is None else json.dumps(payload).encode()
        response._content = raw  # noqa: SLF001
        response.headers["Content-Type"] = "application/hal+json; charset=utf-8"
        response.url = request.url or ""
        response.request = request
        return response

    def close(self) -> None:
        """Nothing to release."""


@functools.cache
def _test_signer() -> requests.auth.AuthBase:
    """The golden vectors' test key as a signer, parsed once: an RSA key's checks cost ~60 ms, and the generated
    responses build a client per example (the signer keeps no state between requests)."""
    from aisp.signing import BankSignatureAuth  # noqa: PLC0415 - the layer, only for tests that call a bank

    key = json.loads((Path(__file__).parent / "fixtures" / "signature-vectors.json").read_text())["private_key_pem"]
    return BankSignatureAuth(key_id="PSDFR-ACPR-13807", private_key_pem=key)


def in_process_client(bank: InProcessBank, **overrides: Any) -> BankClient:
    """A :class:`~aisp.stet.BankClient` whose session goes to ``bank`` (signing with the golden vectors' test key)."""
    from aisp.stet import BankClient  # noqa: PLC0415

    session = requests.Session()
    session.mount("https://", bank)
    arguments: dict[str, Any] = {
        "bank_code": "13807",
        "base_url": "https://www.13807.live.api.89c3.com",
        "api_prefix": "/stet/psd2/v1.4.2",
        "client_id": "PSDFR-ACPR-13807",
        "auth": _test_signer(),
        "cert": None,
        "session": session,
        "max_get_retries": 0,
    }
    return BankClient(**{**arguments, **overrides})


# ----------------------------------------------------------------------------------------------------------------
# Response generation (a small JSON Schema → Hypothesis translation, for the subset STET uses)
# ----------------------------------------------------------------------------------------------------------------

_OFFSETS = st.sampled_from([UTC, timezone(timedelta(hours=1)), timezone(timedelta(hours=2))])
MAX_ITEMS = 3


def from_schema(
    spec: Spec, schema: Json, *, overrides: Mapping[str, st.SearchStrategy[Json]] | None = None, depth: int = 0
) -> st.SearchStrategy[Json]:
    """Bodies that conform to ``schema``. ``overrides`` replaces whole named components (``GenericLink``...)."""
    overrides = overrides or {}
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        if name in overrides:
            return overrides[name]
        target = resolve(spec.document, schema["$ref"])
        return st.deferred(lambda: from_schema(spec, target, overrides=overrides, depth=depth + 1))
    if "enum" in schema:
        return st.sampled_from(schema["enum"])
    kind = schema.get("type", "object" if "properties" in schema else None)
    if kind == "object":
        properties = schema.get("properties", {})
        required = set(schema.get("required", ()))
        strategies = {
            name: from_schema(spec, sub, overrides=overrides, depth=depth + 1) for name, sub in properties.items()
        }
        optional = {} if depth > 6 else {n: s for n, s in strategies.items() if n not in required}  # noqa: PLR2004
        return st.fixed_dictionaries({n: s for n, s in strategies.items() if n in required}, optional=optional)
    if kind == "array":
        low = schema.get("minItems", 0)
        return st.lists(
            from_schema(spec, schema.get("items", {}), overrides=overrides, depth=depth + 1),
            min_size=low,
            max_size=max(low, min(schema.get("maxItems", MAX_ITEMS), MAX_ITEMS)),
        )
    return _scalar(kind, schema)


def _scalar(kind: str | None, schema: Json) -> st.SearchStrategy[Json]:
    if kind == "string":
        return _string(schema)
    if kind == "number":
        return st.decimals(min_value=-(10**9), max_value=10**9, places=2).map(float)
    if kind == "integer":
        return st.integers(min_value=schema.get("minimum", 0), max_value=schema.get("maximum", 10**6))
    if kind == "boolean":
        return st.booleans()
    return st.none() | st.booleans() | st.text(max_size=5)


def _string(schema: Json) -> st.SearchStrategy[str]:
    longest = schema.get("maxLength", 20)
    fmt = schema.get("format")
    if fmt == "date":
        return st.dates(min_value=date(2000, 1, 1), max_value=date(2099, 12, 31)).map(date.isoformat)
    if fmt == "date-time":
        return st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2099, 12, 31), timezones=_OFFSETS).map(
            lambda d: d.replace(microsecond=0).isoformat()
        )
    if "pattern" in schema:
        return st.from_regex(schema["pattern"], fullmatch=True).filter(lambda s: len(s) <= longest)
    return st.text(st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")), min_size=1, max_size=min(longest, 20))


if __name__ == "__main__":
    FIXTURES.mkdir(parents=True, exist_ok=True)
    for stet_version, (_source, extract_name) in SOURCES.items():
        extracted = extract(load_reference(stet_version))
        (FIXTURES / extract_name).write_text(json.dumps(extracted, indent=1, sort_keys=True, ensure_ascii=False) + "\n")
