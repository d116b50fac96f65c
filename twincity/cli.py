"""The `twincity` command: the embedded platform, each service's processes, and configuration help."""

from __future__ import annotations

import importlib
import os
import secrets
import signal
import socket
import sys
from typing import Any

import click

from services import logs
from services.config import VARIABLES, ConfigError, Settings

# service name -> module with create_app() (and run_worker() for services with a queue)
SERVICES = {
    "gateway": "gateway.app",
    "ideas": "ideas.app",
    "matching": "matching.app",
    "notify": "notify.app",
}


def _settings() -> Settings:
    try:
        return Settings.from_env()
    except ConfigError as exc:
        raise click.ClickException(f"configuration: {exc}") from None


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="twincity")
def main() -> None:
    """Twin City Lab: match project ideas across partner cities, in their own languages."""


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8080, show_default=True, type=click.IntRange(1, 65535), help="Port to listen on.")
@click.option("--empty", is_flag=True, help="Start without the demo lab.")
def dev(host: str, port: int, empty: bool) -> None:
    """Run the whole platform in this one process (in-memory broker and store; keeps nothing)."""
    from werkzeug.serving import make_server

    from twincity.embedded import EmbeddedPlatform

    os.environ.setdefault("LOG_FORMAT", "text")
    settings = _settings()
    if not settings.embedded:
        raise click.ClickException(
            f"`twincity dev` runs on the in-memory broker; AMQP_URL is {settings.amqp_url!r}. "
            "Unset AMQP_URL, or run the services with `twincity <service> web|worker`."
        )
    _check_port(host, port)
    admin_key = settings.admin_key or ("tcl_" + secrets.token_urlsafe(32))
    settings = settings.replace(admin_key=admin_key)
    logs.setup("dev", settings.log_level, settings.log_format)
    platform = EmbeddedPlatform.build(settings).start()
    server = make_server(host, port, platform.gateway, threaded=True)
    url = f"http://{host}:{server.server_port}"
    origin = "from TWINCITY_ADMIN_KEY" if os.environ.get("TWINCITY_ADMIN_KEY") else "made for this run"
    click.echo(
        "\n".join([
            "",
            "  Twin City Lab is running (embedded mode)",
            f"  URL:        {url}",
            f"  Health:     {url}/healthz",
            f"  Admin key:  {admin_key}   ({origin})",
            f"  Services:   gateway, {', '.join(platform.runtimes)} (web and workers in this process)",
            f"  Demo lab:   {'not loaded (--empty)' if empty else 'none to load yet'}",
            "  It keeps nothing: broker and store live in this process's memory and vanish when it stops.",
            "  Stop with Ctrl-C.",
            "",
        ])
    )
    sys.stdout.flush()

    def _interrupt(_signum: int, _frame: Any) -> None:
        raise KeyboardInterrupt  # SIGTERM stops as cleanly as Ctrl-C

    signal.signal(signal.SIGTERM, _interrupt)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        platform.stop()
        click.echo("stopped; nothing was kept")


def _check_port(host: str, port: int) -> None:
    """Fail before starting anything when the address is taken (werkzeug would exit with its own words)."""
    try:
        with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind((host, port))
    except OSError as exc:
        raise click.ClickException(f"cannot listen on {host}:{port}: {exc.strerror}; choose another with --port") \
            from None


def _factory(service: str) -> Any:
    return importlib.import_module(SERVICES[service])


class _Gunicorn:
    """gunicorn's application, built lazily so the app (and its connections) is created after fork."""

    @staticmethod
    def run(service: str, options: dict[str, Any]) -> None:
        from gunicorn.app.base import BaseApplication

        class Application(BaseApplication):  # type: ignore[misc]
            def load_config(self) -> None:
                for key, value in options.items():
                    if value is not None:
                        self.cfg.set(key, value)

            def load(self) -> Any:
                return _factory(service).create_app()

        Application().run()


def _service_group(service: str) -> click.Group:
    @click.group(name=service, help=f"The {service} service's processes.")
    def group() -> None:
        pass

    @group.command(help=f"Serve the {service} web app with gunicorn.")
    @click.option("--bind", default=None, help="host:port (default 0.0.0.0:$PORT).")
    @click.option("--workers", type=click.IntRange(1, 64), default=None,
                  help="gunicorn worker processes (default $WEB_WORKERS).")
    @click.option("--threads", type=click.IntRange(1, 256), default=None,
                  help="Threads per worker (default $WEB_THREADS).")
    def web(bind: str | None, workers: int | None, threads: int | None) -> None:
        settings = _settings()
        logs.setup(service, settings.log_level, settings.log_format)
        _Gunicorn.run(service, {
            "bind": bind or f"0.0.0.0:{settings.port}",
            "workers": workers or settings.web_workers,
            "threads": threads or settings.web_threads,
            "graceful_timeout": 25,  # within compose's 30 s stop_grace_period
            "accesslog": None,
            # Several web commands on one host must not fight over one control socket in $HOME.
            "control_socket_disable": True,
            # gunicorn's own lines go through our handler, so LOG_FORMAT=json gives only JSON lines.
            "logconfig_dict": {"version": 1, "disable_existing_loggers": False, "root": {}},
        })

    if service != "gateway":
        @group.command(help=f"Consume the {service} queue and relay its outbox until SIGTERM.")
        @click.option("--concurrency", type=click.IntRange(1, 64), default=None,
                      help="Consumer threads, each with its own connection (default $WORKER_CONCURRENCY).")
        def worker(concurrency: int | None) -> None:
            settings = _settings()
            _factory(service).run_worker(concurrency or settings.worker_concurrency, settings=settings)

    return group


for _name in SERVICES:
    main.add_command(_service_group(_name))


@main.command("config")
def show_config() -> None:
    """List every configuration variable, its value here and what it means."""
    try:
        Settings.from_env()
        status = "valid"
    except ConfigError as exc:
        status = f"INVALID: {exc}"
    for var in VARIABLES:
        value = os.environ.get(var.name)
        shown = ("(set)" if value else "") if "KEY" in var.name else (value or "")
        click.echo(f"{var.name:24} {shown or '(default) ' + var.default!s:40} {var.help}")
    click.echo(f"\nconfiguration is {status}")


if __name__ == "__main__":
    main()
