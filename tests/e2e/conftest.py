"""Fixtures for the local stack's end-to-end tests: real HTTP on 127.0.0.1 free ports, every server stopped.

Two levels: the adapter alone on a small template written per test (``serve_template``), and the whole stack
(``start_stack``: moto + sandbox + the real ``template.yaml``) for ``test_stack*.py``. The sandbox PKI is created
once per session (RSA key generation is the slow part of a start).
"""

from __future__ import annotations

import socket
import sys
import tempfile
import textwrap
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from local.adapter import ApiServer, LocalApi, load_functions, module_name
from local.jwt import LocalIssuer
from local.stack import ProcessEnvironment, local_issuer
from local.template import LocalApp, LocalTemplate, Resolver, merged_environment

if TYPE_CHECKING:
    from playwright.sync_api import Page

HERE = Path(__file__).resolve().parent
# The browser tests' Chromium: Debian's (`make browser`), never Playwright's download.
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
WAIT_MS = 30_000  # generous: the page waits on real servers, and CI machines get busy
ECHO_DIR = HERE / "echo"
PING_DIR = HERE / "ping"
ISSUER = "https://issuer.local.test/"
AUDIENCE = "aisp-e2e"

# An HttpApi with a JWT authorizer and one echo function behind several kinds of routes.
ECHO_TEMPLATE = f"""
AWSTemplateFormatVersion: "2010-09-09"
Transform: AWS::Serverless-2016-10-31
Parameters:
  JwtIssuer:
    Type: String
  JwtAudience:
    Type: CommaDelimitedList
  UnattendedScope:
    Type: String
    Default: aisp/unattended
  AttendedProxyScope:
    Type: String
    Default: aisp/attended-proxy
Globals:
  Function:
    Runtime: python3.13
    Handler: app.lambda_handler
    Timeout: 7
    MemorySize: 256
    Environment:
      Variables:
        GREETING: !Sub "hello from ${{AWS::Region}}"
Resources:
  Api:
    Type: AWS::Serverless::HttpApi
    Properties:
      Auth:
        DefaultAuthorizer: Jwt
        Authorizers:
          Jwt:
            IdentitySource: $request.header.Authorization
            JwtConfiguration:
              issuer: !Ref JwtIssuer
              audience: !Ref JwtAudience
  EchoFunction:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: {ECHO_DIR}
      Events:
        GetItem:
          Type: HttpApi
          Properties: {{ApiId: !Ref Api, Method: GET, Path: "/items/{{item_id}}"}}
        PostItem:
          Type: HttpApi
          Properties: {{ApiId: !Ref Api, Method: POST, Path: "/items/{{item_id}}"}}
        SpecialItem:
          Type: HttpApi
          Properties: {{ApiId: !Ref Api, Method: GET, Path: /items/special}}
        Files:
          Type: HttpApi
          Properties: {{ApiId: !Ref Api, Method: ANY, Path: "/files/{{proxy+}}"}}
        Scoped:
          Type: HttpApi
          Properties:
            ApiId: !Ref Api
            Method: GET
            Path: /scoped
            Auth: {{AuthorizationScopes: [accounts.read]}}
        Open:
          Type: HttpApi
          Properties: {{ApiId: !Ref Api, Method: GET, Path: /open, Auth: {{Authorizer: NONE}}}}
        Boom:
          Type: HttpApi
          Properties: {{ApiId: !Ref Api, Method: GET, Path: /boom, Auth: {{Authorizer: NONE}}}}
        Inferred:
          Type: HttpApi
          Properties: {{ApiId: !Ref Api, Method: GET, Path: /inferred, Auth: {{Authorizer: NONE}}}}
        Malformed:
          Type: HttpApi
          Properties: {{ApiId: !Ref Api, Method: GET, Path: /malformed, Auth: {{Authorizer: NONE}}}}
        Binary:
          Type: HttpApi
          Properties: {{ApiId: !Ref Api, Method: GET, Path: /binary, Auth: {{Authorizer: NONE}}}}
"""

PING_FUNCTION = f"""
  PingFunction:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: {PING_DIR}
      Events:
        Ping:
          Type: HttpApi
          Properties: {{ApiId: !Ref Api, Method: GET, Path: /ping, Auth: {{Authorizer: NONE}}}}
"""


@dataclass
class ServedApi:
    """An adapter serving a test template."""

    url: str
    app: LocalApp
    issuer: LocalIssuer
    server: ApiServer


@pytest.fixture(scope="session")
def signing_key():
    """One RSA key for the session's local issuers (key generation is the slow part)."""
    from cryptography.hazmat.primitives.asymmetric import rsa

    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture
def write_template(tmp_path: Path) -> Callable[[str], Path]:
    """Write a template into the test's folder and return its path."""

    def _write(text: str) -> Path:
        path = tmp_path / "template.yaml"
        path.write_text(textwrap.dedent(text), encoding="utf-8")
        return path

    return _write


@pytest.fixture
def serve_template(signing_key) -> Iterator[Callable[..., ServedApi]]:
    """Start the adapter on a free port for a template (in-process, no moto, no sandbox); stopped after the test.

    The functions' environment is set as the stack sets it (merged, one process) and restored afterwards.
    """
    started: list[tuple[ApiServer, LocalApp, ProcessEnvironment]] = []

    def _serve(path: Path) -> ServedApi:
        template = LocalTemplate.load(path)
        parameters = template.parameter_values({"JwtIssuer": ISSUER, "JwtAudience": AUDIENCE})
        app = template.app(Resolver(template.data, parameters=parameters))
        environment = ProcessEnvironment()
        environment.apply(merged_environment(app.functions, {}))
        issuer = local_issuer(app, parameters, key=signing_key)
        assert issuer is not None, "the template has no JWT authorizer"
        server = ApiServer("127.0.0.1", 0)
        server.start(LocalApi(app, load_functions(app), issuer=issuer))
        started.append((server, app, environment))
        return ServedApi(url=server.url, app=app, issuer=issuer, server=server)

    yield _serve
    for server, app, environment in reversed(started):
        server.stop()
        environment.restore()
        for name in app.functions:
            sys.modules.pop(module_name(name), None)


@pytest.fixture
def echo_api(write_template, serve_template) -> ServedApi:
    """The echo template, served."""
    return serve_template(write_template(ECHO_TEMPLATE))


@pytest.fixture(scope="session")
def state_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A local/.state look-alike with the sandbox PKI already created (shared by every stack of the session)."""
    from sandbox.certs import ensure_certificates

    directory = tmp_path_factory.mktemp("local-state")
    ensure_certificates(directory / "certs")
    return directory


def port_is_free(port: int) -> bool:
    """Whether a server could listen on ``port`` now (as our servers do: with SO_REUSEADDR)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


@pytest.fixture
def page() -> Iterator[Page]:
    """A fresh headless Chromium page (new empty profile); its JS errors fail the test."""
    from playwright.sync_api import sync_playwright

    errors: list[str] = []
    with tempfile.TemporaryDirectory(prefix="quickstart-profile-") as profile, sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            profile,
            executable_path=str(CHROMIUM),
            headless=True,
            args=CHROMIUM_ARGS,
            viewport={"width": 1100, "height": 900},
        )
        context.set_default_timeout(WAIT_MS)
        tab = context.pages[0] if context.pages else context.new_page()
        tab.on("pageerror", lambda error: errors.append(str(error)))
        try:
            yield tab
        finally:
            context.close()
    assert errors == [], f"JavaScript errors on the page: {errors}"
