"""The ``headway`` commands of the control plane itself: run it (here, or at boot as a
systemd unit), start and stop it, its API's token and address, the dashboard's URL, and
the shell's tab completion."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from headway.cli.cli_common import _emit, _fail, _on_control_host, json_option, main, out
from headway.plan import watchdog
from headway.state import daemon_info, db


@main.group("controller")
def controller_group() -> None:
    """The control plane that watches every service and replaces dead heads and workers."""


@controller_group.command("run")
@click.option(
    "--failure-threshold",
    type=click.IntRange(1, 100),
    default=lambda: int(os.environ.get("HEADWAY_HEAD_FAILURE_THRESHOLD", watchdog.FAILURE_THRESHOLD)),
    show_default=f"{watchdog.FAILURE_THRESHOLD} or $HEADWAY_HEAD_FAILURE_THRESHOLD",
    help="failed GCS health checks in a row before a live head is declared dead",
)
@click.option(
    "--period",
    type=click.FloatRange(0.1, 10),
    default=lambda: float(os.environ.get("HEADWAY_PROBE_PERIOD_S", watchdog.PROBE_PERIOD_S)),
    show_default=f"{watchdog.PROBE_PERIOD_S} or $HEADWAY_PROBE_PERIOD_S",
    help="seconds between two probes of a head",
)
def controller_run(failure_threshold: int, period: float) -> None:
    """Run the controller in the foreground (deploy starts one in the background)."""
    _on_control_host("controller run")
    args = ["--failure-threshold", str(failure_threshold), "--period", str(period)]
    os.execv(
        sys.executable, [sys.executable, "-m", "headway.daemon", *args]
    )  # the same PID, as a service manager wants


@controller_group.command("unit")
@click.option(
    "--env-file",
    "env_path",
    default=None,
    metavar="FILE",
    help="the configuration file the controller reads ($HEADWAY_CONTROLLER_ENV, else /etc/headway/controller.env)",
)
def controller_unit(env_path: str | None) -> None:
    """Print a systemd unit that runs the controller at boot and after a crash (leader or
    standby: the same unit; the lease decides). Its settings come from the env file."""
    _on_control_host("controller unit")
    import getpass

    from headway.plan.systemd_units import Unit, render
    from headway.system import env_file, paths

    config = Path(env_path).resolve() if env_path else env_file.path()
    unit = Unit(
        name="headway-controller.service",
        description="headway control plane (leader or standby: the lease decides)",
        exec_start=[sys.executable, "-m", "headway.daemon"],
        environment={"HEADWAY_HOME": str(paths.home_path().resolve()), "HEADWAY_CONTROLLER_ENV": str(config)},
        environment_file=str(config),
        user=None if os.geteuid() == 0 else getpass.getuser(),
        kill_mode="process",  # its nodes, stores and endpoints outlive a restart of the controller
    )
    click.echo(
        f"# headway controller unit > /etc/systemd/system/{unit.name}\n"
        f"# systemctl daemon-reload && systemctl enable --now {unit.name.removesuffix('.service')}\n" + render(unit),
        nl=False,
    )


@controller_group.command("start")
@json_option
def controller_start(as_json: bool) -> None:
    """Start the controller in the background unless one runs."""
    _on_control_host("controller start")
    try:
        pid = daemon_info.start()
    except RuntimeError as exc:
        _fail(str(exc))
    role = daemon_info.role() or "leader"
    if not _emit({"pid": pid, "role": role, "log": str(daemon_info.logfile())}, as_json):
        out.print(f"controller {pid} runs{_as_standby(role)}; log: {daemon_info.logfile()}")


def _as_standby(role: str | None) -> str:
    return " as a standby (it takes over when the leader's lease runs out)" if role == "standby" else ""


@controller_group.command("stop")
@json_option
def controller_stop(as_json: bool) -> None:
    """Stop the controller. Services keep serving; nothing repairs them until it runs again."""
    _on_control_host("controller stop")
    pid = daemon_info.stop()
    if not _emit({"stopped": pid}, as_json):
        out.print(f"controller {pid} stopped" if pid else "no controller runs")


@controller_group.command("status")
@json_option
def controller_status(as_json: bool) -> None:
    """Whether the controller runs here (exit 1 when not)."""
    _on_control_host("controller status")
    pid, role, log = daemon_info.running_pid(), daemon_info.role(), daemon_info.logfile()
    if not _emit({"running": pid is not None, "pid": pid, "role": role, "log": str(log)}, as_json):
        out.print(f"controller {pid} runs{_as_standby(role)}; log: {log}" if pid else "no controller runs")
    if not pid:
        sys.exit(1)


@main.group("api")
def api_group() -> None:
    """The control plane's REST API (docs at /docs, metrics at /metrics)."""


@api_group.command("token")
@click.option("--metrics", is_flag=True, help="the read-only token that opens /metrics only (for Prometheus)")
@json_option
def api_token(metrics: bool, as_json: bool) -> None:
    """Print the API token (Authorization: Bearer ...); made at the control plane's first start."""
    _on_control_host("api token")
    value = db.metrics_token() if metrics else db.api_token()
    if not _emit({"token": value, "scope": "metrics" if metrics else "api"}, as_json):
        click.echo(value)


@api_group.command("url")
@json_option
def api_url(as_json: bool) -> None:
    """Print where the API listens (starting the control plane if needed)."""
    from headway.cli import client

    try:
        url = client.ensure().base_url
    except (client.ApiError, RuntimeError) as exc:
        _fail(str(exc))
    if not _emit({"url": url}, as_json):
        click.echo(url)


@main.command()
@click.option("--grafana", is_flag=True, help="Print a Grafana dashboard (import JSON) of headway's metrics instead.")
@json_option
def dashboard(grafana: bool, as_json: bool) -> None:
    """Print the web dashboard's URL (with the token in its fragment, never sent to a server),
    or with --grafana a dashboard to import into Grafana (a Prometheus that scrapes
    /metrics with 'headway api token --metrics')."""
    from headway.cli import client, target

    if grafana:
        import json

        from headway.plan import grafana as board

        click.echo(json.dumps(board.dashboard(), indent=2))
        return
    remote = target.remote()
    if remote is not None:
        url = f"{remote.url}/#token={remote.token}"
    else:
        try:
            base = client.ensure().base_url
        except (client.ApiError, RuntimeError) as exc:
            _fail(str(exc))
        url = f"{base}/#token={db.api_token()}"
    if not _emit({"url": url}, as_json):
        click.echo(url)


@main.command()
@click.argument("shell", type=click.Choice(["bash", "zsh", "fish"]))
def completion(shell: str) -> None:
    """Print the tab completion script of a shell (commands, options and service names):
    eval "$(headway completion bash)" in ~/.bashrc, or the like."""
    from click.shell_completion import get_completion_class

    cls = get_completion_class(shell)
    assert cls is not None  # the choice admits only the shells click knows
    click.echo(cls(main, {}, "headway", "_HEADWAY_COMPLETE").source())
