"""The task-type registry: whole declarations drive keys, ids, caps, counters and handlers; a
half-declared type is caught before a worker starts."""
from __future__ import annotations

import dataclasses
import re

import pytest
from prometheus_client import CollectorRegistry

from config.settings import load_settings
from tests.conftest import PROJECT_ROOT
from utils import task_types
from utils.gpu.scheduler import Scheduler
from utils.monitoring import QueueCollector
from utils.queue.jobs import JobSpec, derived_job_id, new_job_id
from utils.queue.streams import JobQueue, all_streams
from utils.redis_client import redis_from_settings
from utils.task_types import TASK_TYPES, TaskType, declaration_problems
from utils.tasks.runtime import EXIT_BAD_REGISTRY, exit_on_bad_registry, registry_problems

EXAMPLE = TaskType(name="example", id_prefix="ex", noun="example job", cap_setting="max_concurrent_examples",
                   cap_default=2, cap_help="Examples at once.", counter="example_tasks",
                   handler="utils.tasks.report:make_report_handler")


def test_the_registry_is_whole():
    assert declaration_problems() == []
    assert len(set(task_types.names())) == len(TASK_TYPES)


@pytest.mark.parametrize("change, complaint", [
    ({"handler": ""}, "no handler"),
    ({"handler": "utils.tasks.nowhere:make_handler"}, "cannot be loaded"),
    ({"handler": "utils.tasks.report:no_such_factory"}, "cannot be loaded"),
    ({"cap_default": 0}, "no cap"),
    ({"cap_setting": ""}, "cap_setting"),
    ({"cap_help": ""}, "cap_help"),
    ({"id_prefix": "bt"}, "declared twice"),
    ({"name": "Bad Name"}, "name"),
    ({"counter": "backtest_tasks"}, "declared twice"),
    ({"result_ttl_seconds": 0}, "result_ttl_seconds"),
])
def test_a_half_declared_type_is_reported(change, complaint):
    broken = dataclasses.replace(EXAMPLE, **change)
    problems = declaration_problems((*TASK_TYPES, broken))
    assert problems and any(complaint in problem for problem in problems), problems


def test_a_worker_refuses_to_start_with_a_half_declared_type():
    settings = load_settings(redis_embedded="never")
    broken = (*TASK_TYPES, dataclasses.replace(EXAMPLE, handler=""))
    assert registry_problems(settings, TASK_TYPES) == []
    with pytest.raises(SystemExit) as exited:
        exit_on_bad_registry(settings, broken)
    assert exited.value.code == EXIT_BAD_REGISTRY == 2


def test_caps_come_from_the_registry_with_their_settings():
    settings = load_settings(redis_embedded="never", max_concurrent_reports=7)
    caps = settings.concurrency_caps()
    assert set(caps) == set(task_types.names())
    assert caps["report"] == 7 and caps["backtest"] == 5 and caps["training"] == 3
    assert Scheduler(caps).readable_streams() == all_streams()
    with pytest.raises(ValueError, match="unknown task types"):
        Scheduler({**caps, "nope": 1})
    with pytest.raises(ValueError, match=">= 1"):
        Scheduler({**caps, "report": 0})


def test_env_example_documents_every_cap():
    text = (PROJECT_ROOT / ".env.example").read_text(encoding="utf-8")
    for task_type in TASK_TYPES:
        comment, line = task_type.env_example_lines
        assert f"{comment}\n{line}\n" in text, f"add to .env.example:\n{comment}\n{line}"


def test_ids_and_streams_are_derived():
    for task_type in TASK_TYPES:
        job_id = new_job_id(task_type.name)
        assert re.fullmatch(rf"{task_type.id_prefix}-[0-9a-f]{{32}}", job_id)
        assert JobSpec(task_type.name, {}).task_type == task_type.name
    assert derived_job_id("report", "bt-0123abcd") == "rp-0123abcd"
    with pytest.raises(ValueError, match="unknown task type 'nope'"):
        JobSpec("nope", {})


def test_every_type_has_its_counter_family(settings):
    queue = JobQueue(redis_from_settings(settings))
    for task_type in TASK_TYPES:
        queue.enqueue(JobSpec(task_type.name, {}))
    registry = CollectorRegistry()
    registry.register(QueueCollector(queue))
    for task_type in TASK_TYPES:
        assert registry.get_sample_value(f"{task_type.counter}_total", {"status": "submitted"}) == 1
        assert registry.get_sample_value("queue_jobs_total", {"task_type": task_type.name, "status": "submitted"}) == 1
