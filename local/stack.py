"""The whole gateway on one machine: moto, the offline sandbox, the template's HTTP API and its schedules.

:func:`start_stack` starts everything in this process (threads) and returns a :class:`RunningStack`, a context
manager; ``python -m local`` (:mod:`local.__main__`) wraps it for humans.

How the functions are isolated (they share one process, unlike Lambda):

* **Environment.** ``os.environ`` is process-wide, so each function's variables (Globals + its own) are merged
  into one environment, set once before any handler is imported; two functions needing different values of one
  variable stop the start with an error naming it. Swapping the environment around each invocation under a lock
  would not help: the layer caches its settings per process (``load_settings``), so the first function to read a
  variable would fix it for all. The price: a function can see a variable that only another function declares,
  so a variable missing from one function's ``Environment`` is not caught locally (only a deploy, or a template
  test comparing each function's variables with the settings models it reads, catches it). Variables starting
  with ``AWS_`` or ``POWERTOOLS_`` that the stack does not set are removed while it runs, as in Lambda, and
  everything is restored on stop.
* **Code.** Each handler file is loaded under its own module name (``local_fn_<Function>``). The layer (``aisp``)
  is imported afresh for each stack, like a new Lambda container, so no cache (settings, bank clients, table
  connections) survives from a previous stack in the same process; the modules seen before the stack are put back
  on stop.
* **Concurrency.** One invocation at a time per function (one warm instance each); different functions run
  concurrently.

Only one stack may run in a process at a time.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
import threading
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final, Literal, Self

from local.adapter import ApiServer, FunctionRuntime, LocalApi, load_functions
from local.aws import LocalMotoServer, create_secret, provision, reset_moto
from local.controls import SYNC_TABLE, LocalControls, SandboxAdmin
from local.jwt import LocalIssuer
from local.logs import SubscriptionDelivery
from local.sam_local import DOCKER_HOST, SAM_ENV_FILE, write_sam_env
from local.template import (
    ACCOUNT_ID,
    REGION,
    STACK_NAME,
    FunctionSpec,
    LocalApp,
    LocalTemplate,
    Resolver,
    ResourceValue,
    Schedule,
    TemplateError,
    merged_environment,
)

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric import rsa

    from sandbox.server import RunningSandbox

logger = logging.getLogger("local.stack")

REPO_ROOT: Final = Path(__file__).resolve().parent.parent
DEFAULT_TEMPLATE: Final = REPO_ROOT / "template.yaml"
DEFAULT_STATE_DIR: Final = Path(__file__).resolve().parent / ".state"
LOCAL_AUDIENCE: Final = "aisp-local"
BANK_SECRET_PARAMETER: Final = "BankCredentialsSecretName"  # noqa: S105 - a parameter name, not a secret
# The scopes of the backend's server tokens and their audience (docs/accounts.md, Unattended access).
SERVER_SCOPE_PARAMETERS: Final = ("UnattendedScope", "AttendedProxyScope")
BACKEND_AUDIENCE_PARAMETER: Final = "BackendJwtAudience"
# Prefixes of variables that configure the code under test: those the stack does not set are hidden while it runs.
OWNED_PREFIXES: Final = ("AWS_", "POWERTOOLS_")
DEFAULT_SCHEDULE_INTERVAL: Final = 300.0

_running = threading.Lock()


class StackError(Exception):
    """The stack cannot start (the message says what to change)."""


def local_parameters(api_url: str, sandbox: RunningSandbox, allowed_origins: Sequence[str] = ()) -> dict[str, str]:
    """Template parameter values for the local stack.

    The API allows (CORS) a page served as ``http://localhost:<port>``: the quickstart page opened that way calls
    the API at ``127.0.0.1`` cross-origin, as a fintech's web frontend calls it from its own origin.
    """
    port = api_url.rsplit(":", 1)[1]
    origins = dict.fromkeys([f"http://localhost:{port}", *allowed_origins])
    return {
        "JwtIssuer": f"{api_url}/_local",
        "JwtAudience": LOCAL_AUDIENCE,
        "BankEnvironment": "local",
        "BankBaseUrlTemplate": sandbox.api_origin + "/{bank_code}",
        "BankAuthorizeUrlTemplate": sandbox.screens_origin + "/{bank_code}",
        "OAuthCallbackUrl": f"{api_url}/oauth/callback",
        "ReturnUrlAllowlist": f"{api_url}/,http://localhost:{port}/",
        "AllowedOrigins": ",".join(origins),
        # The offline sandbox's private CA (BANK_CA_BUNDLE, honoured only when BANK_ENVIRONMENT=local).
        "BankCaBundle": str(sandbox.ca_path),
    }


def runtime_environment(moto_url: str) -> dict[str, str]:
    """What the Lambda runtime (not the template) provides, pointed at the local services."""
    return {
        "AWS_ENDPOINT_URL": moto_url,
        "AWS_REGION": REGION,
        "AWS_DEFAULT_REGION": REGION,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        # No X-Ray daemon locally (the template's Tracing: Active).
        "POWERTOOLS_TRACE_DISABLED": "1",
    }


class ProcessEnvironment:
    """Sets the functions' environment in ``os.environ`` and puts the previous one back."""

    def __init__(self) -> None:
        self._saved: dict[str, str | None] = {}

    def apply(self, environment: Mapping[str, str]) -> None:
        """Set ``environment``; hide the other ``AWS_*``/``POWERTOOLS_*`` variables."""
        hidden = [key for key in os.environ if key.startswith(OWNED_PREFIXES) and key not in environment]
        for key in [*environment, *hidden]:
            self._saved[key] = os.environ.get(key)
        for key in hidden:
            del os.environ[key]
        os.environ.update(environment)

    def restore(self) -> None:
        """Undo :meth:`apply` (nothing if it was not called)."""
        for key, value in self._saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        self._saved.clear()


class LayerModules:
    """Imports the layers afresh for one stack (a cold container) and restores the process's own copies."""

    def __init__(self, layer_dirs: tuple[Path, ...]) -> None:
        self._dirs = tuple(dict.fromkeys(layer_dirs))
        self._added_paths = [str(d) for d in self._dirs if str(d) not in sys.path]
        sys.path[:0] = self._added_paths
        self._top_level = {
            entry.stem
            for directory in self._dirs
            for entry in directory.iterdir()
            if (entry.is_dir() and (entry / "__init__.py").exists()) or entry.suffix == ".py"
        }
        self._saved = {name: module for name, module in sys.modules.items() if self._owned(name)}

    def _owned(self, name: str) -> bool:
        return name.startswith("local_fn_") or name.split(".", 1)[0] in self._top_level

    def isolate(self) -> None:
        """Forget the layer modules imported so far: the functions will import their own."""
        for name in list(sys.modules):
            if self._owned(name):
                del sys.modules[name]

    def restore(self) -> None:
        """Drop the stack's modules and put back the ones imported before it."""
        for name in list(sys.modules):
            if self._owned(name):
                del sys.modules[name]
        sys.modules.update(self._saved)
        for path in self._added_paths:
            with contextlib.suppress(ValueError):
                sys.path.remove(path)


def _clear_parameter_caches() -> None:
    from aws_lambda_powertools.utilities import parameters  # noqa: PLC0415 - only where functions run

    parameters.clear_caches()  # type: ignore[no-untyped-call]


def scheduled_event(template: LocalTemplate, schedule: Schedule, spec: FunctionSpec) -> dict[str, Any]:
    """The event a schedule delivers now: its ``Input``, else ``events/<function folder>/scheduled.json``
    (with a fresh ``id`` and ``time``), else a synthesized EventBridge Scheduler event."""
    if schedule.input is not None:
        payload: Any = json.loads(schedule.input)
        return payload if isinstance(payload, dict) else {"input": payload}
    sample = template.root / "events" / spec.code_dir.name / "scheduled.json"
    event: dict[str, Any] = (
        json.loads(sample.read_text(encoding="utf-8"))
        if sample.is_file()
        else {
            "version": "0",
            "detail-type": "Scheduled Event",
            "source": "aws.scheduler",
            "account": ACCOUNT_ID,
            "region": REGION,
            "resources": [f"arn:aws:scheduler:{REGION}:{ACCOUNT_ID}:schedule/default/{STACK_NAME}-{schedule.event}"],
            "detail": {},
        }
    )
    event["id"] = str(uuid.uuid4())
    event["time"] = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return event


class ScheduleTimer:
    """Invokes a scheduled function every ``interval`` seconds from a background thread."""

    def __init__(
        self, template: LocalTemplate, schedule: Schedule, runtime: FunctionRuntime, *, interval: float
    ) -> None:
        self.schedule = schedule
        self.interval = interval
        self._template = template
        self._runtime = runtime
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"local-schedule-{schedule.function}", daemon=True)

    def start(self) -> None:
        """Start ticking (the first tick comes after one interval, like a fresh schedule)."""
        self._thread.start()

    @property
    def is_running(self) -> bool:
        """Whether the timer thread ticks."""
        return self._thread.is_alive()

    def tick(self) -> Any:
        """Invoke the function once now and return its result.

        Raises
        ------
        local.adapter.InvocationError
            The function raised (as a failed Lambda invocation).
        """
        event = scheduled_event(self._template, self.schedule, self._runtime.spec)
        return self._runtime.invoke(event)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                result = self.tick()
            except Exception:  # noqa: BLE001 - logged by the runtime; the schedule keeps going like Scheduler
                logger.warning("scheduled invocation of %s failed", self.schedule.function)
            else:
                logger.info("scheduled invocation of %s: %s", self.schedule.function, json.dumps(result)[:200])

    def stop(self) -> None:
        """Stop ticking; waits for a running invocation to end."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=30)


@dataclass(frozen=True, slots=True)
class StackUrls:
    """Where everything listens."""

    api: str
    quickstart: str
    sandbox_api: str
    sandbox_screens: str
    moto: str


class RunningStack:
    """A started local stack; stop it with :meth:`stop` or use it as a context manager."""

    def __init__(
        self,
        *,
        template: LocalTemplate,
        app: LocalApp,
        api_server: ApiServer,
        api: LocalApi,
        moto: LocalMotoServer,
        sandbox: RunningSandbox,
        resources: Mapping[str, ResourceValue],
        environment: Mapping[str, str],
        secret_name: str,
        timers: dict[str, ScheduleTimer],
        cleanup: contextlib.ExitStack,
        subscriptions: tuple[SubscriptionDelivery, ...] = (),
    ) -> None:
        self.template = template
        self.app = app
        self.api = api
        self.sandbox = sandbox
        self.resources = dict(resources)
        self.environment = dict(environment)
        self.secret_name = secret_name
        self.timers = timers
        self.subscriptions = subscriptions
        self._api_server = api_server
        self._moto = moto
        self._cleanup = cleanup
        self._stopped = False
        # The --env-vars file for sam local containers (docker=True only).
        self.sam_env_path: Path | None = None

    @property
    def api_url(self) -> str:
        """``http://127.0.0.1:<port>`` of the HTTP API."""
        return self._api_server.url

    @property
    def moto_url(self) -> str:
        """``http://127.0.0.1:<port>`` of moto (``AWS_ENDPOINT_URL``)."""
        return self._moto.url

    @property
    def urls(self) -> StackUrls:
        """Every URL worth printing."""
        return StackUrls(
            api=self.api_url,
            quickstart=self.api_url + "/",
            sandbox_api=self.sandbox.api_origin + "/{bank_code}",
            sandbox_screens=self.sandbox.screens_origin + "/{bank_code}",
            moto=self.moto_url,
        )

    @property
    def ports(self) -> dict[str, int]:
        """``api``, ``moto``, ``sandbox`` and ``sandbox_screens`` ports (useful with port 0)."""
        return {
            "api": self._api_server.port,
            "moto": self._moto.get_host_and_port()[1],
            "sandbox": int(self.sandbox.api_origin.rsplit(":", 1)[1]),
            "sandbox_screens": int(self.sandbox.screens_origin.rsplit(":", 1)[1]),
        }

    def token(self, user: str) -> str:
        """An access token for ``user`` from the local issuer (what ``/_local/token?user=`` returns)."""
        return self._issuer.issue(user)

    def server_token(self, client: str = "backend", scopes: Sequence[str] | None = None) -> str:
        """A server token of the fintech's backend (``/_local/token?client=&scope=``), by default with the
        unattended scope."""
        issuer = self._issuer
        return issuer.issue_server(client, issuer.server_scopes[:1] if scopes is None else scopes)

    @property
    def _issuer(self) -> LocalIssuer:
        if self.api.issuer is None:
            raise StackError("the template has no JWT authorizer: no local issuer")
        return self.api.issuer

    def schedule_timer(self, function: str | None = None) -> ScheduleTimer:
        """The timer of ``function`` (default: the only scheduled function), running or not."""
        if function is None:
            if len(self.timers) != 1:
                raise StackError(f"name the scheduled function: {sorted(self.timers)}")
            return next(iter(self.timers.values()))
        return self.timers[function]

    def tick(self, function: str | None = None) -> Any:
        """Invoke a scheduled function once, now (the e2e tests' "refresher tick")."""
        return self.schedule_timer(function).tick()

    def deliver_logs(self) -> int:
        """Deliver the log lines every subscription filter has collected, now (instead of within a second);
        returns how many lines their destinations took."""
        return sum(subscription.deliver() for subscription in self.subscriptions)

    def stop(self) -> None:
        """Stop the timers, the API, the sandbox and moto; restore the environment and modules; free the ports."""
        if self._stopped:
            return
        self._stopped = True
        self._cleanup.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.stop()


def _start_sandbox(  # noqa: PLR0913 - the sandbox's settings the stack decides
    *,
    host: str,
    bind_all: bool,
    port: int,
    screens_port: int,
    certs_dir: Path,
    redirect_uri: str,
    admin: bool | None,
) -> RunningSandbox:
    # Imported here: the sandbox verifies signatures with the layer (aisp), which is on sys.path only now.
    from sandbox.server import SandboxConfig, start_sandbox  # noqa: PLC0415

    config = SandboxConfig(
        host=host,
        bind_all=bind_all,
        port=port,
        screens_port=screens_port,
        certs_dir=certs_dir,
        redirect_uris=(redirect_uri,),
        admin=admin,
    )
    return start_sandbox(config)


def local_issuer(
    app: LocalApp, parameters: Mapping[str, str | list[str] | None], *, key: rsa.RSAPrivateKey | None = None
) -> LocalIssuer | None:
    """The local identity provider for the template's first JWT authorizer (``None`` without one).

    Server tokens carry the template's ``UnattendedScope`` and ``AttendedProxyScope`` values, and
    ``BackendJwtAudience`` as their audience when it is set (the authorizer then accepts it too).
    """
    if not app.authorizers:
        return None
    first = app.authorizers[0]
    others = [a.name for a in app.authorizers[1:] if (a.issuer, a.audiences) != (first.issuer, first.audiences)]
    if others:
        logger.warning("local tokens satisfy %s only, not %s", first.name, ", ".join(others))
    if not first.audiences:
        raise StackError(f"authorizer {first.name} accepts no audience")
    scopes = [parameters.get(name) for name in SERVER_SCOPE_PARAMETERS]
    backend_audience = parameters.get(BACKEND_AUDIENCE_PARAMETER)
    return LocalIssuer(
        issuer=first.issuer,
        audience=first.audiences[0],
        key=key,
        server_scopes=[scope for scope in scopes if isinstance(scope, str)],
        server_audience=backend_audience if isinstance(backend_audience, str) and backend_audience else None,
    )


def _timers(
    template: LocalTemplate,
    app: LocalApp,
    functions: Mapping[str, FunctionRuntime],
    refresher_interval: float | Literal["template"] | None,
) -> dict[str, ScheduleTimer]:
    timers: dict[str, ScheduleTimer] = {}
    for schedule in app.schedules:
        rate = schedule.interval_seconds or DEFAULT_SCHEDULE_INTERVAL
        custom = isinstance(refresher_interval, int | float) and refresher_interval > 0
        interval = float(refresher_interval) if custom else rate  # type: ignore[arg-type]
        timers[schedule.function] = ScheduleTimer(template, schedule, functions[schedule.function], interval=interval)
    return timers


def _controls(
    timers: Mapping[str, ScheduleTimer],
    functions: Mapping[str, FunctionRuntime],
    sandbox: RunningSandbox,
    moto_url: str,
    resources: Mapping[str, ResourceValue],
) -> LocalControls:
    from sandbox.admin import MAX_ADVANCE_SECONDS  # noqa: PLC0415 - as _start_sandbox

    sync_table = resources.get(SYNC_TABLE)
    return LocalControls(
        schedules={name: timer.tick for name, timer in timers.items()},
        functions=frozenset(functions),
        sandbox=SandboxAdmin(
            admin_url=sandbox.admin_url,
            ca_path=str(sandbox.ca_path),
            client_cert=sandbox.client_cert,
            max_advance_seconds=MAX_ADVANCE_SECONDS,
        ),
        moto_url=moto_url,
        sync_table=sync_table.ref if sync_table is not None else None,
    )


def _subscriptions(
    app: LocalApp, functions: Mapping[str, FunctionRuntime], resources: Mapping[str, ResourceValue]
) -> tuple[SubscriptionDelivery, ...]:
    deliveries = []
    for subscription in app.subscriptions:
        group = resources.get(subscription.log_group)
        if group is None:
            raise TemplateError(f"{subscription.name}.LogGroupName: {subscription.log_group} was not created locally")
        destination = functions[subscription.destination]
        deliveries.append(SubscriptionDelivery(subscription, destination, log_group=group.ref))
    return tuple(deliveries)


def start_stack(
    *,
    host: str = "127.0.0.1",
    api_port: int = 3000,
    moto_port: int = 5000,
    sandbox_port: int = 8443,
    sandbox_screens_port: int = 8080,
    refresher_interval: float | Literal["template"] | None = None,
    template: Path = DEFAULT_TEMPLATE,
    state_dir: Path = DEFAULT_STATE_DIR,
    sandbox_admin: bool | None = None,
    parameter_overrides: Mapping[str, str] | None = None,
    docker: bool = False,
    allowed_origins: Sequence[str] = (),
    docker_network: Literal["bridge", "host"] = "bridge",
) -> RunningStack:
    """Start moto, the offline sandbox and the template's HTTP API; every port may be 0 (a free one).

    Parameters
    ----------
    host
        Loopback address every listener binds.
    api_port, moto_port, sandbox_port, sandbox_screens_port
        Listening ports.
    refresher_interval
        Seconds between invocations of each scheduled function (the refresher); ``"template"``: each schedule's
        own ``rate(...)`` (300 s for a cron expression); ``None`` or 0: no timer (call :meth:`RunningStack.tick`).
    template
        The SAM template to serve.
    state_dir
        Where the sandbox's certificates (and the TPP credentials) are created or reused.
    sandbox_admin
        Enable the sandbox's ``/_admin`` API (``None``: ``SANDBOX_ADMIN=1`` decides).
    parameter_overrides
        Template parameter values that win over the local ones.
    docker
        For ``sam local`` containers: ``state_dir/sam-env.json`` (``--env-vars``) is written. The HTTP API and the
        local JWT issuer stay on ``host``.
    allowed_origins
        Browser origins the API allows (CORS), beside ``http://localhost:<api port>``.
    docker_network
        With ``docker``, where the containers run. ``"bridge"`` (Docker's default): moto and the sandbox also
        listen on every interface and containers reach them as ``host.docker.internal``. ``"host"`` (containers
        share this machine's network, ``scripts/sam_cli.py``): nothing listens beyond ``host``, which the
        containers use too.

    Raises
    ------
    TemplateError
        The template cannot be served locally (the message names the resource or reference).
    StackError
        Another stack runs in this process.
    OSError
        A port is in use.
    """
    if not _running.acquire(blocking=False):
        raise StackError("a local stack is already running in this process: stop it first")
    # Callbacks run in reverse order on stop (or on a failed start): timers, API, sandbox, moto, then the process.
    with contextlib.ExitStack() as cleanup:
        cleanup.callback(_running.release)
        local_template = LocalTemplate.load(template)
        layers = LayerModules(tuple(local_template.layer_dirs().values()))
        cleanup.callback(layers.restore)
        process_environment = ProcessEnvironment()
        cleanup.callback(process_environment.restore)
        cleanup.callback(_clear_parameter_caches)
        api_server = ApiServer(host, api_port)
        cleanup.callback(api_server.stop)
        # 0.0.0.0 only on request: moto has no authentication (its secret holds the sandbox's TPP test keys).
        bind_all = docker and docker_network == "bridge"
        moto = LocalMotoServer("0.0.0.0" if bind_all else host, moto_port, url_host=host)  # noqa: S104
        moto.start()
        cleanup.callback(moto.stop)
        reset_moto(moto.url)
        sandbox = _start_sandbox(
            host=host,
            bind_all=bind_all,
            port=sandbox_port,
            screens_port=sandbox_screens_port,
            certs_dir=state_dir / "certs",
            redirect_uri=f"{api_server.url}/oauth/callback",
            admin=sandbox_admin,
        )
        cleanup.callback(sandbox.stop)
        parameters = local_template.parameter_values(
            {**local_parameters(api_server.url, sandbox, allowed_origins), **(parameter_overrides or {})}
        )
        resolver = Resolver(local_template.data, parameters=parameters)
        resources = provision(local_template, resolver, endpoint_url=moto.url)
        secret_name = parameters.get(BANK_SECRET_PARAMETER)
        if not isinstance(secret_name, str):
            raise TemplateError(f"Parameters.{BANK_SECRET_PARAMETER}: needed to create the bank-credentials secret")
        create_secret(secret_name, sandbox.credentials, endpoint_url=moto.url)
        app = local_template.app(resolver)
        environment = merged_environment(app.functions, runtime_environment(moto.url))
        process_environment.apply(environment)
        layers.isolate()
        _clear_parameter_caches()
        functions = load_functions(app)
        timers = _timers(local_template, app, functions, refresher_interval)
        controls = _controls(timers, functions, sandbox, moto.url, resources)
        api = LocalApi(app, functions, issuer=local_issuer(app, parameters), controls=controls)
        api_server.start(api)
        cleanup.callback(api_server.stop)  # again, so that it stops first (stop is idempotent)
        for timer in timers.values():
            cleanup.callback(timer.stop)
        subscriptions = _subscriptions(app, functions, resources)
        for subscription in subscriptions:
            subscription.attach()
            cleanup.callback(subscription.detach)
        if refresher_interval == "template" or (refresher_interval is not None and refresher_interval > 0):
            for timer in timers.values():
                timer.start()
        stack = RunningStack(
            template=local_template,
            app=app,
            api_server=api_server,
            api=api,
            moto=moto,
            sandbox=sandbox,
            resources=resources,
            environment=environment,
            secret_name=secret_name,
            timers=timers,
            cleanup=cleanup.pop_all(),
            subscriptions=subscriptions,
        )
    if docker:
        docker_host = host if docker_network == "host" else DOCKER_HOST
        stack.sam_env_path = write_sam_env(stack, state_dir / SAM_ENV_FILE, docker_host=docker_host)
    return stack


__all__ = [
    "DEFAULT_STATE_DIR",
    "DEFAULT_TEMPLATE",
    "RunningStack",
    "StackError",
    "StackUrls",
    "local_issuer",
    "start_stack",
]
