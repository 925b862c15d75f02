"""`skitflow serve`: the HTTP service in front of Kubeflow (skitflow/serve)."""

from __future__ import annotations

from pathlib import Path

import typer


def serve(
    recipes: Path = typer.Argument(Path("recipes"), help="Folder of the recipes to offer."),
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on (loopback by default)."),
    port: int = typer.Option(8080, "--port", min=1, max=65535, help="Port to listen on."),
    kfp_host: str | None = typer.Option(None, "--kfp-host", help="Kubeflow Pipelines URL [env KFP_HOST; [tool.skitflow] host]."),
    namespace: str | None = typer.Option(None, "--namespace", "-n", help="Namespace [env KFP_NAMESPACE]."),
    experiment: str | None = typer.Option(None, "--experiment", "-e", help="Default experiment [env KFP_EXPERIMENT]."),
) -> None:
    """Serve recipes over HTTP (and a Slack /run command); every route but /health needs
    `Authorization: Bearer $SKITFLOW_SERVE_TOKEN`.

    Examples:

    \b
      skitflow serve recipes/ --kfp-host https://kubeflow.example
      skitflow serve recipes/ --port 9000 --experiment nightly
    """
    import importlib.util

    from skitflow.errors import EXIT_FAILURE, SkitflowError

    missing = [m for m in ("starlette", "uvicorn") if importlib.util.find_spec(m) is None]
    if missing:
        raise SkitflowError(f"`skitflow serve` needs {' and '.join(missing)}, which are not installed",
                            hint="pip install 'skitflow[serve]'", exit_code=EXIT_FAILURE)
    from skitflow.serve.server import serve_forever
    from skitflow.serve.settings import settings_from_env
    from skitflow.submit import config

    resolved = config.resolve({"host": kfp_host, "namespace": namespace, "experiment": experiment})
    settings = settings_from_env(recipes, config.require_host(resolved), resolved["namespace"].value,
                                 resolved["experiment"].value or "Default")
    serve_forever(settings, host, port)
