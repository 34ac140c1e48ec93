"""Read ``template.yaml`` the way the local stack needs it: functions, routes, authorizers, schedules and resources.

Nothing here is specific to this gateway: the routes, environment variables, tables and keys all come from the
template, so a route, variable or table added there is served or created without touching ``local/``. Intrinsic
functions are resolved for local values by :class:`Resolver`; anything it cannot resolve (a ``!Ref`` to a resource
that is not emulated, a parameter without a value) raises :class:`TemplateError` naming it, at start.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import yaml

from scripts.cfn_yaml import load_template

STACK_NAME: Final = "aisp-gateway-local"
REGION: Final = "eu-west-3"
# moto's default account: ARNs built locally and the ones moto returns agree.
ACCOUNT_ID: Final = "123456789012"

PSEUDO_PARAMETERS: Final[Mapping[str, str]] = {
    "AWS::Region": REGION,
    "AWS::AccountId": ACCOUNT_ID,
    "AWS::StackName": STACK_NAME,
    "AWS::StackId": f"arn:aws:cloudformation:{REGION}:{ACCOUNT_ID}:stack/{STACK_NAME}/local",
    "AWS::Partition": "aws",
    "AWS::URLSuffix": "amazonaws.com",
}

FUNCTION_TYPE: Final = "AWS::Serverless::Function"
HTTP_API_TYPE: Final = "AWS::Serverless::HttpApi"
SUBSCRIPTION_TYPE: Final = "AWS::Logs::SubscriptionFilter"
LAYER_TYPE: Final = "AWS::Serverless::LayerVersion"
SCHEDULE_EVENT_TYPES: Final = frozenset({"Schedule", "ScheduleV2"})
IMPLICIT_API: Final = "ServerlessHttpApi"
_SUB_PATTERN = re.compile(r"\$\{([^}]+)\}")
_RATE_PATTERN = re.compile(r"^rate\(\s*(\d+)\s+(minute|minutes|hour|hours|day|days)\s*\)$")
_RATE_UNITS: Final[Mapping[str, int]] = {"minute": 60, "hour": 3600, "day": 86400}


class TemplateError(Exception):
    """The template cannot be served locally; the message names the resource, property or reference."""


class _NoValue:
    """``AWS::NoValue``: the property it is assigned to disappears."""

    def __repr__(self) -> str:
        return "AWS::NoValue"


NO_VALUE: Final = _NoValue()


@dataclass(frozen=True, slots=True)
class ResourceValue:
    """What ``!Ref`` and ``!GetAtt`` return for a resource created locally."""

    ref: str
    attributes: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class JwtAuthorizer:
    """An HTTP API JWT authorizer: where the token is read and what it must say."""

    name: str
    header: str
    issuer: str
    audiences: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Route:
    """One ``HttpApi`` event: ``method`` is upper-case or ``ANY``; ``path`` may hold ``{name}`` and ``{name+}``."""

    method: str
    path: str
    function: str
    event: str
    authorizer: JwtAuthorizer | None
    scopes: tuple[str, ...] = ()

    @property
    def route_key(self) -> str:
        """``"GET /v1/banks"`` (or ``"$default"``), as in the event's ``routeKey``."""
        return "$default" if self.path == "$default" else f"{self.method} {self.path}"


@dataclass(frozen=True, slots=True)
class Schedule:
    """A ``Schedule``/``ScheduleV2`` event; ``interval_seconds`` is ``None`` for cron expressions."""

    function: str
    event: str
    expression: str
    interval_seconds: float | None
    input: str | None


@dataclass(frozen=True, slots=True)
class FunctionSpec:
    """A function as the Lambda runtime would see it: code, handler, limits and its own environment."""

    name: str
    code_dir: Path
    handler: str
    timeout_seconds: int
    memory_mb: int
    environment: Mapping[str, str]
    layer_dirs: tuple[Path, ...]

    @property
    def handler_file(self) -> Path:
        """``app.lambda_handler`` → ``<CodeUri>/app.py``."""
        module, _, _ = self.handler.rpartition(".")
        return self.code_dir.joinpath(*module.split(".")).with_suffix(".py")

    @property
    def handler_attribute(self) -> str:
        """``app.lambda_handler`` → ``lambda_handler``."""
        return self.handler.rpartition(".")[2]


@dataclass(frozen=True, slots=True)
class CorsConfig:
    """An HTTP API's ``CorsConfiguration`` (resolved); the adapter applies it as API Gateway does."""

    allow_origins: tuple[str, ...]
    allow_methods: tuple[str, ...] = ()
    allow_headers: tuple[str, ...] = ()
    expose_headers: tuple[str, ...] = ()
    max_age: int | None = None
    allow_credentials: bool = False

    def allows(self, origin: str) -> bool:
        """Whether ``origin`` is allowed: listed, or matched by ``*`` or a ``scheme://*`` pattern."""
        return any(
            pattern in {"*", origin} or (pattern.endswith("://*") and origin.startswith(pattern[:-1]))
            for pattern in self.allow_origins
        )

    def allow_origin_value(self, origin: str) -> str:
        """The ``Access-Control-Allow-Origin`` value for an allowed ``origin``."""
        return "*" if "*" in self.allow_origins and not self.allow_credentials else origin


_JSON_FILTER: Final = re.compile(r'^\{\s*\$\.([A-Za-z_][A-Za-z0-9_]*)\s*=\s*("([^"]*)"|-?[0-9]+)\s*\}$')


@dataclass(frozen=True, slots=True)
class Subscription:
    """An ``AWS::Logs::SubscriptionFilter``: lines of ``log_group`` matching ``{ $.key = value }`` go to a function."""

    name: str
    log_group: str
    key: str
    value: str | int
    destination: str

    def matches(self, line: str) -> bool:
        """Whether a JSON log line matches the filter pattern (a line that is not a JSON object never does)."""
        try:
            parsed = json.loads(line)
        except ValueError:
            return False
        return isinstance(parsed, dict) and self.key in parsed and parsed[self.key] == self.value


@dataclass(frozen=True, slots=True)
class LocalApp:
    """Everything the adapter serves: the functions (resolved), their routes and their schedules."""

    functions: Mapping[str, FunctionSpec]
    routes: tuple[Route, ...]
    schedules: tuple[Schedule, ...]
    authorizers: tuple[JwtAuthorizer, ...]
    cors: CorsConfig | None = None
    subscriptions: tuple[Subscription, ...] = ()


def _as_list(value: Any) -> list[Any]:
    return list(value) if isinstance(value, list | tuple) else [value]


class Resolver:
    """Resolves CloudFormation intrinsics against local parameter values and locally created resources.

    Parameters
    ----------
    template
        The parsed template.
    parameters
        Local value of each parameter (``None`` = no value: a ``!Ref`` to it fails).
    resources
        Logical id → value of every resource created locally. Mutable: the provisioner adds resources as it
        creates them, so later ones can refer to earlier ones.
    """

    def __init__(
        self,
        template: Mapping[str, Any],
        *,
        parameters: Mapping[str, str | list[str] | None],
        resources: dict[str, ResourceValue] | None = None,
    ) -> None:
        self._template = template
        self.parameters = dict(parameters)
        self.resources: dict[str, ResourceValue] = resources if resources is not None else {}
        self._intrinsics: dict[str, Callable[[Any, str], Any]] = {
            "Ref": self._ref,
            "Fn::GetAtt": self._get_att,
            "Fn::Sub": self._sub,
            "Fn::Join": self._join,
            "Fn::If": self._if,
            "Fn::Select": self._select,
            "Fn::Split": self._split,
            "Fn::FindInMap": self._find_in_map,
            "Fn::Equals": self._equals,
            "Fn::Not": lambda args, where: not self._condition_value(_as_list(args)[0], where),
            "Fn::And": lambda args, where: all(self._condition_value(a, where) for a in args),
            "Fn::Or": lambda args, where: any(self._condition_value(a, where) for a in args),
            "Condition": lambda name, where: self.condition(str(name), where),
        }

    def resolve(self, value: Any, where: str) -> Any:
        """Resolve every intrinsic in ``value``; ``where`` names the place for error messages."""
        if isinstance(value, dict):
            if len(value) == 1:
                ((key, args),) = value.items()
                if key in self._intrinsics:
                    return self._intrinsics[key](args, where)
                if key.startswith("Fn::"):
                    raise TemplateError(f"{where}: {key} is not supported by the local stack")
            resolved = {k: self.resolve(v, f"{where}.{k}") for k, v in value.items()}
            return {k: v for k, v in resolved.items() if v is not NO_VALUE}
        if isinstance(value, list):
            items = [self.resolve(v, f"{where}[{i}]") for i, v in enumerate(value)]
            return [v for v in items if v is not NO_VALUE]
        return value

    def condition(self, name: str, where: str) -> bool:
        """Evaluate the template condition ``name``."""
        conditions = self._template.get("Conditions") or {}
        if name not in conditions:
            raise TemplateError(f"{where}: condition {name} is not defined")
        return self._condition_value(conditions[name], f"Conditions.{name}")

    def _condition_value(self, value: Any, where: str) -> bool:
        resolved = self.resolve(value, where)
        if not isinstance(resolved, bool):
            raise TemplateError(f"{where}: a condition must be a boolean expression")
        return resolved

    def _ref(self, name: Any, where: str) -> Any:
        name = str(name)
        if name == "AWS::NoValue":
            return NO_VALUE
        if name in PSEUDO_PARAMETERS:
            return PSEUDO_PARAMETERS[name]
        if name in self.parameters:
            value = self.parameters[name]
            if value is None:
                raise TemplateError(f"{where}: !Ref {name}: the parameter has no default and no local value")
            return value
        if name in self.resources:
            return self.resources[name].ref
        resource_type = (self._template.get("Resources") or {}).get(name, {}).get("Type")
        if resource_type:
            raise TemplateError(f"{where}: !Ref {name} ({resource_type}) cannot be resolved: not emulated locally")
        raise TemplateError(f"{where}: !Ref {name}: no such parameter or resource")

    def _get_att(self, args: Any, where: str) -> str:
        parts = args.split(".", 1) if isinstance(args, str) else list(args)
        if len(parts) != 2:  # noqa: PLR2004 - [resource, attribute]
            raise TemplateError(f"{where}: malformed !GetAtt {args!r}")
        resource, attribute = str(parts[0]), str(self.resolve(parts[1], where))
        value = self.resources.get(resource)
        if value is None or attribute not in value.attributes:
            raise TemplateError(f"{where}: !GetAtt {resource}.{attribute} cannot be resolved: not emulated locally")
        return value.attributes[attribute]

    def _sub(self, args: Any, where: str) -> str:
        if isinstance(args, list):
            text, variables = str(args[0]), self.resolve(args[1], where) if len(args) > 1 else {}
        else:
            text, variables = str(args), {}

        def substitute(match: re.Match[str]) -> str:
            name = match.group(1)
            if name.startswith("!"):
                return "${" + name[1:] + "}"
            if name in variables:
                return str(variables[name])
            if "." in name:
                return self._get_att(name, where)
            value = self._ref(name, where)
            if isinstance(value, list):
                raise TemplateError(f"{where}: ${{{name}}} is a list and cannot be substituted")
            return str(value)

        return _SUB_PATTERN.sub(substitute, text)

    def _join(self, args: Any, where: str) -> str:
        delimiter, values = args
        items = self.resolve(values, where)
        return str(delimiter).join(str(item) for item in _as_list(items))

    def _if(self, args: Any, where: str) -> Any:
        name, when_true, when_false = args
        return self.resolve(when_true if self.condition(str(name), where) else when_false, where)

    def _select(self, args: Any, where: str) -> Any:
        index, values = self.resolve(args[0], where), self.resolve(args[1], where)
        return _as_list(values)[int(index)]

    def _split(self, args: Any, where: str) -> list[str]:
        delimiter, text = args
        return str(self.resolve(text, where)).split(str(delimiter))

    def _find_in_map(self, args: Any, where: str) -> Any:
        name, first, second = (self.resolve(a, where) for a in args)
        try:
            return self._template["Mappings"][name][first][second]
        except (KeyError, TypeError):
            raise TemplateError(f"{where}: !FindInMap [{name}, {first}, {second}] is not in Mappings") from None

    def _equals(self, args: Any, where: str) -> bool:
        left, right = (self.resolve(a, where) for a in args)
        return bool(str(left) == str(right))


def load_template_yaml(path: Path) -> dict[str, Any]:
    """Parse a SAM template (``!Ref``/``!Sub``/... short forms included)."""
    return load_template(path)


def rate_seconds(expression: str) -> float | None:
    """``rate(5 minutes)`` → 300; ``None`` for ``cron(...)``/``at(...)`` expressions."""
    match = _RATE_PATTERN.match(expression.strip())
    if not match:
        return None
    return float(int(match.group(1)) * _RATE_UNITS[match.group(2).rstrip("s")])


def env_string(value: Any, where: str) -> str:
    """An environment value as CloudFormation would set it (scalars only)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str | int | float):
        return str(value)
    raise TemplateError(f"{where}: an environment value must be a scalar, got {type(value).__name__}")


class LocalTemplate:
    """A parsed SAM template and the local view of it."""

    def __init__(self, path: Path, data: Mapping[str, Any]) -> None:
        self.path = path
        self.root = path.parent
        self.data = data

    @classmethod
    def load(cls, path: Path) -> LocalTemplate:
        """Parse ``path`` (``!Ref``/``!Sub``/... short forms included)."""
        try:
            data = load_template_yaml(path)
        except (OSError, ValueError, yaml.YAMLError) as exc:
            raise TemplateError(str(exc)) from None
        return cls(path.resolve(), data)

    @property
    def resources(self) -> Mapping[str, Mapping[str, Any]]:
        """Logical id → resource."""
        return dict(self.data.get("Resources") or {})

    def resources_of_type(self, resource_type: str) -> Iterator[tuple[str, Mapping[str, Any]]]:
        """``(logical id, properties)`` of each resource of ``resource_type``, in template order."""
        for name, resource in self.resources.items():
            if resource.get("Type") == resource_type:
                yield name, resource.get("Properties") or {}

    def parameter_values(self, overrides: Mapping[str, str]) -> dict[str, str | list[str] | None]:
        """Local parameter values: ``overrides``, else the ``Default``; lists for ``CommaDelimitedList``.

        Raises
        ------
        TemplateError
            An override names no parameter, or a value is not in ``AllowedValues``.
        """
        declared: Mapping[str, Mapping[str, Any]] = self.data.get("Parameters") or {}
        unknown = sorted(set(overrides) - set(declared))
        if unknown:
            raise TemplateError(f"local values given for parameters the template does not declare: {unknown}")
        values: dict[str, str | list[str] | None] = {}
        for name, spec in declared.items():
            raw = overrides.get(name, spec.get("Default"))
            if raw is None:
                values[name] = None
                continue
            text = env_string(raw, f"Parameters.{name}")
            allowed = spec.get("AllowedValues")
            if allowed is not None and text not in [str(a) for a in allowed]:
                raise TemplateError(f"Parameters.{name}: {text!r} is not one of {allowed}")
            is_list = str(spec.get("Type", "String")) in {"CommaDelimitedList", "List<String>"}
            values[name] = [item.strip() for item in text.split(",")] if is_list else text
        return values

    def app(self, resolver: Resolver) -> LocalApp:
        """Resolve the functions, their ``HttpApi`` routes, their schedules and the API authorizers.

        Raises
        ------
        TemplateError
            For anything the local adapter cannot serve faithfully (a Lambda authorizer, payload format 1.0,
            code on S3, a non-Python runtime, an unresolvable reference, two identical routes...).
        """
        globals_ = self._function_globals()
        layers = self.layer_dirs()
        functions: dict[str, FunctionSpec] = {}
        routes: list[Route] = []
        schedules: list[Schedule] = []
        apis = self._authorizers(resolver)
        for name, properties in self.resources_of_type(FUNCTION_TYPE):
            functions[name] = self._function(name, properties, globals_, layers, resolver)
            for event_name, event in (properties.get("Events") or {}).items():
                kind = event.get("Type")
                event_properties = event.get("Properties") or {}
                where = f"{name}.Events.{event_name}"
                if kind == "HttpApi":
                    routes.append(
                        self._route(
                            function=name,
                            event=event_name,
                            properties=event_properties,
                            apis=apis,
                            resolver=resolver,
                            where=where,
                        )
                    )
                elif kind in SCHEDULE_EVENT_TYPES:
                    schedule = self._schedule(name, event_name, event_properties, resolver, where)
                    if schedule is not None:
                        schedules.append(schedule)
        _check_unique_routes(routes)
        authorizers = {r.authorizer.name: r.authorizer for r in routes if r.authorizer is not None}
        return LocalApp(
            functions=functions,
            routes=tuple(routes),
            schedules=tuple(schedules),
            authorizers=tuple(authorizers.values()),
            cors=self.cors(resolver),
            subscriptions=self.subscriptions(set(functions)),
        )

    def subscriptions(self, functions: set[str]) -> tuple[Subscription, ...]:
        """The template's subscription filters: a JSON ``{ $.key = value }`` pattern to one of its functions.

        Raises
        ------
        TemplateError
            Another kind of pattern or destination, which the local stack cannot deliver faithfully.
        """
        found: list[Subscription] = []
        for name, properties in self.resources_of_type(SUBSCRIPTION_TYPE):
            pattern = _JSON_FILTER.fullmatch(str(properties.get("FilterPattern", "")))
            if pattern is None:
                raise TemplateError(f"{name}.FilterPattern: only {{ $.key = value }} is emulated locally")
            group, destination = properties.get("LogGroupName"), properties.get("DestinationArn")
            target = destination.get("Fn::GetAtt") if isinstance(destination, dict) else None
            if not isinstance(group, dict) or "Ref" not in group or not target or target[0] not in functions:
                raise TemplateError(f"{name}: LogGroupName must be !Ref a log group, DestinationArn a function's Arn")
            key, raw, text = pattern.groups()
            found.append(
                Subscription(
                    name=name,
                    log_group=str(group["Ref"]),
                    key=key,
                    value=text if text is not None else int(raw),
                    destination=str(target[0]),
                )
            )
        return tuple(found)

    def cors(self, resolver: Resolver) -> CorsConfig | None:
        """The HTTP API's ``CorsConfiguration`` (one API is served on one port, so at most one may set it)."""
        sources = [(IMPLICIT_API, (self.data.get("Globals") or {}).get("HttpApi") or {})]
        sources += list(self.resources_of_type(HTTP_API_TYPE))
        configs: list[CorsConfig] = []
        for api, properties in sources:
            where = f"{api}.CorsConfiguration"
            raw = resolver.resolve(properties.get("CorsConfiguration", NO_VALUE), where)
            if raw is NO_VALUE or raw is None or raw is False:
                continue
            if raw is True:  # SAM: CorsConfiguration: true allows every origin
                configs.append(CorsConfig(allow_origins=("*",)))
                continue
            if not isinstance(raw, dict):
                raise TemplateError(f"{where}: expected true or a map")
            configs.append(
                CorsConfig(
                    allow_origins=_strings(raw, "AllowOrigins"),
                    allow_methods=tuple(m.upper() for m in _strings(raw, "AllowMethods")),
                    allow_headers=tuple(h.lower() for h in _strings(raw, "AllowHeaders")),
                    expose_headers=tuple(h.lower() for h in _strings(raw, "ExposeHeaders")),
                    max_age=int(raw["MaxAge"]) if raw.get("MaxAge") is not None else None,
                    allow_credentials=bool(raw.get("AllowCredentials", False)),
                )
            )
        if len(configs) > 1:
            raise TemplateError("more than one HttpApi sets CorsConfiguration: the local adapter serves one API")
        return configs[0] if configs else None

    def _function_globals(self) -> Mapping[str, Any]:
        return dict((self.data.get("Globals") or {}).get("Function") or {})

    def layer_dirs(self) -> dict[str, Path]:
        """Layer logical id → the directory that goes on ``sys.path`` (``/opt/python`` in Lambda)."""
        dirs: dict[str, Path] = {}
        for name, properties in self.resources_of_type(LAYER_TYPE):
            content = properties.get("ContentUri")
            if not isinstance(content, str):
                raise TemplateError(f"{name}.ContentUri: only a local folder can be served locally")
            directory = (self.root / content).resolve()
            build_method = str((self.resources[name].get("Metadata") or {}).get("BuildMethod", ""))
            # With a python BuildMethod, SAM copies ContentUri into python/; without one, the folder must
            # already hold python/ (the Lambda layer layout).
            if not build_method.startswith("python") and (directory / "python").is_dir():
                directory /= "python"
            dirs[name] = directory
        return dirs

    def _function(
        self,
        name: str,
        properties: Mapping[str, Any],
        globals_: Mapping[str, Any],
        layers: Mapping[str, Path],
        resolver: Resolver,
    ) -> FunctionSpec:
        def prop(key: str, default: Any = None) -> Any:
            value = properties.get(key, globals_.get(key, default))
            return resolver.resolve(value, f"{name}.{key}")

        runtime = str(prop("Runtime", ""))
        if not runtime.startswith("python"):
            raise TemplateError(f"{name}.Runtime: {runtime or 'missing'}; only Python functions run locally")
        code_uri = prop("CodeUri")
        if not isinstance(code_uri, str):
            raise TemplateError(f"{name}.CodeUri: only a local folder can be served locally")
        handler = str(prop("Handler", ""))
        if "." not in handler:
            raise TemplateError(f"{name}.Handler: expected module.function, got {handler!r}")
        environment: dict[str, str] = {}
        for source in (globals_, properties):
            variables = resolver.resolve(
                ((source.get("Environment") or {}).get("Variables") or {}), f"{name}.Environment.Variables"
            )
            for key, value in variables.items():
                environment[key] = env_string(value, f"{name}.Environment.Variables.{key}")
        layer_refs = list(globals_.get("Layers") or []) + list(properties.get("Layers") or [])
        layer_dirs: list[Path] = []
        for index, ref in enumerate(layer_refs):
            target = str(ref.get("Ref")) if isinstance(ref, dict) else ""
            if target not in layers:
                raise TemplateError(f"{name}.Layers[{index}]: only layers built from this template run locally")
            layer_dirs.append(layers[target])
        spec = FunctionSpec(
            name=name,
            code_dir=(self.root / code_uri).resolve(),
            handler=handler,
            timeout_seconds=int(prop("Timeout", 3)),
            memory_mb=int(prop("MemorySize", 128)),
            environment=environment,
            layer_dirs=tuple(layer_dirs),
        )
        if not spec.handler_file.is_file():
            raise TemplateError(f"{name}.Handler: {spec.handler_file} does not exist")
        return spec

    def _authorizers(self, resolver: Resolver) -> dict[str, tuple[str | None, dict[str, JwtAuthorizer]]]:
        """API logical id → (default authorizer name, authorizers by name); the implicit API from Globals."""
        apis: dict[str, tuple[str | None, dict[str, JwtAuthorizer]]] = {}
        sources: list[tuple[str, Mapping[str, Any]]] = [
            (IMPLICIT_API, dict((self.data.get("Globals") or {}).get("HttpApi") or {}))
        ]
        sources += list(self.resources_of_type(HTTP_API_TYPE))
        for api, properties in sources:
            auth = properties.get("Auth") or {}
            authorizers: dict[str, JwtAuthorizer] = {}
            for auth_name, config in (auth.get("Authorizers") or {}).items():
                where = f"{api}.Auth.Authorizers.{auth_name}"
                if "JwtConfiguration" not in config:
                    raise TemplateError(f"{where}: only JWT authorizers are emulated locally")
                jwt = resolver.resolve(config["JwtConfiguration"], f"{where}.JwtConfiguration")
                source = str(resolver.resolve(config.get("IdentitySource", "$request.header.Authorization"), where))
                if not source.startswith("$request.header."):
                    raise TemplateError(f"{where}.IdentitySource: only $request.header.<name> is emulated locally")
                audiences = _as_list(jwt.get("audience", []))
                if not all(isinstance(audience, str) for audience in audiences):
                    # API Gateway refuses it too (a nested list, e.g. [!Ref ListParameter]).
                    raise TemplateError(f"{where}.JwtConfiguration.audience: must be a list of strings: {audiences}")
                authorizers[auth_name] = JwtAuthorizer(
                    name=auth_name,
                    header=source.removeprefix("$request.header.").lower(),
                    issuer=str(jwt.get("issuer", "")),
                    audiences=tuple(audiences),
                )
            default = auth.get("DefaultAuthorizer")
            apis[api] = (str(default) if default else None, authorizers)
        return apis

    def _route(
        self,
        *,
        function: str,
        event: str,
        properties: Mapping[str, Any],
        apis: Mapping[str, tuple[str | None, dict[str, JwtAuthorizer]]],
        resolver: Resolver,
        where: str,
    ) -> Route:
        if str(properties.get("PayloadFormatVersion", "2.0")) != "2.0":
            raise TemplateError(f"{where}.PayloadFormatVersion: only 2.0 is emulated locally")
        api_ref = properties.get("ApiId")
        api = str(api_ref.get("Ref")) if isinstance(api_ref, dict) else IMPLICIT_API if api_ref is None else ""
        if api not in apis:
            raise TemplateError(f"{where}.ApiId: must be !Ref to an AWS::Serverless::HttpApi of this template")
        default_name, authorizers = apis[api]
        method = str(resolver.resolve(properties.get("Method", "ANY"), where)).upper()
        path = str(resolver.resolve(properties.get("Path", "$default"), where))
        auth = properties.get("Auth") or {}
        name = auth.get("Authorizer", default_name)
        authorizer = None
        if name and name != "NONE":
            if name not in authorizers:
                raise TemplateError(f"{where}.Auth.Authorizer: {name} is not an authorizer of {api}")
            authorizer = authorizers[name]
        scopes = tuple(str(s) for s in resolver.resolve(auth.get("AuthorizationScopes", []), where))
        return Route(method=method, path=path, function=function, event=event, authorizer=authorizer, scopes=scopes)

    @staticmethod
    def _schedule(
        function: str, event: str, properties: Mapping[str, Any], resolver: Resolver, where: str
    ) -> Schedule | None:
        resolved = resolver.resolve(dict(properties), where)
        if resolved.get("Enabled") is False or str(resolved.get("State", "ENABLED")).upper() == "DISABLED":
            return None
        expression = str(resolved.get("ScheduleExpression") or resolved.get("Schedule") or "")
        if not expression:
            raise TemplateError(f"{where}: no ScheduleExpression")
        payload = resolved.get("Input")
        return Schedule(
            function=function,
            event=event,
            expression=expression,
            interval_seconds=rate_seconds(expression),
            input=str(payload) if payload is not None else None,
        )


def _strings(config: Mapping[str, Any], key: str) -> tuple[str, ...]:
    """A list property as strings, empty entries (an empty CommaDelimitedList) left out."""
    return tuple(str(value) for value in _as_list(config.get(key, [])) if str(value))


def _check_unique_routes(routes: Sequence[Route]) -> None:
    seen: dict[str, Route] = {}
    for route in routes:
        other = seen.setdefault(route.route_key, route)
        if other is not route:
            raise TemplateError(
                f"route {route.route_key} is declared twice: {other.function}.{other.event} and "
                f"{route.function}.{route.event}"
            )


def merged_environment(functions: Mapping[str, FunctionSpec], extra: Mapping[str, str]) -> dict[str, str]:
    """One environment for every function: their variables plus ``extra`` (the local runtime's own).

    The functions run in one process and ``os.environ`` is process-wide, so a variable must mean the same thing
    to every function that declares it.

    Raises
    ------
    TemplateError
        Naming each variable that two functions (or a function and the local runtime) set differently.
    """
    merged: dict[str, str] = dict(extra)
    owners: dict[str, str] = dict.fromkeys(extra, "the local runtime")
    conflicts: list[str] = []
    for name, spec in functions.items():
        for key, value in spec.environment.items():
            if key in merged and merged[key] != value:
                conflicts.append(f"{key} ({owners[key]} and {name} set different values)")
                continue
            merged[key] = value
            owners.setdefault(key, name)
    if conflicts:
        raise TemplateError(
            "the functions share one process locally, so each environment variable needs one value: "
            + "; ".join(conflicts)
        )
    return merged
