"""``ttc-serve serve``."""

from __future__ import annotations

import contextlib
import logging.config
from typing import Annotated

import typer
from pydantic import ValidationError

from ttc_serve.app.logging_config import logging_config
from ttc_serve.app.settings import Settings


def serve(host: Annotated[str | None, typer.Option(help="bind address (TTC_HOST)")] = None,
          port: Annotated[int | None, typer.Option(help="port (TTC_PORT)")] = None) -> None:
    """Serve the API. With no TTC_GENERATOR_URL / TTC_PRM_URL, start the embedded vLLM CPU servers."""
    import uvicorn

    from ttc_serve.app.main import create_app, server_options
    from ttc_serve.app.wiring import embedded_server_specs
    from ttc_serve.models.launcher import ServerStartError, running

    overrides = {k: v for k, v in {"host": host, "port": port}.items() if v is not None}
    try:
        settings = Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        typer.echo(f"ttc-serve: invalid settings: {exc}", err=True)
        raise typer.Exit(2) from None
    logging.config.dictConfig(logging_config())
    given = dict(zip(("generator_url", "prm_url"), settings.backend_urls(), strict=True))
    # Nothing embedded is checked or started for a backend whose URL is given.
    wanted = [] if all(given.values()) else [
        spec for spec, urls in zip(embedded_server_specs(settings), given.values(), strict=True) if not urls]
    # The embedded servers start here, before uvicorn, rather than in the app's lifespan: uvicorn
    # acts on Ctrl-C only once its start-up has finished, which took minutes on a busy machine.
    # Here Ctrl-C stops the start at once, and ``running`` stops whatever had started.
    try:
        with contextlib.suppress(KeyboardInterrupt), \
                running(*wanted, timeout_s=settings.backend_start_timeout_s, supervise=True) as servers:
            started = iter(server.base_url for server in servers)
            settings = settings.model_copy(update={k: next(started) for k, urls in given.items() if not urls})
            # uvicorn re-raises Ctrl-C after its graceful shutdown; ``running`` then stops the servers.
            uvicorn.run(create_app(settings, servers), host=settings.host, port=settings.port,
                        log_config=logging_config(), **server_options(settings))
    except ServerStartError as exc:
        typer.echo(f"ttc-serve: {exc}", err=True)
        raise typer.Exit(1) from None


def healthcheck(
        timeout_s: Annotated[float, typer.Option(help="seconds to wait for the answer")] = 5.0) -> None:
    """Exit 0 if the service on this machine (TTC_PORT) answers /healthz with 200, else 1: the
    image's HEALTHCHECK, and anything else that wants the orchestrator's view."""
    import httpx

    port = Settings().port
    try:
        ok = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=timeout_s).status_code == 200
    except httpx.HTTPError:
        ok = False
    raise typer.Exit(0 if ok else 1)
