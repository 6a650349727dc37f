"""ImportFile from S3 (moto's server, as in test_parquet_store_s3.py; skipped without moto): with
the store itself on s3://bars/market, an object in the same bucket is imported by a real worker,
and another bucket is refused."""
from __future__ import annotations

import grpc
import pyarrow.fs as pafs
import pytest

from api_proto import jobs_pb2, jobs_pb2_grpc, market_data_pb2, market_data_pb2_grpc
from tests.integration.test_import_file import DAYS, SYMBOLS, csv_text, finished
from tests.integration.test_parquet_store import serve
from tests.integration.test_parquet_store_s3 import s3_endpoint  # noqa: F401  (fixture)


@pytest.fixture
def s3_channel(s3_endpoint, settings_factory, redis_client, monkeypatch):  # noqa: F811
    for name, value in (("AWS_ACCESS_KEY_ID", "test"), ("AWS_SECRET_ACCESS_KEY", "test"),
                        ("AWS_DEFAULT_REGION", "us-east-1")):
        monkeypatch.setenv(name, value)
    uri = f"s3://bars/market?endpoint_override={s3_endpoint}&scheme=http&region=us-east-1&allow_bucket_creation=true"
    filesystem, _ = pafs.FileSystem.from_uri(uri)
    filesystem.create_dir("bars")
    with filesystem.open_output_stream("bars/imports/daily.csv") as out:
        out.write(csv_text().encode())
    yield from serve(settings_factory(market_data_uri=uri))


def test_an_object_in_the_store_bucket_is_imported_and_other_buckets_are_refused(s3_channel):
    market, jobs = market_data_pb2_grpc.MarketDataServiceStub(s3_channel), jobs_pb2_grpc.JobServiceStub(s3_channel)
    handle = market.ImportFile(market_data_pb2.ImportFileRequest(path="s3://bars/imports/daily.csv",
                                                                 column_map={"close": "Adj Close"}))
    job = finished(jobs, handle.job_id)
    assert job.status == jobs_pb2.COMPLETED, job.error_message
    result = market.GetImportFileResult(jobs_pb2.JobRequest(job_id=handle.job_id))
    assert [(s.symbol, s.rows) for s in result.symbols] == [(s, len(DAYS)) for s in SYMBOLS]
    assert len(market.GetBars(market_data_pb2.GetBarsRequest(symbol="IMB")).bars) == len(DAYS)
    for path, code in [("s3://other/daily.csv", grpc.StatusCode.PERMISSION_DENIED),
                       ("s3://bars/imports/daily.csv?endpoint_override=evil:80", grpc.StatusCode.INVALID_ARGUMENT),
                       ("s3://bars/imports/../market/x.csv", grpc.StatusCode.INVALID_ARGUMENT),
                       ("s3://bars/imports/missing.csv", grpc.StatusCode.NOT_FOUND)]:
        with pytest.raises(grpc.RpcError) as error:
            market.ImportFile(market_data_pb2.ImportFileRequest(path=path))
        assert error.value.code() == code, (path, error.value.details())
