"""gq models ls|train|predict|rm."""
from __future__ import annotations

import json

import click
import pandas as pd

from .output import emit_json, print_mapping, print_table, records, stdout


def _names(text: str) -> list[str]:
    return [name.strip() for name in text.split(",") if name.strip()]


def _json_object(text: str | None, option: str) -> dict | None:
    if not text:
        return None
    try:
        value = json.loads(text)
    except ValueError as error:
        raise click.BadParameter(f"not JSON: {error}", param_hint=option) from None
    if not isinstance(value, dict):
        raise click.BadParameter("must be a JSON object", param_hint=option)
    return value


@click.group()
def models() -> None:
    """Models: list, train, predict."""


@models.command("ls")
@click.option("--json", "as_json", is_flag=True, help="A JSON array of models.")
@click.pass_obj
def models_ls(connection, as_json: bool) -> None:
    """Trained models, with their validation metrics."""
    table = connection.client.models.ls()
    emit_json(records(table)) if as_json else print_table(
        table, columns=["model_id", "model_type", "task", "created_at", "device", "n_train", "metrics"])


@models.command("train")
@click.option("--type", "model_type", default="", help="random_forest, gradient_boosting, logistic, lstm, …")
@click.option("--data", "data_file", type=click.Path(exists=True, dir_okay=False),
              help="CSV with the feature and target columns (inline training data).")
@click.option("--features", default="", help="Comma-separated feature columns.")
@click.option("--target", default="", help="Target column.")
@click.option("--params", help="Model parameters, JSON object.")
@click.option("--market-data", help='Train on stored bars instead: JSON MarketDataSource, e.g. '
                                    '\'{"symbols": ["000001.SZ"], "features": ["rsi"], "target": "next_return_sign"}\'.')
@click.option("--compare", default="", help="Comma-separated model types to compare (keeps the best).")
@click.option("--watch", is_flag=True, help="Progress bar until it finishes.")
@click.option("--json", "as_json", is_flag=True, help="Wait, then print the final training status as JSON.")
@click.pass_obj
def models_train(connection, model_type: str, data_file: str | None, features: str, target: str, params: str | None,
                 market_data: str | None, compare: str, watch: bool, as_json: bool) -> int:
    """Submit a training job; with --watch / --json wait for its model id (exit 1 if it fails)."""
    if bool(data_file) == bool(market_data):
        raise click.UsageError("give exactly one of --data FILE.csv or --market-data JSON")
    run = connection.client.train(model_type, pd.read_csv(data_file) if data_file else None,
                                  features=_names(features), target=target, params=_json_object(params, "--params"),
                                  market_data=_json_object(market_data, "--market-data"), compare=_names(compare))
    if not (watch or as_json):
        stdout.print(run.job_id)
        return 0
    run.wait(progress=watch)
    status = run.result()
    if as_json:
        emit_json(status)
    else:
        print_mapping({key: status[key] for key in ("task_id", "status", "model_id", "validation_loss", "loss_name")},
                      title="training")
    return 0


@models.command("predict")
@click.argument("model_id")
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@click.option("-o", "--output", type=click.Path(dir_okay=False, writable=True), help="Write predictions as CSV.")
@click.option("--json", "as_json", is_flag=True, help="A JSON array, one object per row.")
@click.pass_obj
def models_predict(connection, model_id: str, file: str, output: str | None, as_json: bool) -> None:
    """Predict on a CSV's rows (its columns are the model's features)."""
    predicted = connection.client.predict(model_id, pd.read_csv(file))
    if output:
        predicted.to_csv(output, index=False)
    if as_json:
        emit_json(records(predicted))
    elif not output:
        print_table(predicted, title=f"{model_id} ({predicted.attrs.get('runtime') or 'native'})")


@models.command("rm")
@click.argument("model_id")
@click.pass_obj
def models_rm(connection, model_id: str) -> None:
    """Delete a model."""
    stdout.print(f"{model_id}: {'deleted' if connection.client.models.delete(model_id) else 'not found'}")


COMMANDS = [models]
