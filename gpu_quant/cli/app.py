"""`gq`: global options (server, key, TLS), the client they build, and the exit codes.

Exit codes: 0 ok; 1 a job failed or was cancelled (or the server failed: INTERNAL…);
2 usage (bad options, or the server refused the request: INVALID_ARGUMENT, NOT_FOUND,
FAILED_PRECONDITION, UNAUTHENTICATED, PERMISSION_DENIED); 3 server unreachable; 130 Ctrl-C.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import Any

import click
import grpc
from rich.markup import escape

from .. import __version__
from ..client import DEFAULT_TARGET, Client
from ..errors import JobFailed, RpcError
from .output import stderr

EXIT_OK, EXIT_JOB_FAILED, EXIT_USAGE, EXIT_UNREACHABLE, EXIT_INTERRUPTED = 0, 1, 2, 3, 130
_USAGE_CODES = {grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND, grpc.StatusCode.FAILED_PRECONDITION,
                grpc.StatusCode.ALREADY_EXISTS, grpc.StatusCode.OUT_OF_RANGE, grpc.StatusCode.UNAUTHENTICATED,
                grpc.StatusCode.PERMISSION_DENIED}
_UNREACHABLE_CODES = {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED}


@dataclass
class Connection:
    """What the global options say; the client is built on first use (so --help never connects)."""

    target: str
    api_key: str | None
    tls: Any
    _client: Client | None = field(default=None, repr=False)

    @property
    def client(self) -> Client:
        if self._client is None:
            self._client = Client(self.target, api_key=self.api_key, tls=self.tls)
        return self._client


def _tls_option(tls: bool, ca: str | None, cert: str | None, key: str | None) -> Any:
    if cert or key:
        if not (cert and key):
            raise click.UsageError("--cert and --key go together (mutual TLS)")
        return {"ca": ca, "cert": cert, "key": key}
    if ca:
        return ca
    return True if tls else None


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option("--target", envvar="GQ_TARGET", default=DEFAULT_TARGET, show_default=True,
              help="Server host:port [env GQ_TARGET].")
@click.option("--api-key", envvar="GQ_API_KEY", default=None, help="API key, sent as 'authorization: Bearer' [env GQ_API_KEY].")
@click.option("--tls", is_flag=True, envvar="GQ_TLS", help="Use TLS with the system's trusted roots [env GQ_TLS].")
@click.option("--ca", envvar="GQ_TLS_CA", type=click.Path(exists=True, dir_okay=False),
              help="TLS: trust this CA file [env GQ_TLS_CA].")
@click.option("--cert", envvar="GQ_TLS_CERT", type=click.Path(exists=True, dir_okay=False),
              help="Mutual TLS: client certificate [env GQ_TLS_CERT].")
@click.option("--key", envvar="GQ_TLS_KEY", type=click.Path(exists=True, dir_okay=False),
              help="Mutual TLS: client key [env GQ_TLS_KEY].")
@click.version_option(__version__, prog_name="gq", message="%(prog)s %(version)s")
@click.pass_context
def cli(ctx: click.Context, target: str, api_key: str | None, tls: bool, ca: str | None, cert: str | None,
        key: str | None) -> None:
    """gq: backtests, market data, jobs, models and live ticks on the GPU quant platform."""
    ctx.obj = Connection(target, api_key or None, _tls_option(tls, ca, cert, key))


def _register() -> None:
    from . import backtest, data, jobs, models, stream
    for module in (backtest, data, jobs, models, stream):
        for command in module.COMMANDS:
            cli.add_command(command)


_register()


def exit_code_for(error: RpcError) -> int:
    if error.code in _UNREACHABLE_CODES:
        return EXIT_UNREACHABLE
    return EXIT_USAGE if error.code in _USAGE_CODES else EXIT_JOB_FAILED


def main(argv: list[str] | None = None) -> None:
    try:
        returned = cli.main(args=argv, prog_name="gq", standalone_mode=False)
    except click.exceptions.Exit as done:
        sys.exit(done.exit_code)
    except click.ClickException as error:  # UsageError and friends: exit 2
        error.show()
        sys.exit(error.exit_code)
    except (click.Abort, KeyboardInterrupt):
        stderr.print("interrupted")
        sys.exit(EXIT_INTERRUPTED)
    except JobFailed as failed:
        stderr.print(f"[red]error:[/] {escape(str(failed))}", markup=True, highlight=False)
        sys.exit(EXIT_JOB_FAILED)
    except RpcError as error:
        hint = " (is the server running? --target / GQ_TARGET)" if error.code in _UNREACHABLE_CODES else ""
        stderr.print(f"[red]error:[/] {escape(str(error))}{hint}", markup=True, highlight=False)
        sys.exit(exit_code_for(error))
    except ValueError as error:  # bad input found by the SDK before any call (a CSV without a column…)
        stderr.print(f"[red]error:[/] {escape(str(error))}", markup=True, highlight=False)
        sys.exit(EXIT_USAGE)
    sys.exit(returned if isinstance(returned, int) else EXIT_OK)
