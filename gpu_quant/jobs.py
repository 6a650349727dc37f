"""Every queued job, whatever service submitted it: a handle to wait on, watch, cancel and read."""
from __future__ import annotations

import sys
from contextlib import closing
from typing import TYPE_CHECKING, Any, Callable, Iterator

import pandas as pd

from ._proto import jobs_pb2, jobs_pb2_grpc
from .convert import frame, to_dict
from .errors import JobFailed
from .progress import JobProgress

if TYPE_CHECKING:
    from .transport import Transport

FINAL_STATUSES = ("COMPLETED", "FAILED", "CANCELLED")
JOB_COLUMNS = ["job_id", "task_type", "status", "progress", "submitted_at", "started_at", "finished_at",
               "worker", "device", "priority", "attempts", "error_message"]


def ask_to_cancel(job_id: str) -> bool:
    """Ctrl-C during a wait: cancel the job on the server too? Yes by default, and when nobody
    can answer (no stdin); a second Ctrl-C leaves it running."""
    sys.stderr.write(f"\nCancel job {job_id} on the server? [Y/n] ")
    sys.stderr.flush()
    try:
        answer = input()  # input(), not stdin.readline(): notebooks answer it with an input box
    except EOFError:
        return True
    except (KeyboardInterrupt, OSError, RuntimeError):
        return False
    return answer.strip().lower() in ("", "y", "yes")


class JobHandle:
    """A submitted job. `wait()` follows it to a final state; `result()` reads what it produced."""

    def __init__(self, jobs: "Jobs", job_id: str, fetch_result: Callable[[str], Any] | None = None) -> None:
        self.jobs = jobs
        self.job_id = job_id
        self._fetch_result = fetch_result
        self.job: dict[str, Any] | None = None

    def __repr__(self) -> str:
        status = self.job["status"] if self.job else "?"
        return f"<{type(self).__name__} {self.job_id} {status}>"

    def status(self) -> dict[str, Any]:
        self.job = self.jobs.get(self.job_id)
        return self.job

    def cancel(self) -> dict[str, Any]:
        self.job = self.jobs.cancel(self.job_id)
        return self.job

    def done(self) -> bool:
        return self.status()["status"] in FINAL_STATUSES

    def wait(self, progress: bool = True, *, on_interrupt: str = "ask") -> dict[str, Any]:
        """Follow the job (WatchJob) until it is final and return its last state (a dict).

        Ctrl-C: on_interrupt="ask" asks whether to cancel the job on the server, "cancel" cancels
        it, "leave" leaves it running; the KeyboardInterrupt is raised again afterwards."""
        try:
            with JobProgress(self.job_id, enabled=progress) as bar, closing(self.jobs.watch(self.job_id)) as states:
                for job in states:
                    self.job = job
                    bar.update(job)
                    if job["status"] in FINAL_STATUSES:
                        break
        except KeyboardInterrupt:
            if on_interrupt == "cancel" or (on_interrupt == "ask" and ask_to_cancel(self.job_id)):
                self.cancel()
                sys.stderr.write(f"job {self.job_id}: cancel requested ({self.job['status']})\n")
            raise
        if self.job is None or self.job["status"] not in FINAL_STATUSES:
            self.status()  # the stream ended early (server going away): read the state once more
        return self.job

    def result(self) -> Any:
        """Wait (quietly) if needed; JobFailed unless it COMPLETED; then the service's result."""
        if self.job is None or self.job["status"] not in FINAL_STATUSES:
            self.wait(progress=False)
        if self.job["status"] != "COMPLETED":
            raise JobFailed(self.job)
        if self._fetch_result is None:
            return self.job
        return self._fetch_result(self.job_id)


class Jobs:
    """JobService: get, watch, cancel and list any job."""

    def __init__(self, transport: "Transport") -> None:
        self.transport = transport
        self.stub = transport.stub(jobs_pb2_grpc.JobServiceStub)

    def get(self, job_id: str) -> dict[str, Any]:
        return to_dict(self.transport.unary(self.stub.GetJob, jobs_pb2.JobRequest(job_id=job_id)))

    def watch(self, job_id: str) -> Iterator[dict[str, Any]]:
        for job in self.transport.stream(self.stub.WatchJob, jobs_pb2.JobRequest(job_id=job_id)):
            yield to_dict(job)

    def cancel(self, job_id: str) -> dict[str, Any]:
        return to_dict(self.transport.unary(self.stub.CancelJob, jobs_pb2.JobRequest(job_id=job_id)))

    def cluster(self) -> dict[str, Any]:
        """Workers and queue depths (JobService.GetClusterStatus), as plain dicts."""
        return to_dict(self.transport.unary(self.stub.GetClusterStatus, jobs_pb2.ClusterStatusRequest()))

    def iter(self, task_type: str = "", status: str | None = None, limit: int | None = 50) -> Iterator[dict[str, Any]]:
        """Jobs newest first, fetching pages as needed (limit=None: all of them)."""
        token, seen = "", 0
        while True:
            page_size = 500 if limit is None else max(1, min(500, limit - seen))
            request = jobs_pb2.ListJobsRequest(task_type=task_type, page_size=page_size, page_token=token,
                                               status=jobs_pb2.JobStatus.Value(status.upper()) if status else 0)
            page = self.transport.unary(self.stub.ListJobs, request)
            for job in page.jobs:
                yield to_dict(job)
                seen += 1
                if limit is not None and seen >= limit:
                    return
            token = page.next_page_token
            if not token:
                return

    def ls(self, task_type: str = "", status: str | None = None, limit: int | None = 50) -> pd.DataFrame:
        return frame(self.iter(task_type, status, limit), columns=JOB_COLUMNS)

    def handle(self, job_id: str) -> JobHandle:
        return JobHandle(self, job_id)
