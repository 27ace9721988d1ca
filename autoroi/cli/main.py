"""The one face: the ``autoroi`` command.

Commands are imported when they run, so ``autoroi --help`` does not pay for
Spark, TensorFlow or kfp. Every command takes ``--config``; ``--source-url``
and ``--lake`` override it; ``AUTOROI_*`` variables override the file.
Failures end with one line on stderr and a non-zero exit code.
"""

from __future__ import annotations

import importlib
import logging
import sys
from typing import Any

import click

from autoroi.errors import AutoroiError

_COMMANDS = {
    "generate": ("autoroi.cli.source_cmds", "generate"),
    "mutate": ("autoroi.cli.source_cmds", "mutate"),
    "truth": ("autoroi.cli.source_cmds", "truth"),
    "replicate": ("autoroi.cli.replicate_cmd", "replicate"),
    "run": ("autoroi.cli.pipeline_cmds", "run"),
    "compile": ("autoroi.cli.pipeline_cmds", "compile_cmd"),
    "trigger": ("autoroi.cli.pipeline_cmds", "trigger"),
    "submit": ("autoroi.cli.pipeline_cmds", "submit"),
    "schedule": ("autoroi.cli.pipeline_cmds", "schedule"),
    "approve": ("autoroi.cli.approval_cmds", "approve"),
    "reject": ("autoroi.cli.approval_cmds", "reject"),
    "deploy": ("autoroi.cli.approval_cmds", "deploy"),
    "serve": ("autoroi.cli.serve_cmds", "serve"),
    "predict": ("autoroi.cli.serve_cmds", "predict"),
    "config": ("autoroi.cli.config_cmd", "config"),
    "demo": ("autoroi.cli.demo_cmd", "demo"),
    "models": ("autoroi.cli.models_cmd", "models"),
    "programs": ("autoroi.cli.programs_cmd", "programs"),
    "plan": ("autoroi.cli.plan_cmd", "plan"),
    "dashboard": ("autoroi.cli.dashboard_cmd", "dashboard"),
    "monitor": ("autoroi.cli.monitor_cmds", "monitor"),
}

_HELP = {
    "generate": "Create the simulated dealer database (and its ground truth).",
    "mutate": "Apply a realistic stream of changes to the dealer database.",
    "truth": "The simulator's truth of any scenario (evaluation only): truth score.",
    "replicate": "Replicate the source into <lake>/raw (full load, then change capture).",
    "run": "Run a pipeline locally through kfp.local.",
    "compile": "Write the pipeline YAML files for the Kubeflow UI.",
    "trigger": "Run train when the latest master version has no model yet.",
    "submit": "Submit a pipeline run to a Kubeflow Pipelines API.",
    "schedule": "Create a recurring ingest run on a Kubeflow Pipelines API.",
    "approve": "Approve a model version (bound to its digest) and deploy it.",
    "reject": "Reject a model version.",
    "deploy": "Run the deploy pipeline for an approved version.",
    "serve": "Serve one model version locally (or --stop the local deployment).",
    "predict": "Send scenarios (CSV/JSON) to an endpoint and print ROI.",
    "config": "Show the effective configuration.",
    "demo": "Run the demo on embedded defaults.",
    "models": "Inspect the model registry: models list | models show VERSION.",
    "programs": "Estimated ROI (with its interval) of every incentive program that ran.",
    "plan": "Spend a budget on the incentives (cell, week, type, amount) that return most.",
    "dashboard": "Serve the inference dashboard and the local endpoint (--background, --stop).",
    "monitor": "Model health after each ingest (realized accuracy, drift): monitor show.",
}


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(_COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in _COMMANDS:
            return None
        if ctx.resilient_parsing or "--help" in sys.argv[1:2] or len(sys.argv) <= 1:
            # listing: a stub with the short help, no import
            return click.Command(cmd_name, help=_HELP[cmd_name], short_help=_HELP[cmd_name])
        module, attr = _COMMANDS[cmd_name]
        cmd: click.Command = getattr(importlib.import_module(module), attr)
        return cmd


def _print_version(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    """The package version and the commit an image was built from (its
    ``AUTOROI_GIT_SHA``), so a running step says which code it is."""
    if not value or ctx.resilient_parsing:
        return
    import os
    from importlib.metadata import version

    sha = os.environ.get("AUTOROI_GIT_SHA", "").strip()
    click.echo(f"autoroi, version {version('autoroi')}" + (f", commit {sha}" if sha else ""))
    ctx.exit()


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--log-level", default="INFO", show_default=True, help="DEBUG, INFO, WARNING, ERROR")
@click.option(
    "--version",
    is_flag=True,
    expose_value=False,
    is_eager=True,
    callback=_print_version,
    help="Show the version and the commit it was built from, and exit.",
)
@click.pass_context
def cli(ctx: click.Context, log_level: str) -> None:
    """autoroi: ROI prediction for automotive sales incentives on Kubeflow and KServe."""
    from autoroi.logs import setup_logging

    setup_logging(log_level.upper())
    ctx.ensure_object(dict)


def main(argv: list[str] | None = None) -> Any:
    try:
        return cli.main(args=argv, standalone_mode=False)
    except click.exceptions.Exit as e:
        return e.exit_code
    except click.ClickException as e:
        e.show()
        sys.exit(e.exit_code)
    except click.exceptions.Abort:
        click.echo("autoroi: aborted", err=True)
        sys.exit(130)
    except AutoroiError as e:
        logging.getLogger("autoroi").debug("failure", exc_info=True)
        click.echo(f"autoroi: error: {e}", err=True)
        sys.exit(2)


if __name__ == "__main__":
    main()
