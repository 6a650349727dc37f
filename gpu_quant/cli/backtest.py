"""gq backtest run|ls."""
from __future__ import annotations

import json

import click

from .output import emit_json, print_mapping, print_table, records, stdout

METRIC_ORDER = ["total_return", "annualized_return", "sharpe_ratio", "sortino_ratio", "max_drawdown", "calmar_ratio",
                "annualized_volatility", "win_rate", "profit_factor", "num_trades", "exposure", "turnover",
                "final_equity", "max_drawdown_duration"]


def _strategy(text: str) -> dict:
    try:
        config = json.loads(text)
    except ValueError as error:
        raise click.BadParameter(f"not JSON: {error}") from None
    if not isinstance(config, dict):
        raise click.BadParameter("must be a JSON object, e.g. '{\"strategy_type\": \"trend_following\"}'")
    return config


@click.group()
def backtest() -> None:
    """Backtests: run one, list past runs."""


@backtest.command("run")
@click.option("--symbols", required=True, help="Comma-separated symbols, e.g. 000001.SZ,600000.SH.")
@click.option("--start", required=True, help="First day, ISO-8601.")
@click.option("--end", required=True, help="Last day (inclusive), ISO-8601.")
@click.option("--strategy", required=True, help='Strategy config JSON, e.g. \'{"strategy_type": "sma_crossover"}\'.')
@click.option("--capital", default=1_000_000.0, show_default=True, type=float)
@click.option("--commission", default=0.0003, show_default=True, type=float)
@click.option("--priority", default="normal", show_default=True,
              type=click.Choice(["low", "normal", "high"], case_sensitive=False))
@click.option("--device", default="auto", show_default=True, type=click.Choice(["auto", "cpu", "gpu"]))
@click.option("--watch", is_flag=True, help="Show a progress bar, then the metrics table.")
@click.option("--json", "as_json", is_flag=True, help="Wait, then print the final metrics as one JSON object.")
@click.option("--report", "report_path", type=click.Path(dir_okay=False, writable=True),
              help="Also write the HTML tearsheet here (waits for the result).")
@click.pass_obj
def backtest_run(connection, symbols: str, start: str, end: str, strategy: str, capital: float, commission: float,
                 priority: str, device: str, watch: bool, as_json: bool, report_path: str | None) -> int:
    """Submit a backtest; with --watch / --json / --report wait for it (exit 1 if it fails)."""
    config = _strategy(strategy)
    run = connection.client.backtest(symbols, start, end, config, capital=capital, commission=commission,
                                     priority=priority, device=device)
    if not (watch or as_json or report_path):
        stdout.print(run.job_id)
        return 0
    final = run.wait(progress=watch)
    if final["status"] != "COMPLETED":
        if as_json:
            emit_json({"backtest_id": run.job_id, "status": final["status"], "error_message": final["error_message"]})
        run.result()  # raises JobFailed: exit 1 with the server's reason
    result = run.result()
    if report_path:
        run.report(report_path)
    if as_json:
        emit_json({"backtest_id": run.job_id, **result.metrics})
        return 0
    metrics = {name: result.metrics[name] for name in METRIC_ORDER if name in result.metrics}
    print_mapping({"backtest_id": run.job_id, **metrics, "device": result.device,
                   "compute_seconds": result.compute_seconds}, title="metrics")
    if not result.sweep.empty:
        print_table(result.sweep.head(10), title=f"sweep (top 10 by {result.rank_by})")
    if report_path:
        stdout.print(f"report: {report_path}")
    return 0


@backtest.command("ls")
@click.option("--symbol", default="", help="Only runs that traded this symbol.")
@click.option("--strategy-type", default="", help="Only runs of this strategy_type.")
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1, 100_000))
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def backtest_ls(connection, symbol: str, strategy_type: str, limit: int, as_json: bool) -> None:
    """Past runs, newest first."""
    table = connection.client.backtests.history(symbol, strategy_type, limit)
    emit_json(records(table)) if as_json else print_table(
        table, columns=["backtest_id", "status", "stock_codes", "strategy_type", "start_time", "end_time",
                        "total_return", "sharpe_ratio", "max_drawdown"])


COMMANDS = [backtest]
