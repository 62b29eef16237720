"""`nuvem`: run the platform and drive it."""

from __future__ import annotations

import functools
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console

from nuvem import __version__

# The commands' own modules load with the command: `nuvem up` needs none of them, and
# they import the HTTP client, Ray's and Grafana's helpers (~0.1 s of every start).
from nuvem.cli import context, help_style
from nuvem.errors import NuvemError
from nuvem.startup_marks import mark

F = TypeVar("F", bound=Callable[..., Any])

HELP = """nuvem: a self-hosted serverless platform for AI.

Environment:
  NUVEM_URL             the gateway (default: the state folder's, or :8080)
  NUVEM_STATE_DIR       where `nuvem up` keeps its state and records its URL
  NUVEM_ADMIN_PASSWORD  the admin password (default: read from the state folder)
  NUVEM_API_KEY         the API key `invoke` and `jobs` call with"""

help_style.apply()
app = typer.Typer(
    name="nuvem",
    help=HELP,
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
err = Console(stderr=True)


def handle_errors(command: F) -> F:
    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except NuvemError as exc:
            err.print(f"[red]error:[/red] {exc}", highlight=False, soft_wrap=True)
            raise typer.Exit(exc.exit_code) from None

    return wrapper  # type: ignore[return-value]


def _print_version(value: bool) -> None:
    if value:
        sys.stdout.write(f"nuvem {__version__}\n")
        raise typer.Exit()


@app.callback()
def options(
    url: Annotated[
        str | None,
        typer.Option(
            "--url",
            metavar="URL",
            help="the gateway to talk to (default: NUVEM_URL, else the state folder's)",
        ),
    ] = None,
    version: Annotated[
        bool,
        typer.Option("--version", is_eager=True, callback=_print_version, help="print the version"),
    ] = False,
) -> None:
    context.url_option = url


StateDir = Annotated[
    Path | None,
    typer.Option(
        "--state-dir", help="where records, environments and logs live", envvar="NUVEM_STATE_DIR"
    ),
]
StackFile = Annotated[Path, typer.Option("-f", "--file", help="stack file")]
Method = Annotated[
    str,
    typer.Option(
        "-X",
        "--method",
        metavar="METHOD",
        help="HTTP method the function's handler sees (GET, POST, PUT, DELETE, …)",
    ),
]


@app.command()
@handle_errors
def up(
    file: Annotated[Path | None, typer.Option("-f", "--file", help="stack file to deploy")] = None,
    port: Annotated[int, typer.Option(help="gateway port")] = 8080,
    host: Annotated[str, typer.Option(help="interface to listen on")] = "127.0.0.1",
    state_dir: StateDir = None,
    detach: Annotated[
        bool, typer.Option("--detach", help="run in the background; return once healthy")
    ] = False,
    log_level: Annotated[str, typer.Option(help="debug, info, warning or error")] = "info",
    max_body: Annotated[
        str | None,
        typer.Option(help="largest request body, e.g. 128Mi (NUVEM_MAX_BODY; docs/limits.md)"),
    ] = None,
    max_connections: Annotated[
        int | None,
        typer.Option(help="connections at once, 503 beyond (NUVEM_MAX_CONNECTIONS)", min=1),
    ] = None,
    access_log: Annotated[
        str | None,
        typer.Option(
            help="one line per call on stderr: off, text or json (NUVEM_ACCESS_LOG; "
            "docs/observability.md)"
        ),
    ] = None,
) -> None:
    """Start the gateway and the functions of the stack file (and those deployed before)."""
    mark("cli imported")
    logging.basicConfig(
        level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    logging.getLogger("httpx").setLevel(logging.WARNING)  # not one line per health poll
    # uvicorn and the gateway load only for the commands that run them, and `nuvem up`
    # loads them only once the stack's workers have started (cli/launch.py).
    from nuvem.cli import launch

    chosen = launch.limits(max_body, max_connections)
    if detach:
        launch.access_log_choice(access_log)  # a wrong one fails here, not in the log
        from nuvem.cli import server

        server.detach(sys.argv[1:], file, host, port, state_dir)
    else:
        launch.run(file, host, port, state_dir, chosen, access_log)


@app.command()
@handle_errors
def init(
    folder: Annotated[Path, typer.Argument(help="where to write the files")] = Path("."),
    ci: Annotated[
        str | None,
        typer.Option(
            "--ci",
            help="also a starter CI workflow that tests, packages and deploys: github "
            "(.github/workflows/nuvem.yml; docs/delivery.md)",
        ),
    ] = None,
    actions_repo: Annotated[
        str,
        typer.Option(
            "--actions-repo",
            help="the GitHub repository the workflow takes nuvem's actions from "
            "(default: nuvem-dev/nuvem; a fork or mirror)",
        ),
    ] = "",
    container: Annotated[
        bool,
        typer.Option(
            "--container",
            help="also a Containerfile serving the same handler as an image (docs/containers.md)",
        ),
    ] = False,
    base: Annotated[
        str,
        typer.Option(
            "--base",
            help="the image the Containerfile builds FROM (any with python3 3.11+; its "
            "BASE build arg in nuvem.yaml)",
        ),
    ] = "docker.io/library/python:3.12-slim",
) -> None:
    """Write a starter stack file (nuvem.yaml) and handler module (functions.py); with
    --container, a Containerfile for the same handler as an image; with --ci, a CI
    workflow too (in a folder with a stack file, only the workflow)."""
    from nuvem.cli.scaffold import init as scaffold

    for path in scaffold(folder, ci, actions_repo, container, base):
        err.print(f"[green]✓[/green] wrote {path}", highlight=False)
    if ci is not None:
        err.print(
            "the workflow deploys to the gateway these name: gh variable set NUVEM_URL "
            "--body https://gw.example.com; gh secret set NUVEM_ADMIN_PASSWORD",
            highlight=False,
        )
    err.print("start it with: nuvem up -f " + str(folder / "nuvem.yaml"), highlight=False)


@app.command("version")
@handle_errors
def version_command(
    only_next: Annotated[
        bool, typer.Option("--next", help="print only the next version (for scripts)")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
    repo: Annotated[
        Path, typer.Option("-C", "--repo", help="the git repository (default: this folder)")
    ] = Path("."),
) -> None:
    """Print the repository's version (its latest vX.Y.Z tag) and the next one its
    Conventional Commits make: feat -> minor, fix/perf -> patch, ! or BREAKING CHANGE ->
    major. `nuvem --version` prints nuvem's own."""
    from nuvem.cli import version

    version.show(repo, only_next, as_json)


@app.command()
@handle_errors
def down(state_dir: StateDir = None) -> None:
    """Stop the platform: calls in flight finish, replicas drain, then it exits."""
    from nuvem.cli import server

    server.shutdown(state_dir)


@app.command()
@handle_errors
def deploy(
    file: StackFile = Path("nuvem.yaml"),
    wait: Annotated[bool, typer.Option(help="wait until the functions are ready")] = True,
    timeout: Annotated[float, typer.Option(help="seconds to wait")] = 600.0,
    replace: Annotated[
        bool, typer.Option("--replace", help="take over functions another stack deployed")
    ] = False,
    bundle: Annotated[
        Path | None,
        typer.Option("--bundle", help="deploy this bundle (from `nuvem package`) as it is"),
    ] = None,
    upload: Annotated[
        bool | None,
        typer.Option(
            "--upload/--no-upload",
            help="package the stack and upload the bundle (default: when --url names the "
            "gateway); --no-upload sends the stack file's folder path",
        ),
    ] = None,
    version: Annotated[
        str | None, typer.Option("--version", help="the bundle's version (default: git tag)")
    ] = None,
    rollback_on_failure: Annotated[
        bool,
        typer.Option(
            "--rollback-on-failure",
            help="a bundle whose functions do not get ready is undone: updated ones roll "
            "back, new ones are removed",
        ),
    ] = False,
    state_dir: StateDir = None,
) -> None:
    """Add or update the stack file's functions on the running platform.

    With --url (a gateway on another machine), --upload or --bundle, the stack goes as a
    bundle: packaged, uploaded, stored and deployed by the gateway."""
    from nuvem.cli.deploy import deploy as deploy_stack
    from nuvem.cli.package import deploy_bundle, package

    if upload is None:
        upload = bundle is not None or context.url_option is not None
    if not upload:
        if rollback_on_failure:
            raise typer.BadParameter(
                "--rollback-on-failure needs a bundle deploy: add --upload or --bundle FILE "
                "(a folder deploy leaves the gateway no earlier copy to return to)"
            )
        deploy_stack(file, wait, timeout, replace, state_dir)
        return
    if bundle is None:
        bundle = package(file, None, version)
    deploy_bundle(bundle, wait, timeout, replace, state_dir, rollback_on_failure)


@app.command("package")
@handle_errors
def package_stack(
    file: StackFile = Path("nuvem.yaml"),
    out_dir: Annotated[
        Path | None, typer.Option("-o", "--out", help="folder to write to (default: dist/)")
    ] = None,
    version: Annotated[
        str | None,
        typer.Option("--version", help="the bundle's version (default: the git tag at HEAD)"),
    ] = None,
) -> None:
    """Build the stack's bundle: its functions' files, the stack file, a manifest.

    The same files give the same bytes; prints the bundle's path."""
    from nuvem.cli.package import package

    package(file, out_dir, version)


@app.command()
@handle_errors
def rollback(
    name: str,
    to: Annotated[
        str | None, typer.Option("--to", help="the version (default: the one before)")
    ] = None,
    wait: Annotated[bool, typer.Option(help="wait until the function is ready")] = True,
    timeout: Annotated[float, typer.Option(help="seconds to wait")] = 600.0,
    state_dir: StateDir = None,
) -> None:
    """Return a function to a version the gateway kept (a rolling update)."""
    from nuvem.cli.package import rollback as roll_back

    roll_back(name, to, wait, timeout, state_dir)


@app.command()
def plan(
    file: StackFile = Path("nuvem.yaml"),
    as_json: Annotated[bool, typer.Option("--json", help="print the plan as JSON")] = False,
    state_dir: StateDir = None,
) -> None:
    """Show what `nuvem apply` would change: functions, pools and their machines, drift.

    Exits 0 when nothing would change, 2 when something would, 1 on an error (as
    `terraform plan -detailed-exitcode`)."""
    try:
        from nuvem.cli import stack

        code = stack.plan(file, as_json, state_dir)
    except NuvemError as exc:
        # Every error is 1 here: 2 must mean "changes" to the scripts that ask.
        err.print(f"[red]error:[/red] {exc}", highlight=False, soft_wrap=True)
        raise typer.Exit(1) from None
    raise typer.Exit(code)


@app.command()
@handle_errors
def apply(
    file: StackFile = Path("nuvem.yaml"),
    wait: Annotated[bool, typer.Option(help="wait until the functions are ready")] = True,
    timeout: Annotated[float, typer.Option(help="seconds to wait")] = 600.0,
    state_dir: StateDir = None,
) -> None:
    """Make the platform match the stack file: deploy new and changed functions, remove
    those not in it, set the pools."""
    from nuvem.cli import stack

    stack.apply(file, wait, timeout, state_dir)


@app.command()
@handle_errors
def destroy(
    file: StackFile = Path("nuvem.yaml"),
    yes: Annotated[bool, typer.Option("--yes", "-y", help="do not ask for confirmation")] = False,
    state_dir: StateDir = None,
) -> None:
    """Remove the stack file's functions and every machine of its pools."""
    from nuvem.cli import stack

    stack.destroy(file, yes, state_dir)


@app.command("ls")
@handle_errors
def list_functions(
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
    wide: Annotated[bool, typer.Option("--wide", help="every column, whatever the width")] = False,
    state_dir: StateDir = None,
) -> None:
    """List the deployed functions."""
    from nuvem.cli import functions

    functions.show_list(as_json, wide, state_dir)


@app.command()
@handle_errors
def rm(name: str, state_dir: StateDir = None) -> None:
    """Remove a function (its replicas drain first)."""
    from nuvem.cli import functions

    functions.remove(name, state_dir)


@app.command()
@handle_errors
def invoke(
    name: str,
    data: Annotated[
        str | None, typer.Option("-d", "--data", help="body; '-' or absent reads stdin")
    ] = None,
    path: Annotated[str, typer.Option(help="extra path after the function name")] = "",
    method: Method = "POST",
    header: Annotated[
        list[str] | None, typer.Option("-H", "--header", help="'Name: value'")
    ] = None,
    state_dir: StateDir = None,
) -> None:
    """Call a function and print its answer."""
    from nuvem.cli import functions

    functions.invoke(name, data, path, method, header or [], state_dir)


@app.command()
@handle_errors
def scale(name: str, replicas: int, state_dir: StateDir = None) -> None:
    """Set a function's replica count (within its scaling bounds)."""
    from nuvem.cli import functions

    functions.scale(name, replicas, state_dir)


@app.command()
@handle_errors
def logs(
    names: Annotated[list[str], typer.Argument(metavar="NAME", help="one function or several")],
    tail: Annotated[int | None, typer.Option(help="last N lines of each only")] = None,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="keep printing new lines")] = False,
    state_dir: StateDir = None,
) -> None:
    """Print functions' log lines; with several, merged in time order and prefixed by name."""
    from nuvem.cli import functions

    functions.logs(names, tail, follow, state_dir)


@app.command()
@handle_errors
def events(
    function: Annotated[str | None, typer.Option(help="only this function's events")] = None,
    limit: Annotated[int, typer.Option(min=1, help="how many of the latest events")] = 50,
    detail: Annotated[
        int | None, typer.Option(metavar="ID", help="print one event whole, with its data")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
    state_dir: StateDir = None,
) -> None:
    """Print recent platform events, one line each: deploys, scaling, replica deaths."""
    from nuvem.cli import events as event_lines

    event_lines.show(function, limit, detail, as_json, state_dir)


@app.command()
@handle_errors
def top(
    interval: Annotated[float, typer.Option(help="seconds between refreshes")] = 1.0,
    once: Annotated[bool, typer.Option("--once", help="print one frame and exit")] = False,
    wide: Annotated[bool, typer.Option("--wide", help="every column, whatever the width")] = False,
    state_dir: StateDir = None,
) -> None:
    """Show functions, replicas, load and recent scaling decisions, live."""
    from nuvem.cli import top as top_view

    top_view.run(interval, once, wide, state_dir)


keys_app = typer.Typer(help="API keys for invoking functions.", no_args_is_help=True)
app.add_typer(keys_app, name="keys")


@keys_app.command("create")
@handle_errors
def keys_create(
    name: Annotated[str, typer.Option(help="a label for the key")] = "",
    functions_: Annotated[
        str | None, typer.Option("--functions", help="comma-separated functions it may invoke")
    ] = None,
    rate: Annotated[
        float | None,
        typer.Option(min=0, help="calls per second on average (0: none; default: the gateway's)"),
    ] = None,
    burst: Annotated[int | None, typer.Option(min=1, help="calls at once")] = None,
    state_dir: StateDir = None,
) -> None:
    """Create an API key and print it (alone, on stdout). It is shown only once."""
    from nuvem.cli import keys

    keys.create(name, functions_, rate, burst, state_dir)


@keys_app.command("limit")
@handle_errors
def keys_limit(
    key_id: str,
    rate: Annotated[
        float | None,
        typer.Option(min=0, help="calls per second on average (0: no limit)"),
    ] = None,
    burst: Annotated[int | None, typer.Option(min=1, help="calls at once")] = None,
    default: Annotated[
        bool, typer.Option("--default", help="back to the gateway's NUVEM_RATE_LIMIT")
    ] = False,
    state_dir: StateDir = None,
) -> None:
    """Set an API key's own rate limit, at once and without a new key."""
    from nuvem.cli import keys

    keys.limit(key_id, rate, burst, default, state_dir)


@keys_app.command("ls")
@handle_errors
def keys_ls(
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
    wide: Annotated[bool, typer.Option("--wide", help="every column, whatever the width")] = False,
    state_dir: StateDir = None,
) -> None:
    """List API keys (never their secrets)."""
    from nuvem.cli import keys

    keys.show_list(as_json, wide, state_dir)


@keys_app.command("revoke")
@handle_errors
def keys_revoke(key_id: str, state_dir: StateDir = None) -> None:
    """Revoke an API key by its id."""
    from nuvem.cli import keys

    keys.revoke(key_id, state_dir)


jobs_app = typer.Typer(help="Async jobs: submit, follow and collect.", no_args_is_help=True)
app.add_typer(jobs_app, name="jobs")


@jobs_app.command("submit")
@handle_errors
def jobs_submit(
    name: str,
    data: Annotated[
        str | None, typer.Option("-d", "--data", help="body; '-' or absent reads stdin")
    ] = None,
    path: Annotated[str, typer.Option(help="extra path after the function name")] = "",
    method: Method = "POST",
    header: Annotated[
        list[str] | None, typer.Option("-H", "--header", help="'Name: value'")
    ] = None,
    callback_url: Annotated[
        str | None, typer.Option("--callback-url", help="POST the result here when done")
    ] = None,
    idempotency_key: Annotated[
        str | None,
        typer.Option("--idempotency-key", help="submitting again with it gives the same job"),
    ] = None,
    wait: Annotated[bool, typer.Option(help="wait for the result and print it")] = False,
    timeout: Annotated[float, typer.Option(help="seconds --wait waits")] = 3600.0,
    state_dir: StateDir = None,
) -> None:
    """Queue a call; print its job id (or, with --wait, its result)."""
    from nuvem.cli import jobs

    jobs.submit(
        name,
        data,
        path,
        method,
        header or [],
        callback_url,
        idempotency_key,
        wait,
        timeout,
        state_dir,
    )


@jobs_app.command("status")
@handle_errors
def jobs_status(
    job_id: str,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
    state_dir: StateDir = None,
) -> None:
    """Show a job's state, attempts and callback."""
    from nuvem.cli import jobs

    jobs.status(job_id, as_json, state_dir)


@jobs_app.command("result")
@handle_errors
def jobs_result(
    job_id: str,
    wait: Annotated[bool, typer.Option(help="wait until the job has finished")] = True,
    timeout: Annotated[float, typer.Option(help="seconds to wait")] = 3600.0,
    state_dir: StateDir = None,
) -> None:
    """Print a finished job's answer (exit 7 when the function answered an error)."""
    from nuvem.cli import jobs

    jobs.result(job_id, wait, timeout, state_dir)


@jobs_app.command("ls")
@handle_errors
def jobs_ls(
    function: Annotated[str | None, typer.Option(help="only this function's jobs")] = None,
    state: Annotated[str | None, typer.Option(help="queued, running, succeeded, ...")] = None,
    limit: int = 50,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
    wide: Annotated[bool, typer.Option("--wide", help="every column, whatever the width")] = False,
    state_dir: StateDir = None,
) -> None:
    """List jobs, newest first."""
    from nuvem.cli import jobs

    jobs.show_list(function, state, limit, as_json, wide, state_dir)


@jobs_app.command("cancel")
@handle_errors
def jobs_cancel(job_id: str, state_dir: StateDir = None) -> None:
    """Cancel a queued or running job."""
    from nuvem.cli import jobs

    jobs.cancel(job_id, state_dir)


node_app = typer.Typer(
    help="This machine as a node of a Ray cluster: join, leave, and the cluster token.",
    no_args_is_help=True,
)
app.add_typer(node_app, name="node")


@node_app.command("join")
@handle_errors
def node_join(
    address: Annotated[str, typer.Argument(help="the Ray head's HOST:PORT")],
    token_file: Annotated[
        Path, typer.Option("--token-file", help="the cluster token (a file only you may read)")
    ],
    node_ip: Annotated[
        str | None,
        typer.Option(
            "--node-ip",
            help="the address this node is reached at; default: the one facing the head",
        ),
    ] = None,
    cpus: Annotated[int | None, typer.Option(min=0, help="CPUs to offer; default: all")] = None,
    gpus: Annotated[
        int | None, typer.Option(min=0, help="GPUs to offer; default: all found")
    ] = None,
    memory: Annotated[
        str | None, typer.Option(help="memory to offer, e.g. 8Gi; default: all")
    ] = None,
    label: Annotated[
        list[str] | None, typer.Option("--label", help="key=value, once per label")
    ] = None,
    object_store_memory: Annotated[
        str, typer.Option(help="shared memory for Ray's object store, e.g. 256Mi")
    ] = "256Mi",
    drain_timeout: Annotated[
        float, typer.Option(min=0, help="seconds a leaving node waits for its work to move")
    ] = 30.0,
    detach: Annotated[
        bool, typer.Option("--detach", help="run in the background; return once joined")
    ] = False,
    rejoin: Annotated[
        bool, typer.Option(help="join again by itself when the node is lost (network cut)")
    ] = True,
    worker_ports: Annotated[
        str | None,
        typer.Option(
            help="FIRST-LAST ports for the node's workers (apart for nodes sharing a machine); "
            "default: {MIN_WORKER_PORT}-{MAX_WORKER_PORT}"
        ),
    ] = None,
    temp_dir: Annotated[
        Path | None,
        typer.Option(
            help="Ray's session folder for this node (short: it holds Unix sockets); "
            "default: the head's"
        ),
    ] = None,
    container_engine: Annotated[
        str,
        typer.Option(
            help="what runs image functions here: auto (Docker if its API answers, else "
            "podman, else none), podman, docker or none; advertised as a node label"
        ),
    ] = "auto",
    state_dir: StateDir = None,
) -> None:
    """Make this machine a node of the cluster at HOST:PORT; Ctrl-C drains it and leaves."""
    from nuvem.cli import nodes

    code = nodes.join(
        address,
        token_file,
        node_ip,
        cpus,
        gpus,
        memory,
        label or [],
        object_store_memory,
        drain_timeout,
        detach,
        state_dir,
        rejoin=rejoin,
        worker_ports=worker_ports,
        temp_dir=temp_dir,
        container_engine=container_engine,
    )
    if code:
        raise typer.Exit(code)


@node_app.command("leave")
@handle_errors
def node_leave(state_dir: StateDir = None) -> None:
    """Drain the node this machine runs (`nuvem node join --detach`) and leave the cluster."""
    from nuvem.cli import nodes

    nodes.leave(state_dir)


@node_app.command("token")
@handle_errors
def node_token(
    command: Annotated[
        bool, typer.Option("--command", help="print the whole join command instead")
    ] = False,
    state_dir: StateDir = None,
) -> None:
    """Print the cluster token of this gateway's Ray head (it is a secret)."""
    from nuvem.cli import nodes

    nodes.token(command, state_dir)


@app.command("nodes")
@handle_errors
def list_nodes(
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
    everything: Annotated[
        bool, typer.Option("--all", help="also the earlier, dead entries of rejoined nodes")
    ] = False,
    address: Annotated[
        str | None, typer.Option(help="the head's HOST:PORT; default: this gateway's")
    ] = None,
    token_file: Annotated[
        Path | None, typer.Option("--token-file", help="default: this gateway's token")
    ] = None,
    state_dir: StateDir = None,
) -> None:
    """List the cluster's nodes: address, state, resources in use and labels."""
    from nuvem.cli import nodes

    nodes.show_list(as_json, everything, address, token_file, state_dir)


observability_app = typer.Typer(
    help="Grafana dashboards, Prometheus alert rules and scrape config, as files.",
    no_args_is_help=True,
)
app.add_typer(observability_app, name="observability")


@observability_app.command("export")
@handle_errors
def observability_export(
    directory: Annotated[Path, typer.Argument(help="the folder to write into")],
    gateway: Annotated[
        str | None,
        typer.Option(
            help="the gateway's URL as Prometheus reaches it; default: the one the other "
            "commands talk to (--url, NUVEM_URL, the state folder's)"
        ),
    ] = None,
    prometheus_url: Annotated[
        str, typer.Option("--prometheus", help="Prometheus' URL as Grafana reaches it")
    ] = "http://127.0.0.1:9090",
    alertmanager: Annotated[
        str, typer.Option(help="Alertmanager's HOST:PORT as Prometheus reaches it")
    ] = "127.0.0.1:9093",
    metrics_auth: Annotated[
        bool | None,
        typer.Option(
            "--metrics-auth/--no-metrics-auth",
            help="scrape /metrics with the admin password; default: when NUVEM_OPEN_METRICS=0",
        ),
    ] = None,
    force: Annotated[bool, typer.Option(help="overwrite files already in the folder")] = False,
    state_dir: StateDir = None,
) -> None:
    """Write Grafana dashboards and provisioning, prometheus.yml, the alert rules with their
    unit tests, and an alertmanager.yml that sends scaling alerts to /system/alert."""
    from nuvem.cli import observability

    observability.export(
        directory, gateway, prometheus_url, alertmanager, metrics_auth, force, state_dir
    )


def main() -> None:
    app()


if __name__ == "__main__":
    main()
