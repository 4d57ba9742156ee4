"""The ``crossroute`` command: ``main`` is the console script of pyproject.toml."""

from __future__ import annotations

import click

from .contacts import contacts
from .context import global_options
from .dlq import dlq
from .registry import tenants
from .sending import send
from .simulate import simulate

__all__ = ["cli", "main"]

EPILOG = """Exit codes: 0 success, 1 the command ran but something was refused or not found, 2 bad usage.
Local stack by default (http://127.0.0.1:$CROSSROUTE_PORT); --stack NAME for a deployed one. docs/cli.md."""


@click.group(
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100}, epilog=EPILOG
)
@global_options
@click.version_option(package_name="crossroute", prog_name="crossroute")
def cli() -> None:
    """Operate crossroute: contacts, sends, simulated customers, dead letters, tenants.

    Global options (--stack, --region, --profile, --tenant, --json) go before or after the command.
    """


cli.add_command(contacts)
cli.add_command(send)
cli.add_command(simulate)
cli.add_command(dlq)
cli.add_command(tenants)


def main() -> None:
    cli.main(prog_name="crossroute")
