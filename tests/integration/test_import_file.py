"""MarketDataService.ImportFile through gRPC: real CSV and Parquet files (many symbols) under the
import root, imported by a real worker; bad files fail the job naming the line/column and write
nothing; paths outside the root are refused; an s3:// object under the store's bucket (moto)."""
from __future__ import annotations

import json

import grpc
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from api_proto import jobs_pb2, jobs_pb2_grpc, market_data_pb2, market_data_pb2_grpc
from tests.conftest import wait_until
from utils.data.timeutil import parse_time

SYMBOLS = ("IMA", "IMB", "IMC")
DAYS = [str(d) for d in np.arange(np.datetime64("2023-01-02"), np.datetime64("2023-01-02") + 40)]


def price(symbol_index: int, day_index: int) -> float:
    return round(10.0 * (symbol_index + 1) + 0.25 * day_index, 4)


def csv_text(symbols=SYMBOLS, days=DAYS) -> str:
    """Rows interleaved by date (the usual export layout), mixed-case headers, extra column."""
    lines = ["Date,Ticker,OPEN,High,Low,Adj Close,Volume,Note"]
    for d, day in enumerate(days):
        for s, symbol in enumerate(symbols):
            p = price(s, d)
            lines.append(f"{day},{symbol},{p},{p + 1},{p - 1},{p + 0.5},{1000 + d},x")
    return "\n".join(lines) + "\n"


@pytest.fixture
def import_root(settings):
    root = settings.data_dir / "imports"
    root.mkdir(parents=True, exist_ok=True)
    return root


@pytest.fixture
def stubs(channel):
    return market_data_pb2_grpc.MarketDataServiceStub(channel), jobs_pb2_grpc.JobServiceStub(channel)


def finished(jobs, job_id: str) -> jobs_pb2.Job:
    return wait_until(lambda: (j := jobs.GetJob(jobs_pb2.JobRequest(job_id=job_id))).status in (
        jobs_pb2.COMPLETED, jobs_pb2.FAILED) and j, timeout=60)


def test_csv_of_many_symbols_is_imported_as_a_job(stubs, import_root):
    market, jobs = stubs
    (import_root / "daily.csv").write_text(csv_text())
    handle = market.ImportFile(market_data_pb2.ImportFileRequest(path="daily.csv", column_map={"close": "adj close"}))
    assert handle.job_id.startswith("im-") and handle.status == jobs_pb2.PENDING
    job = finished(jobs, handle.job_id)
    assert job.status == jobs_pb2.COMPLETED, job.error_message
    assert job.task_type == "import" and job.progress == 1.0
    detail = json.loads(job.progress_detail)
    assert (detail["rows_read"], detail["total_rows"], detail["symbols_written"]) == (120, 120, 3)
    result = market.GetImportFileResult(jobs_pb2.JobRequest(job_id=handle.job_id))
    assert [(s.symbol, s.rows, s.version) for s in result.symbols] == [(s, 40, 1) for s in SYMBOLS]
    assert (result.bars, result.rows_read, result.interval, result.format) == (120, 120, "1d", "csv")
    for s, symbol in enumerate(SYMBOLS):
        bars = market.GetBars(market_data_pb2.GetBarsRequest(symbol=symbol)).bars
        assert [b.time[:10] for b in bars] == DAYS
        assert [b.close for b in bars] == [price(s, d) + 0.5 for d in range(len(DAYS))]  # the mapped column
        assert [b.open for b in bars] == [price(s, d) for d in range(len(DAYS))]
        assert [b.volume for b in bars] == [1000.0 + d for d in range(len(DAYS))]


def test_parquet_file_with_timestamps_and_an_intraday_interval(stubs, import_root):
    market, jobs = stubs
    minutes = np.datetime64("2024-03-01T09:30") + np.arange(90)
    rows = [(symbol, minute, 5.0 + m * 0.01) for symbol in ("PQM", "PQN") for m, minute in enumerate(minutes)]
    table = pa.table({"symbol": [r[0] for r in rows],
                      "timestamp": pa.array([r[1].astype("datetime64[ns]") for r in rows], pa.timestamp("ns")),
                      "open": [r[2] for r in rows], "high": [r[2] + 0.1 for r in rows],
                      "low": [r[2] - 0.1 for r in rows], "close": [r[2] for r in rows],
                      "volume": pa.array([7] * len(rows), pa.int64())})
    pq.write_table(table, import_root / "minutes.parquet", row_group_size=50)
    handle = market.ImportFile(market_data_pb2.ImportFileRequest(path=str(import_root / "minutes.parquet"),
                                                                 interval="1m", replace=True))
    job = finished(jobs, handle.job_id)
    assert job.status == jobs_pb2.COMPLETED, job.error_message
    result = market.GetImportFileResult(jobs_pb2.JobRequest(job_id=handle.job_id))
    assert [(s.symbol, s.rows) for s in result.symbols] == [("PQM", 90), ("PQN", 90)] and result.format == "parquet"
    bars = market.GetBars(market_data_pb2.GetBarsRequest(symbol="PQN", interval="1m")).bars
    assert len(bars) == 90 and parse_time(bars[10].time) == int(minutes[10].astype("datetime64[ns]").astype(np.int64))
    assert bars[10].close == pytest.approx(5.1, abs=1e-12)
    with pytest.raises(grpc.RpcError) as error:  # no daily bars were written
        market.GetBars(market_data_pb2.GetBarsRequest(symbol="PQN"))
    assert error.value.code() == grpc.StatusCode.NOT_FOUND


@pytest.mark.parametrize("text, message", [
    ("date,symbol,open,high,low,volume\n2024-01-02,BADA,1,1,1,1\n", "missing column close"),
    ("date,symbol,open,high,low,close,volume\n2024-01-02,BADA,1,2,1,1,5\n2024-01-03,BADA,1,2,1,abc,5\n",
     "line 3, column 'close': 'abc' is not a number"),
    ("date,symbol,open,high,low,close,volume\n2024-01-02,BADB,1,2,1,1,5\n2024-01-02,BADA,1,2,1,1,5\n"
     "2024-01-02,BADA,1,2,1,1,5\n", "line 4, column 'date': BADA at 2024-01-02 repeats the time of its previous row (line 3)"),
    ("date,symbol,open,high,low,close,volume\n2024-01-03,BADA,1,2,1,1,5\n2024-01-02,BADA,1,2,1,1,5\n",
     "line 3, column 'date': BADA at 2024-01-02 is earlier than its previous row (line 2)"),
    ("date,symbol,open,high,low,close,volume\n2024-01-02,BADA,1,2,1,1,5\nnot-a-date,BADA,1,2,1,1,5\n",
     "line 3, column 'date': 'not-a-date' is not an ISO-8601 date"),
    ("date,symbol,open,high,low,close,volume\n2024-01-02,BADA,1,2,1,1,5\n2024-01-03,BADA,1,2,1.5,1,5\n",
     "line 3: BADA at 2024-01-03 is invalid"),
])
def test_a_bad_file_fails_the_job_naming_row_and_column_and_writes_nothing(stubs, import_root, text, message):
    market, jobs = stubs
    (import_root / "bad.csv").write_text(text)
    handle = market.ImportFile(market_data_pb2.ImportFileRequest(path="bad.csv"))
    job = finished(jobs, handle.job_id)
    assert job.status == jobs_pb2.FAILED and message in job.error_message, job.error_message
    assert job.attempts == 1  # bad input: not retried
    listed = {s.symbol for s in market.ListSymbols(market_data_pb2.ListSymbolsRequest()).symbols}
    assert not listed & {"BADA", "BADB"}  # nothing of the file, not even its good symbol
    with pytest.raises(grpc.RpcError) as error:
        market.GetImportFileResult(jobs_pb2.JobRequest(job_id=handle.job_id))
    assert error.value.code() == grpc.StatusCode.FAILED_PRECONDITION


def test_paths_outside_the_import_root_are_refused(stubs, import_root, tmp_path):
    market, _ = stubs
    outside = tmp_path / "secret.csv"
    outside.write_text(csv_text())
    (import_root / "link.csv").symlink_to(outside)
    for path, code, text in [
            (str(outside), grpc.StatusCode.PERMISSION_DENIED, "outside the import roots"),
            ("../secret.csv", grpc.StatusCode.PERMISSION_DENIED, "outside the import roots"),
            (f"{import_root}/../../secret.csv", grpc.StatusCode.PERMISSION_DENIED, "outside the import roots"),
            ("link.csv", grpc.StatusCode.PERMISSION_DENIED, "outside the import roots"),  # a link out of the root
            ("/etc/passwd", grpc.StatusCode.PERMISSION_DENIED, "IMPORT_ROOTS"),
            ("http://example.com/a.csv", grpc.StatusCode.INVALID_ARGUMENT, "only local paths and s3:// URIs"),
            ("s3://elsewhere/a.csv", grpc.StatusCode.PERMISSION_DENIED, "outside the import roots"),
            ("", grpc.StatusCode.INVALID_ARGUMENT, "is empty"),
            ("missing.csv", grpc.StatusCode.NOT_FOUND, "no file"),
            ("x" * 5000 + ".csv", grpc.StatusCode.INVALID_ARGUMENT, "cannot be read"),
            ("daily.xlsx", grpc.StatusCode.INVALID_ARGUMENT, "cannot tell the format")]:
        if path == "daily.xlsx":
            (import_root / path).write_text("x")
        with pytest.raises(grpc.RpcError) as error:
            market.ImportFile(market_data_pb2.ImportFileRequest(path=path))
        assert error.value.code() == code and text in error.value.details(), (path, error.value.details())
    with pytest.raises(grpc.RpcError) as error:
        market.ImportFile(market_data_pb2.ImportFileRequest(path="x.csv", column_map={"price": "close"}))
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "column_map" in error.value.details()


def test_sdk_and_gq_import_file(platform, import_root):
    from gpu_quant import Client
    from gpu_quant.errors import JobFailed
    from tests.integration.test_cli import gq
    target = f"127.0.0.1:{platform.port}"
    (import_root / "daily.csv").write_text(csv_text())
    with Client(target) as client:
        result = client.bars.import_file("daily.csv", column_map={"close": "Adj Close"}).result()
        assert [(s["symbol"], s["rows"]) for s in result["symbols"]] == [(s, len(DAYS)) for s in SYMBOLS]
        (import_root / "bad.csv").write_text("date,symbol,open,high,low,close,volume\n2024-01-02,X,1,2,1,zz,5\n")
        with pytest.raises(JobFailed):
            client.bars.import_file("bad.csv").result()
    printed = gq(target, "import-file", "daily.csv", "--map", "close=Adj Close", "--replace", "--json")
    assert printed.returncode == 0, printed.stderr
    document = json.loads(printed.stdout)
    assert document["bars"] == 3 * len(DAYS) and [s["version"] for s in document["symbols"]] == [2, 2, 2]
    failed = gq(target, "data", "import-file", "bad.csv")
    assert failed.returncode == 1 and "line 2, column 'close'" in failed.stderr + failed.stdout
    assert gq(target, "import-file", "daily.csv", "--map", "close").returncode == 2
