"""gq status, gq jobs ls|get|watch|cancel, gq report."""
from __future__ import annotations

import click
import pandas as pd

from ..jobs import FINAL_STATUSES
from .output import emit_json, print_mapping, print_table, records, stderr, stdout

JOB_TABLE = ["job_id", "task_type", "status", "progress", "submitted_at", "worker", "device", "error_message"]


@click.command()
@click.option("--json", "as_json", is_flag=True, help="One JSON object.")
@click.pass_obj
def status(connection, as_json: bool) -> None:
    """Health, queue depths (waiting / running / dead-lettered per task type) and workers."""
    state = connection.client.status()
    if as_json:
        emit_json(state)
        return
    print_mapping({"target": state["target"], "health": state["health"]}, title="server")
    queues = pd.DataFrame([{"task_type": name, **counts} for name, counts in state["queues"].items()],
                          columns=["task_type", "waiting", "running", "dead_letters"])
    if len(queues):
        print_table(queues, title="queues")
    else:
        stdout.print("queues: empty")
    workers = pd.DataFrame([{"worker": name, **info} for name, info in state["workers"].items()],
                           columns=["worker", "device", "alive"])
    if len(workers):
        print_table(workers, title="workers")
    else:
        stdout.print("workers: none registered")


@click.group()
def jobs() -> None:
    """Any queued job (backtests, trainings, factor analyses…)."""


@jobs.command("ls")
@click.option("--type", "task_type", default="", help="Only this task type (backtest, training, …).")
@click.option("--status", "job_status", type=click.Choice(["pending", "running", "completed", "failed", "cancelled"],
                                                          case_sensitive=False), help="Only jobs in this state.")
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1, 100_000))
@click.option("--json", "as_json", is_flag=True, help="A JSON array of jobs.")
@click.pass_obj
def jobs_ls(connection, task_type: str, job_status: str | None, limit: int, as_json: bool) -> None:
    """Jobs, newest first."""
    table = connection.client.jobs.ls(task_type, job_status, limit)
    if as_json:
        emit_json(records(table))
    else:
        print_table(table, columns=JOB_TABLE)


@jobs.command("get")
@click.argument("job_id")
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def jobs_get(connection, job_id: str, as_json: bool) -> None:
    """One job's state."""
    job = connection.client.jobs.get(job_id)
    emit_json(job) if as_json else print_mapping(job, title=job_id)


@jobs.command("watch")
@click.argument("job_id")
@click.option("--json", "as_json", is_flag=True, help="Print the final state as JSON (no bar).")
@click.pass_obj
def jobs_watch(connection, job_id: str, as_json: bool) -> int:
    """Follow a job with a progress bar until it is final; exit 1 unless it COMPLETED.
    Ctrl-C asks whether to cancel the job on the server."""
    handle = connection.client.job(job_id)
    if not as_json:
        stderr.print(f"watching {job_id} (Ctrl-C asks whether to cancel it)", highlight=False)
    final = handle.wait(progress=not as_json)
    emit_json(final) if as_json else print_mapping(
        {key: final[key] for key in ("job_id", "task_type", "status", "progress", "device", "error_message")})
    return 0 if final["status"] == "COMPLETED" else 1


@jobs.command("cancel")
@click.argument("job_id")
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def jobs_cancel(connection, job_id: str, as_json: bool) -> None:
    """Cancel a pending or running job (a final one is left as it is)."""
    job = connection.client.jobs.cancel(job_id)
    if as_json:
        emit_json(job)
    elif job["status"] in FINAL_STATUSES:
        stdout.print(f"{job_id}: {job['status']}")
    else:
        stdout.print(f"{job_id}: {job['status']}, cancel requested (it stops at its next progress check)")


@click.command()
@click.argument("job_id")
@click.option("-o", "--output", type=click.Path(dir_okay=False, writable=True), help="Write here (default stdout).")
@click.pass_obj
def report(connection, job_id: str, output: str | None) -> None:
    """The HTML tearsheet of a completed backtest (or factor analysis)."""
    client = connection.client
    task_type = client.jobs.get(job_id)["task_type"]
    html = (client.factors.report(job_id, output) if task_type == "factor"
            else client.backtests.report(job_id, output))
    if output:
        stdout.print(f"wrote {output} ({len(html):,} characters)")
    else:
        click.echo(html)


COMMANDS = [status, jobs, report]
