"""JobService: GetJob / WatchJob / CancelJob / ListJobs for any job id of any task type."""
from __future__ import annotations

import json

from api_proto import jobs_pb2, jobs_pb2_grpc
from services import validation
from services.errors import invalid
from services.job_views import cancel, history_page, job_id_field, require_job, status_filter, watch
from utils import task_types
from utils.data.timeutil import epoch_to_iso
from utils.queue.cluster import cluster_view
from utils.queue.jobs import JobRecord, JobStatus
from utils.queue.streams import JobQueue


def job_message(record: JobRecord) -> jobs_pb2.Job:
    return jobs_pb2.Job(
        job_id=record.id, task_type=record.task_type, status=jobs_pb2.JobStatus.Value(record.status.value),
        progress=record.progress, progress_detail=json.dumps(record.progress_detail, sort_keys=True),
        attempts=record.attempts, error_message=record.error, submitted_at=epoch_to_iso(record.created_at),
        started_at=epoch_to_iso(record.started_at), finished_at=epoch_to_iso(record.finished_at),
        worker=record.worker, device=record.device, priority=record.priority, max_attempts=record.max_attempts,
        cancel_requested=record.cancel_requested)


def _wanted_status(value: int) -> JobStatus | None:
    if value not in jobs_pb2.JobStatus.values():  # open enum: any int arrives
        raise invalid("status", f"{value} is not a JobStatus; valid: {', '.join(jobs_pb2.JobStatus.keys())}")
    return None if value == jobs_pb2.JOB_STATUS_UNSPECIFIED else JobStatus(jobs_pb2.JobStatus.Name(value))


class JobServicer(jobs_pb2_grpc.JobServiceServicer):
    def __init__(self, queue: JobQueue) -> None:
        self.queue = queue

    def GetJob(self, request, context):
        return job_message(require_job(self.queue, job_id_field("job_id", request.job_id)))

    def WatchJob(self, request, context):
        for record in watch(self.queue, job_id_field("job_id", request.job_id), context):
            yield job_message(record)

    def CancelJob(self, request, context):
        record, _ = cancel(self.queue, job_id_field("job_id", request.job_id))
        return job_message(record)

    def ListJobs(self, request, context):
        task_type = request.task_type or None
        if task_type is not None and task_type not in task_types.names():
            raise invalid("task_type", f"unknown task type {task_type!r}; valid: {', '.join(task_types.names())} "
                                       f"(or empty for every type)")
        keep = status_filter(_wanted_status(request.status))
        offset, size = validation.page("page_size", request.page_size, request.page_token, 50, 500)
        records, token = history_page(self.queue, task_type, offset, size, keep)
        return jobs_pb2.ListJobsResponse(jobs=[job_message(record) for record in records], next_page_token=token)

    def GetClusterStatus(self, request, context):
        view = cluster_view(self.queue)
        return jobs_pb2.ClusterStatus(
            workers=[jobs_pb2.WorkerState(worker_id=w.worker_id, device=w.device, alive=w.alive) for w in view.workers],
            queues=[jobs_pb2.QueueState(task_type=q.task_type, waiting=q.waiting, running=q.running,
                                        dead_letters=q.dead_letters) for q in view.queues])
