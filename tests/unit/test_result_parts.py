"""Splitting a result's long lists into chunks (utils/queue/result_parts.py): pure functions."""
from __future__ import annotations

import json

import pytest

from utils.queue import result_parts
from utils.queue.result_parts import PartsDescriptor, Rows


def test_long_lists_become_descriptors_and_chunks_that_join_back():
    trades = [{"n": i} for i in range(23)]
    result = {"metrics": {"sharpe_ratio": 1.5}, "trades": trades, "short": [1, 2], "equity_curve": {"time": [1] * 50}}
    head, parts = result_parts.split(result, chunk_rows=10)
    assert head["metrics"] == result["metrics"] and head["short"] == [1, 2] and head["equity_curve"] == result["equity_curve"]
    found = result_parts.descriptor(head, "trades")
    assert found is not None and found.count == 23 and found.chunks == 3
    assert result_parts.descriptors(head) == [found]
    chunks = list(parts[found])
    assert [len(json.loads(chunk)) for chunk in chunks] == [10, 10, 3]
    assert [row for chunk in chunks for row in json.loads(chunk)] == trades
    assert json.loads(result_parts.dumps(head)) == head  # the head is plain JSON


def test_a_list_at_the_limit_stays_inline_and_rows_become_objects():
    head, parts = result_parts.split({"trades": list(range(10)), "rows": Rows(("a", "b"), [(1, "x"), (2, "y")])}, 10)
    assert parts == {} and head == {"trades": list(range(10)), "rows": [{"a": 1, "b": "x"}, {"a": 2, "b": "y"}]}


def test_rows_are_chunked_as_objects():
    rows = Rows(("symbol", "pnl"), [("A", float(i)) for i in range(5)])
    head, parts = result_parts.split({"trades": rows}, chunk_rows=2)
    (found, chunks), = parts.items()
    assert [json.loads(chunk) for chunk in list(chunks)] == [[{"symbol": "A", "pnl": 0.0}, {"symbol": "A", "pnl": 1.0}],
                                                      [{"symbol": "A", "pnl": 2.0}, {"symbol": "A", "pnl": 3.0}],
                                                      [{"symbol": "A", "pnl": 4.0}]]


def test_each_split_has_its_own_generation():
    first, _ = result_parts.split({"trades": list(range(5))}, 2)
    second, _ = result_parts.split({"trades": list(range(5))}, 2)
    assert result_parts.descriptor(first, "trades").generation != result_parts.descriptor(second, "trades").generation


@pytest.mark.parametrize("offset,size,span", [(0, 10, range(0, 1)), (0, 11, range(0, 2)), (9, 2, range(0, 2)),
                                              (10, 10, range(1, 2)), (20, 100, range(2, 3)), (23, 5, range(0)),
                                              (50, 5, range(0))])
def test_a_page_reads_only_the_chunks_it_spans(offset, size, span):
    assert PartsDescriptor("trades", "g", 23, 10).chunk_span(offset, size) == span


def test_a_user_list_that_looks_like_a_descriptor_is_not_one_unless_exact():
    assert result_parts.descriptor({"trades": {"$parts": {"generation": "g", "count": 1, "chunk_rows": 1},
                                               "other": 1}}, "trades") is None
    assert result_parts.descriptor({"trades": [1]}, "trades") is None


def test_every_long_list_gets_its_own_chunks_made_as_they_are_read():
    head, parts = result_parts.split({"a": list(range(5)), "b": list(range(100, 107)), "c": {"x": 1}}, 3)
    chunks = {found.field: [json.loads(chunk) for chunk in made] for found, made in parts.items()}
    assert chunks == {"a": [[0, 1, 2], [3, 4]], "b": [[100, 101, 102], [103, 104, 105], [106]]}
    assert head["c"] == {"x": 1}
