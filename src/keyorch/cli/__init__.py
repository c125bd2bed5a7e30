"""The `keyorch` command line."""

from __future__ import annotations

import click

from keyorch.cli.fakes import fakes


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def cli() -> None:
    """keyorch: keep every keystore's keys in their desired lifecycle state."""


cli.add_command(fakes)


def main() -> None:
    cli()
