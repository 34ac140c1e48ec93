"""What every benchmark shares: the bank and moto in their own processes, the template's functions in this one.

The three parties run as in the deployed system, each with its own GIL: the offline sandbox (``bench.sandbox_host``)
plays the bank over HTTPS + mTLS, a moto server plays DynamoDB/KMS/Secrets Manager/EventBridge, and the benchmark's
process plays Lambda. :func:`deploy` reads template.yaml the way ``make run`` does (``local.template``): the tables,
KMS keys and secret are created in moto from the template's own declarations, and every function gets its template
environment. :class:`Gateway` turns a request into the API Gateway payload 2.0 event the HTTP API would send
(``local.events.build_event``, with the JWT authorizer's claims) and invokes the function's real ``lambda_handler``
(``local.adapter.FunctionRuntime``: the handler file, a Lambda context, the runtime's JSON in and out).

Nothing here is a benchmark; ``bench.warm``, ``bench.pagination``, ``bench.memory``, ``bench.refresher`` and
``bench.sync`` are.
"""

from __future__ import annotations

import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlencode, urlsplit

if TYPE_CHECKING:
    from local.adapter import FunctionRuntime
    from local.template import LocalApp

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
BANK = "13807"
OTP = "12345678"
MARC = "D0999990I0"
MARC_ACCOUNTS = ("038-CPT30019654051", "038-CPT30019654052", "038-CPT30019654053")
MARC_IBANS = ("FR7613807008043001965405158", "FR7613807008043001965405255", "FR7613807008043001965405352")
BULK = "D0999997I0"  # the sandbox's large-history persona: 10,000 transactions, 100 pages of 100
BULK_ACCOUNT = "038-CPT30019654099"
CALLBACK_URL = "https://gateway.bench.invalid/oauth/callback"  # registered at the sandbox, never fetched
RETURN_URL = "https://app.example.com/connections/done"
API_HOST = "api-id.execute-api.eu-west-3.amazonaws.com"
PSU_IP = "203.0.113.10"
USER_AGENT = "FintechApp/1.0"
ISSUER = "https://issuer.example.com/"
AUDIENCE = "aisp-gateway"


def use_layer() -> None:
    """Put the layer and the repository on ``sys.path``, as Lambda's ``/opt/python`` and the function's folder."""
    for path in (str(ROOT), str(ROOT / "layers" / "aisp")):
        if path not in sys.path:
            sys.path.insert(0, path)


def quiet_stdout() -> IO[str]:
    """Send ``sys.stdout`` to /dev/null and return the real one.

    The gateway logs one JSON line per request and bank call to stdout, as in Lambda: the formatting cost stays in
    the figures, the noise leaves the tables. Call it before anything imports ``aisp`` (Powertools binds its stream
    when the logger is created).
    """
    out = sys.stdout
    sys.stdout = Path(os.devnull).open("w", encoding="utf-8")  # noqa: SIM115 - for the whole run
    return out


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_for_port(port: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise RuntimeError(f"nothing listens on port {port}")


def child_env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": f"{ROOT / 'layers' / 'aisp'}{os.pathsep}{ROOT}", "PYTHONDONTWRITEBYTECODE": "1"}


class SandboxHost:
    """``bench.sandbox_host`` in a child process."""

    def __init__(
        self, certs: Path, *, latency_ms: int = 0, redirect_uris: Sequence[str] = (), daily_quota: int | None = None
    ) -> None:
        command = [sys.executable, "-m", "bench.sandbox_host", "--certs", str(certs), "--latency-ms", str(latency_ms)]
        if daily_quota is not None:
            command += ["--daily-quota", str(daily_quota)]
        for uri in redirect_uris:
            command += ["--redirect-uri", uri]
        self.process = subprocess.Popen(
            command, cwd=ROOT, env=child_env(), stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        assert self.process.stdin is not None and self.process.stdout is not None
        self._in: IO[str] = self.process.stdin
        self._out: IO[str] = self.process.stdout
        self.ready: dict[str, Any] = json.loads(self._out.readline())

    def mint(self, count: int, *, psu: str = MARC) -> list[tuple[str, str]]:
        """``count`` independent (access, refresh) pairs for ``psu`` at 13807 (see ``bench.sandbox_host``)."""
        self._in.write(json.dumps({"mint": count, "bank": BANK, "psu": psu}) + "\n")
        self._in.flush()
        return [tuple(pair) for pair in json.loads(self._out.readline())["tokens"]]

    def admin(self, method: str, name: str, body: dict[str, Any] | None = None) -> Any:
        import requests  # noqa: PLC0415

        response = requests.request(
            method, f"{self.ready['admin_url']}/{name}", json=body, verify=self.ready["ca_path"], timeout=10
        )
        response.raise_for_status()
        return response.json() if response.content else None

    def stop(self) -> None:
        self._in.close()
        self.process.wait(timeout=10)


class MotoProcess:
    """A moto server (every AWS service the functions use) in a child process.

    ``no_rollback_copy``: ``bench.moto_server``, which skips the whole-table copy moto makes per transaction item;
    ``keep_alive``: the same, over connections kept open between calls (as DynamoDB's are).
    """

    def __init__(self, *, no_rollback_copy: bool = False, keep_alive: bool = False) -> None:
        self.port = free_port()
        module = "bench.moto_server" if no_rollback_copy or keep_alive else "moto.server"
        flags = ["--keep-alive"] if keep_alive else []
        self.process = subprocess.Popen(
            [sys.executable, "-m", module, *flags, "-H", "127.0.0.1", "-p", str(self.port)],
            env=child_env(),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for_port(self.port)
        self.url = f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=10)


@dataclass
class Gateway:
    """The template's functions, invoked with the events the HTTP API would send them."""

    app: LocalApp
    environment: dict[str, str]
    secret_name: str
    _runtimes: dict[str, FunctionRuntime] = field(default_factory=dict)

    def runtime(self, function: str) -> FunctionRuntime:
        """The function's handler, loaded (a cold start) on first use."""
        from local.adapter import FunctionRuntime  # noqa: PLC0415

        if function not in self._runtimes:
            self._runtimes[function] = FunctionRuntime(self.app.functions[function])
        return self._runtimes[function]

    def event(
        self,
        method: str,
        path: str,
        *,
        sub: str,
        query: Mapping[str, str] | None = None,
        body: Any = None,
        headers: Mapping[str, str] | None = None,
        scopes: Sequence[str] = (),
    ) -> tuple[str, dict[str, Any]]:
        """``(function name, payload 2.0 event)`` for a request from the user ``sub``'s app (or, with ``scopes``, from
        a server token whose ``sub`` is the client)."""
        from local.events import IncomingRequest, build_event, match_route  # noqa: PLC0415

        matched = match_route(self.app.routes, method, path)
        if matched is None:
            raise LookupError(f"no route for {method} {path}")
        route, parameters = matched
        raw = b"" if body is None else json.dumps(body).encode()
        sent = {
            "host": API_HOST,
            "user-agent": USER_AGENT,
            "accept": "application/json",
            "accept-language": "fr-FR",
            **({"content-type": "application/json"} if raw else {}),
            **(headers or {}),
        }
        request = IncomingRequest(
            method=method,
            raw_path=path,
            raw_query=urlencode(query or {}),
            headers=tuple(sent.items()),
            body=raw,
            source_ip=PSU_IP,
            server_port=443,
        )
        now = int(time.time())
        claims: dict[str, Any] = {"sub": sub, "iss": ISSUER, "aud": AUDIENCE, "iat": now, "exp": now + 3600}
        if scopes:
            claims["scope"] = " ".join(scopes)
        jwt = {"claims": claims, "scopes": list(scopes)} if route.authorizer is not None else None
        return route.function, build_event(request, route, parameters, request_id=uuid.uuid4().hex, jwt=jwt)

    def call(self, method: str, path: str, *, sub: str, **kwargs: Any) -> tuple[int, Any, dict[str, Any]]:
        """Invoke the route's function; returns ``(status, decoded JSON body or None, raw result)``."""
        function, event = self.event(method, path, sub=sub, **kwargs)
        result = self.runtime(function).invoke(event)
        body = result.get("body")
        return int(result["statusCode"]), json.loads(body) if body else None, result

    def connect(self, *, sub: str, identifier: str = MARC, bank_code: str = BANK) -> None:
        """The connect journey through the handlers: POST /v1/connections, the bank's screens, GET /oauth/callback,
        then the app's POST .../complete as the same user."""
        login = self.start_login(sub=sub, identifier=identifier, bank_code=bank_code)
        completion = self.callback(login)
        path = f"/v1/connections/{bank_code}/complete"
        status, body, _ = self.call("POST", path, sub=sub, body={"completion": completion})
        assert status == 200 and body["status"] == "active", body

    def start_login(self, *, sub: str, identifier: str = MARC, bank_code: str = BANK) -> dict[str, str]:
        """POST /v1/connections, then the persona at the bank's screens; returns the bank's redirect query."""
        from local.demo import log_in_at_bank  # noqa: PLC0415

        status, started, _ = self.call(
            "POST", "/v1/connections", sub=sub, body={"bank_code": bank_code, "return_url": RETURN_URL}
        )
        assert status == 201, started
        redirect = log_in_at_bank(started["authorization_url"], identifier=identifier, otp=OTP, say=lambda _: None)
        return {name: values[0] for name, values in parse_qs(urlsplit(redirect).query).items()}

    def callback_event(self, query: Mapping[str, str]) -> tuple[str, dict[str, Any]]:
        return self.event("GET", "/oauth/callback", sub="", query=query)

    def callback(self, query: Mapping[str, str]) -> str:
        """GET /oauth/callback with the bank's redirect query; returns the completion value the app gets."""
        function, event = self.callback_event(query)
        result = self.runtime(function).invoke(event)
        location = result["headers"]["Location"]
        assert result["statusCode"] == 302 and "status=authorized" in location, location
        return str(parse_qs(urlsplit(location).query)["completion"][0])


def deploy(moto_url: str, sandbox: Mapping[str, Any]) -> Gateway:
    """Create the template's tables, keys and secret in moto; put the functions' environment in ``os.environ``."""
    use_layer()
    from local.aws import create_secret, provision  # noqa: PLC0415
    from local.stack import DEFAULT_TEMPLATE, runtime_environment  # noqa: PLC0415
    from local.template import LocalTemplate, Resolver, merged_environment  # noqa: PLC0415

    template = LocalTemplate.load(DEFAULT_TEMPLATE)
    parameters = template.parameter_values(
        {
            "JwtIssuer": ISSUER,
            "JwtAudience": AUDIENCE,
            "BankEnvironment": "local",
            "BankBaseUrlTemplate": sandbox["api_origin"] + "/{bank_code}",
            "BankAuthorizeUrlTemplate": sandbox["screens_origin"] + "/{bank_code}",
            "BankCaBundle": sandbox["ca_path"],
            "OAuthCallbackUrl": CALLBACK_URL,
            "ReturnUrlAllowlist": "https://app.example.com/",
        }
    )
    resolver = Resolver(template.data, parameters=parameters)
    provision(template, resolver, endpoint_url=moto_url)
    secret_name = str(parameters["BankCredentialsSecretName"])
    create_secret(secret_name, sandbox["credentials"], endpoint_url=moto_url)
    app = template.app(resolver)
    environment = merged_environment(app.functions, runtime_environment(moto_url))
    os.environ.update(environment)
    return Gateway(app=app, environment=environment, secret_name=secret_name)


@dataclass
class Stack:
    """A running bench stack: the bank's process, moto's process and the deployed functions."""

    sandbox: SandboxHost
    moto: MotoProcess
    gateway: Gateway


@contextmanager
def bench_stack(
    *, latency_ms: int, daily_quota: int | None = None, no_rollback_copy: bool = False, keep_alive: bool = False
) -> Iterator[Stack]:
    """The sandbox (``latency_ms`` added to every bank call; ``daily_quota`` unattended calls a day, else BPCE's 4)
    and moto in their processes (``no_rollback_copy``, ``keep_alive``: see :class:`MotoProcess`), the template
    deployed."""
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
        moto = MotoProcess(no_rollback_copy=no_rollback_copy, keep_alive=keep_alive)
        try:
            sandbox = SandboxHost(
                Path(tmp) / "certs", latency_ms=latency_ms, redirect_uris=(CALLBACK_URL,), daily_quota=daily_quota
            )
            try:
                yield Stack(sandbox=sandbox, moto=moto, gateway=deploy(moto.url, sandbox.ready))
            finally:
                sandbox.stop()
        finally:
            moto.stop()


def percentile(samples: Sequence[float], fraction: float) -> float:
    """The ``fraction`` quantile (0.5 = median), interpolated."""
    if len(samples) == 1:
        return samples[0]
    return statistics.quantiles(samples, n=100, method="inclusive")[round(fraction * 100) - 1]


def machine() -> dict[str, Any]:
    return {"python": sys.version.split()[0], "cpus": os.cpu_count(), "platform": platform.platform()}


def write_result(name: str, result: Mapping[str, Any], out: IO[str]) -> None:
    """``bench/results/<name>.json``, with the machine it ran on."""
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps({**result, "machine": machine()}, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {path.relative_to(ROOT)}", file=out)
