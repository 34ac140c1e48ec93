"""The adapter is driven by the template: new routes are served as declared; what it cannot serve fails at start."""

from __future__ import annotations

import pytest
import requests

from local.adapter import LocalApi
from local.template import LocalTemplate, Resolver, TemplateError, merged_environment
from tests.e2e.conftest import ECHO_DIR, ECHO_TEMPLATE, PING_DIR, PING_FUNCTION

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(60)]

TIMEOUT = 10


def _app(path, **overrides):
    template = LocalTemplate.load(path)
    parameters = template.parameter_values({"JwtIssuer": "https://i/", "JwtAudience": "a", **overrides})
    return template.app(Resolver(template.data, parameters=parameters))


def test_route_added_to_the_template_is_served(write_template, serve_template):
    # Given the echo template, where /ping does not exist
    before = serve_template(write_template(ECHO_TEMPLATE))
    assert requests.get(f"{before.url}/ping", timeout=TIMEOUT).status_code == 404

    # When a function with a GET /ping event is added to the template (and nothing else changes)
    after = serve_template(write_template(ECHO_TEMPLATE + PING_FUNCTION))

    # Then the adapter serves it with its own handler
    response = requests.get(f"{after.url}/ping", timeout=TIMEOUT)
    assert response.status_code == 200
    assert response.text == "pong GET /ping"
    assert set(after.app.functions) == {"EchoFunction", "PingFunction"}


@pytest.mark.parametrize(
    ("snippet", "message"),
    [
        ("        MISSING: !Ref NotDeclared\n", r"!Ref NotDeclared: no such parameter or resource"),
        ("        QUEUE: !GetAtt Queue.Arn\n", r"!GetAtt Queue.Arn cannot be resolved: not emulated locally"),
        ("        QUEUE_URL: !Ref Queue\n", r"!Ref Queue \(AWS::SQS::Queue\) cannot be resolved"),
        ("        NEEDED: !Ref NoDefault\n", r"!Ref NoDefault: the parameter has no default and no local value"),
    ],
)
def test_unresolvable_reference_fails_at_start_naming_it(write_template, snippet, message):
    # Given a template whose Globals environment refers to something the local stack cannot provide
    text = ECHO_TEMPLATE.replace(
        '        GREETING: !Sub "hello from ${AWS::Region}"\n',
        '        GREETING: !Sub "hello from ${AWS::Region}"\n' + snippet,
    )
    text = text.replace("Resources:\n", "Resources:\n  Queue:\n    Type: AWS::SQS::Queue\n", 1).replace(
        "  JwtAudience:\n", "  NoDefault:\n    Type: String\n  JwtAudience:\n", 1
    )

    # When / Then
    with pytest.raises(TemplateError, match=message):
        _app(write_template(text))


def test_functions_needing_different_values_of_one_variable_fail_at_start(write_template):
    # Given two functions that set MODE differently
    text = ECHO_TEMPLATE + PING_FUNCTION
    text = text.replace(
        "      CodeUri: " + str(ECHO_DIR), "      Environment: {Variables: {MODE: a}}\n      CodeUri: " + str(ECHO_DIR)
    )
    text = text.replace(
        "      CodeUri: " + str(PING_DIR), "      Environment: {Variables: {MODE: b}}\n      CodeUri: " + str(PING_DIR)
    )
    app = _app(write_template(text))

    # When their environments are merged for the one process
    with pytest.raises(TemplateError, match=r"MODE \(EchoFunction and PingFunction set different values\)"):
        merged_environment(app.functions, {})

    # And a variable of the local runtime cannot be overridden by a function either
    with pytest.raises(TemplateError, match=r"GREETING \(the local runtime and EchoFunction"):
        merged_environment(app.functions, {"GREETING": "other"})


def test_function_variables_override_globals(write_template):
    # Given Globals GREETING and a function-level GREETING
    text = ECHO_TEMPLATE.replace(
        "      CodeUri: " + str(ECHO_DIR),
        "      Environment: {Variables: {GREETING: own}}\n      CodeUri: " + str(ECHO_DIR),
    )

    # When / Then
    assert _app(write_template(text)).functions["EchoFunction"].environment["GREETING"] == "own"


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ("Path: /open,", "Path: /_local/open,", r"reserved for the local adapter"),
        ("Path: /boom,", "Path: /open,", r"route GET /open is declared twice"),
        ("Runtime: python3.13", "Runtime: nodejs22.x", r"only Python functions run locally"),
        (
            "JwtConfiguration:\n              issuer: !Ref JwtIssuer\n              audience: !Ref JwtAudience",
            "FunctionArn: arn:aws:lambda:eu-west-3:123456789012:function:authorizer",
            r"only JWT authorizers",
        ),
        (  # JwtAudience is a list already: API Gateway refuses a list in a list
            "audience: !Ref JwtAudience",
            "audience: [!Ref JwtAudience]",
            r"JwtConfiguration.audience: must be a list of strings: \[\['a'\]\]",
        ),
    ],
)
def test_what_the_adapter_cannot_serve_fails_at_start(write_template, old, new, message):
    # Given a template the local adapter cannot serve faithfully
    path = write_template(ECHO_TEMPLATE.replace(old, new, 1))

    # When / Then
    with pytest.raises(TemplateError, match=message):
        app = _app(path)
        LocalApi(app, {})
