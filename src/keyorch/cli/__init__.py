"""The `keyorch` command line.

Exit codes: 0 done; 1 done but out of sync / not converged; 2 bad input (usage, validation,
unknown id, unusable configuration); 3 refused by a rule (transition, disconnect, dual
authorization, stale version); 4 a keystore could not be reached. Errors go to stderr as
one sentence, never as a traceback.
"""

from __future__ import annotations

import sys
from typing import Any

import click

from keyorch.cli import adopt as _adopt  # noqa: F401  (registers `key adopt`)
from keyorch.cli.admin import demo, init, master_key
from keyorch.cli.audit import audit
from keyorch.cli.config import config
from keyorch.cli.keys import key
from keyorch.cli.keystores import keystore
from keyorch.cli.migrate import migrate
from keyorch.cli.reconcile import plan, reconcile, sync_key
from keyorch.cli.runtime import CliState, ServerRequest
from keyorch.cli.serve import serve
from keyorch.cli.templates import template
from keyorch.cli.vaults import vault
from keyorch.domain.errors import ConfigurationError, KeyorchError
from keyorch.logs import configure_logging
from keyorch.settings import load_settings

EXIT_INTERNAL = 70


class _RootGroup(click.Group):
    """The root command; `fakes` (aiohttp and four fake services) is imported only when it is run."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), "fakes"})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name == "fakes":
            from keyorch.cli.fakes import fakes

            return fakes
        return super().get_command(ctx, cmd_name)


@click.group(cls=_RootGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.option("--db", "database_url", envvar="KEYORCH_DATABASE_URL", help="sqlite:///PATH or postgresql://…")
@click.option("--config", "config_path", type=str, default=None, help="YAML settings file.")
@click.option("--output", type=click.Choice(["table", "json"]), default="table", show_default=True)
@click.option(
    "--user",
    envvar="KEYORCH_USER",
    help="Direct database mode: who is acting (self-declared, recorded in the audit trail). Not with --server.",
)
@click.option(
    "--server",
    envvar="KEYORCH_SERVER",
    metavar="URL",
    help="Run commands through this keyorch daemon's REST API as the token's user, e.g. https://keyorch:8443.",
)
@click.option(
    "--token-file",
    envvar="KEYORCH_TOKEN_FILE",
    metavar="FILE",
    help="With --server: a file (mode 0600) holding the bearer token; default: env KEYORCH_TOKEN.",
)
@click.option(
    "--server-ca-file",
    envvar="KEYORCH_SERVER_CA_FILE",
    metavar="FILE",
    help="With --server: a PEM CA bundle to verify the daemon's TLS certificate with.",
)
@click.option(
    "--verbose",
    "-v",
    is_flag=True,
    help="Log at debug level too: e.g. one line per provider call a reconcile makes (always in the audit trail).",
)
@click.version_option(package_name="keyorch")
@click.pass_context
def cli(
    ctx: click.Context,
    database_url: str | None,
    config_path: str | None,
    output: str,
    user: str | None,
    server: str | None,
    token_file: str | None,
    server_ca_file: str | None,
    verbose: bool,
) -> None:
    """keyorch: keep every keystore's keys in their desired lifecycle state.

    Commands act on the database directly (--db), or with --server through a daemon's REST API as the
    bearer token's user (needed for dual authorization). init, master-key, config, serve, fakes and demo are
    local commands and never use --server.
    """
    from_command_line = ctx.get_parameter_source("user") is click.core.ParameterSource.COMMANDLINE
    if server and user and from_command_line:
        raise ConfigurationError("--user is not used with --server: the bearer token says who you are")
    try:
        settings = load_settings(config_path, database_url=database_url, user=None if server else user)
    except UnicodeDecodeError:
        raise ConfigurationError(f"--config {config_path!r} is not UTF-8 text") from None
    configure_logging(settings.log.format, "debug" if verbose else settings.log.level)
    remote = ServerRequest(server, token_file, server_ca_file) if server else None
    ctx.obj = CliState(settings=settings, output=output, server=remote)


COMMANDS = (
    init,
    demo,
    master_key,
    config,
    vault,
    keystore,
    template,
    key,
    audit,
    sync_key,
    reconcile,
    plan,
    serve,
    migrate,
)
for command in COMMANDS:
    cli.add_command(command)


def _fail(message: str, code: int) -> None:
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


def main(argv: list[str] | None = None) -> None:
    try:
        result: Any = cli.main(args=argv, prog_name="keyorch", standalone_mode=False)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.exceptions.Abort:
        _fail("aborted", 130)
    except KeyboardInterrupt:
        _fail("interrupted", 130)
    except KeyorchError as exc:
        _fail(exc.message, exc.exit_code)
    except Exception as exc:  # never a traceback for the user; the type and message only
        from keyorch.cli.errors import describe_unexpected

        message, code = describe_unexpected(exc)
        _fail(message, code)
    sys.exit(result if isinstance(result, int) else 0)
