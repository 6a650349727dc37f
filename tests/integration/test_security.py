"""TLS (server and mutual) and API keys, against the real server: what a client sees."""
from __future__ import annotations

import contextlib
import datetime
import hashlib
import ipaddress
import json
import logging

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from api_proto import (backtest_pb2, backtest_pb2_grpc, market_data_pb2, market_data_pb2_grpc, realtime_pb2,
                       realtime_pb2_grpc)
from config.settings import InvalidSettings
from services import security
from services.server import create_server
from tests.conftest import wait_until

REALTIME = "gpu_api.realtime.RealTimeService"


# ------------------------------------------------------------------ throwaway PKI
def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _pem_key(key) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _certificate(subject: str, key, issuer: str, issuer_key, *, ca: bool = False, usage=None, names=()):
    now = datetime.datetime.now(datetime.timezone.utc)
    builder = (x509.CertificateBuilder().subject_name(_name(subject)).issuer_name(_name(issuer))
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
               .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
               .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()),
                              critical=False))
    if ca:
        builder = builder.add_extension(x509.KeyUsage(
            digital_signature=True, key_cert_sign=True, crl_sign=True, content_commitment=False,
            key_encipherment=False, data_encipherment=False, key_agreement=False, encipher_only=False,
            decipher_only=False), critical=True)
    if usage:
        builder = builder.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName(list(names)), critical=False)
    return builder.sign(issuer_key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)


class Pki:
    """A CA, a server certificate for localhost/127.0.0.1, a client certificate from the same CA
    and one from a CA the server does not trust."""

    def __init__(self, folder) -> None:
        self.folder = folder
        ca_key, rogue_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
        server_key, client_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
        self.ca = _certificate("test-ca", ca_key, "test-ca", ca_key, ca=True)
        self.rogue_ca = _certificate("rogue-ca", rogue_key, "rogue-ca", rogue_key, ca=True)
        self.server_cert = _certificate("localhost", server_key, "test-ca", ca_key, usage=ExtendedKeyUsageOID.SERVER_AUTH,
                                        names=[x509.DNSName("localhost"),
                                               x509.IPAddress(ipaddress.ip_address("127.0.0.1"))])
        self.server_key = _pem_key(server_key)
        self.client_cert = _certificate("desk-a", client_key, "test-ca", ca_key, usage=ExtendedKeyUsageOID.CLIENT_AUTH)
        self.client_key = _pem_key(client_key)
        self.rogue_cert = _certificate("intruder", client_key, "rogue-ca", rogue_key,
                                       usage=ExtendedKeyUsageOID.CLIENT_AUTH)
        for name in ("ca", "server_cert", "server_key", "rogue_ca"):
            (folder / f"{name}.pem").write_bytes(getattr(self, name))

    def path(self, name: str) -> str:
        return str(self.folder / f"{name}.pem")

    def channel(self, port: int, cert: bytes | None = None, key: bytes | None = None) -> grpc.Channel:
        credentials = grpc.ssl_channel_credentials(root_certificates=self.ca, private_key=key, certificate_chain=cert)
        return grpc.secure_channel(f"127.0.0.1:{port}", credentials,
                                   options=[("grpc.ssl_target_name_override", "localhost")])


@pytest.fixture
def pki(tmp_path):
    folder = tmp_path / "pki"
    folder.mkdir()
    return Pki(folder)


@contextlib.contextmanager
def serving(settings_factory, **overrides):
    running = create_server(settings_factory(**overrides))
    try:
        yield running
    finally:
        running.stop(grace=0)


def list_symbols(channel: grpc.Channel, metadata=None, timeout: float = 30.0):
    return market_data_pb2_grpc.MarketDataServiceStub(channel).ListSymbols(
        market_data_pb2.ListSymbolsRequest(), metadata=metadata, timeout=timeout)


def code_of(call) -> grpc.StatusCode:
    try:
        call()
    except grpc.RpcError as error:
        return error.code()
    return grpc.StatusCode.OK


# --------------------------------------------------------------------------- TLS
def test_tls_serves_and_a_plaintext_client_fails(settings_factory, redis_client, pki):
    with serving(settings_factory, tls_cert_file=pki.path("server_cert"), tls_key_file=pki.path("server_key")) as server:
        with pki.channel(server.port) as channel:
            assert list_symbols(channel).symbols is not None
            health = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=30)
            assert health.status == health_pb2.HealthCheckResponse.SERVING
        with grpc.insecure_channel(f"127.0.0.1:{server.port}") as plaintext:
            assert code_of(lambda: list_symbols(plaintext, timeout=30)) == grpc.StatusCode.UNAVAILABLE


def test_mutual_tls_rejects_clients_without_a_trusted_certificate(settings_factory, redis_client, pki):
    with serving(settings_factory, tls_cert_file=pki.path("server_cert"), tls_key_file=pki.path("server_key"),
                 tls_client_ca_file=pki.path("ca")) as server:
        with pki.channel(server.port, pki.client_cert, pki.client_key) as channel:
            assert code_of(lambda: list_symbols(channel)) == grpc.StatusCode.OK
        with pki.channel(server.port) as no_certificate:
            assert code_of(lambda: list_symbols(no_certificate, timeout=30)) == grpc.StatusCode.UNAVAILABLE
        with pki.channel(server.port, pki.rogue_cert, pki.client_key) as untrusted:
            assert code_of(lambda: list_symbols(untrusted, timeout=30)) == grpc.StatusCode.UNAVAILABLE


@pytest.mark.parametrize("overrides,variable", [
    ({"tls_cert_file": "missing.pem", "tls_key_file": "server_key"}, "TLS_CERT_FILE"),
    ({"tls_cert_file": "server_cert", "tls_key_file": "missing.pem"}, "TLS_KEY_FILE"),
    ({"tls_cert_file": "server_cert"}, "TLS_KEY_FILE"),
    ({"tls_key_file": "server_key"}, "TLS_CERT_FILE"),
    ({"tls_cert_file": "ca", "tls_key_file": "server_key"}, "TLS_CERT_FILE"),  # cert and key do not match
    ({"tls_cert_file": "server_cert", "tls_key_file": "server_key", "tls_client_ca_file": "nope"},
     "TLS_CLIENT_CA_FILE"),
    ({"tls_cert_file": "server_cert", "tls_key_file": "server_key", "tls_client_ca_file": "server_key"},
     "TLS_CLIENT_CA_FILE"),  # a key is not a CA certificate
])
def test_bad_tls_settings_stop_the_start_naming_the_variable(settings_factory, redis_client, pki, overrides,
                                                             variable):
    paths = {name: (pki.path(value) if (pki.folder / f"{value}.pem").exists() else str(pki.folder / value))
             for name, value in overrides.items()}
    with pytest.raises(InvalidSettings) as error:
        create_server(settings_factory(**paths))
    assert f"invalid setting {variable}=" in str(error.value)


# ---------------------------------------------------------------------- API keys
KEYS = {"old": "desk-a-2024-secret", "new": "desk-a-2025-secret", "realtime": "realtime-only-secret",
        "slow": "slow-client-secret"}


def key_entry(name: str, key: str, **extra) -> dict:
    return {"name": name, "key_sha256": hashlib.sha256(key.encode()).hexdigest(), **extra}


def bearer(key: str):
    return [("authorization", f"Bearer {key}")]


@pytest.fixture
def key_file(tmp_path):
    path = tmp_path / "api_keys.json"
    path.write_text(json.dumps({"keys": [
        key_entry("desk-a-2024", KEYS["old"]), key_entry("desk-a-2025", KEYS["new"]),
        key_entry("realtime-only", KEYS["realtime"], services=[REALTIME]),
        # slow enough that the test's burst of calls outruns the refill even on a loaded machine
        key_entry("slow", KEYS["slow"], rate_per_second=0.5, burst=3)]}))
    return path


@pytest.fixture
def keyed(settings_factory, redis_client, key_file, monkeypatch):
    monkeypatch.setattr(security, "KEY_FILE_RELOAD_SECONDS", 0.0)
    with serving(settings_factory, api_keys_file=str(key_file)) as server:
        with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            grpc.channel_ready_future(channel).result(timeout=60)
            server.channel = channel
            yield server


TICK_SECONDS = iter(range(10**6))


def stream_market_data(channel, metadata):
    tick = realtime_pb2.StreamDataRequest(stock_code="SEC.TEST", price=10.0, volume=100,
                                          timestamp=f"2024-01-02T09:30:00.{next(TICK_SECONDS):06d}Z")
    stub = realtime_pb2_grpc.RealTimeServiceStub(channel)
    return list(stub.StreamMarketData(iter([tick]), metadata=metadata, timeout=30))


def watch_backtest(channel, metadata):
    stub = backtest_pb2_grpc.BacktestServiceStub(channel)
    return list(stub.WatchBacktest(backtest_pb2.BacktestStatusRequest(backtest_id="bt-none"), metadata=metadata,
                                   timeout=30))


def test_keys_are_required_for_unary_and_streaming_rpcs(keyed, caplog):
    channel = keyed.channel
    caplog.set_level(logging.DEBUG, logger="services")
    for metadata in (None, bearer("wrong-key"), [("authorization", "Basic abc")], [("x-api-key", "")]):
        assert code_of(lambda: list_symbols(channel, metadata)) == grpc.StatusCode.UNAUTHENTICATED
        assert code_of(lambda: stream_market_data(channel, metadata)) == grpc.StatusCode.UNAUTHENTICATED
        assert code_of(lambda: watch_backtest(channel, metadata)) == grpc.StatusCode.UNAUTHENTICATED
    for metadata in (bearer(KEYS["new"]), [("x-api-key", KEYS["new"])], [("authorization", f"bearer {KEYS['old']}")]):
        assert code_of(lambda: list_symbols(channel, metadata)) == grpc.StatusCode.OK
        responses = stream_market_data(channel, metadata)
        assert responses and not responses[0].error
        assert code_of(lambda: watch_backtest(channel, metadata)) == grpc.StatusCode.NOT_FOUND  # admitted
    assert "wrong-key" not in caplog.text and KEYS["new"] not in caplog.text
    body = scrape(keyed)
    assert 'auth_rejections_total{reason="missing_key"} 9.0' in body
    assert 'auth_rejections_total{reason="unknown_key"} 3.0' in body
    assert 'grpc_requests_total{code="UNAUTHENTICATED",method="ListSymbols"} 4.0' in body


def scrape(server) -> str:
    from prometheus_client import generate_latest
    return generate_latest(server.registry).decode()


def test_health_and_reflection_stay_open(keyed):
    health = health_pb2_grpc.HealthStub(keyed.channel).Check(health_pb2.HealthCheckRequest(), timeout=30)
    assert health.status == health_pb2.HealthCheckResponse.SERVING
    reflection = reflection_pb2_grpc.ServerReflectionStub(keyed.channel)
    answers = list(reflection.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]),
                                                   timeout=30))
    assert REALTIME in {service.name for service in answers[0].list_services_response.service}


def test_a_key_calls_only_its_services(keyed):
    metadata = bearer(KEYS["realtime"])
    features = realtime_pb2_grpc.RealTimeServiceStub(keyed.channel).ListFeatures(
        realtime_pb2.ListFeaturesRequest(), metadata=metadata, timeout=30)
    assert features.features
    with pytest.raises(grpc.RpcError) as error:
        list_symbols(keyed.channel, metadata)
    assert error.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "'realtime-only' may not call gpu_api.market_data.MarketDataService" in error.value.details()
    assert code_of(lambda: watch_backtest(keyed.channel, metadata)) == grpc.StatusCode.PERMISSION_DENIED
    assert code_of(lambda: stream_market_data(keyed.channel, metadata)) == grpc.StatusCode.OK


def test_rate_limit_empties_then_refills(keyed):
    metadata = bearer(KEYS["slow"])
    codes = [code_of(lambda: list_symbols(keyed.channel, metadata)) for _ in range(5)]
    assert codes[:3] == [grpc.StatusCode.OK] * 3 and grpc.StatusCode.RESOURCE_EXHAUSTED in codes[3:]
    with pytest.raises(grpc.RpcError) as error:
        list_symbols(keyed.channel, metadata)
    assert error.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and "rate limit" in error.value.details()
    assert code_of(lambda: list_symbols(keyed.channel, bearer(KEYS["new"]))) == grpc.StatusCode.OK  # per key
    # 0.5 tokens/s: a token is back after ~2 s (refused calls take none); the deadline is generous
    wait_until(lambda: code_of(lambda: list_symbols(keyed.channel, metadata)) == grpc.StatusCode.OK,
               timeout=60, interval=0.25)
    assert 'auth_rejections_total{reason="rate_limited"}' in scrape(keyed)


def test_rotation_two_keys_then_the_old_one_is_removed(keyed, key_file):
    for key in (KEYS["old"], KEYS["new"]):
        assert code_of(lambda: list_symbols(keyed.channel, bearer(key))) == grpc.StatusCode.OK
    key_file.write_text(json.dumps({"keys": [key_entry("desk-a-2025", KEYS["new"])]}))
    assert code_of(lambda: list_symbols(keyed.channel, bearer(KEYS["old"]))) == grpc.StatusCode.UNAUTHENTICATED
    assert code_of(lambda: list_symbols(keyed.channel, bearer(KEYS["new"]))) == grpc.StatusCode.OK
    key_file.write_text("{not json")  # a broken edit keeps the keys loaded before
    assert code_of(lambda: list_symbols(keyed.channel, bearer(KEYS["new"]))) == grpc.StatusCode.OK


def test_keys_and_mutual_tls_together(settings_factory, redis_client, pki):
    inline = f"desk-a:{hashlib.sha256(KEYS['new'].encode()).hexdigest()}"
    with serving(settings_factory, tls_cert_file=pki.path("server_cert"), tls_key_file=pki.path("server_key"),
                 tls_client_ca_file=pki.path("ca"), api_keys=inline) as server:
        with pki.channel(server.port, pki.client_cert, pki.client_key) as channel:
            assert code_of(lambda: list_symbols(channel)) == grpc.StatusCode.UNAUTHENTICATED
            assert code_of(lambda: list_symbols(channel, bearer(KEYS["new"]))) == grpc.StatusCode.OK


def test_without_keys_every_caller_is_admitted(channel):
    assert code_of(lambda: list_symbols(channel)) == grpc.StatusCode.OK


def test_bad_key_file_stops_the_start_naming_the_variable(settings_factory, redis_client, tmp_path):
    broken = tmp_path / "keys.json"
    broken.write_text(json.dumps({"keys": [{"name": "a", "key": "plaintext"}]}))
    for path in (broken, tmp_path / "missing.json"):
        with pytest.raises(InvalidSettings) as error:
            create_server(settings_factory(api_keys_file=str(path)))
        assert "invalid setting API_KEYS_FILE=" in str(error.value)
    with pytest.raises(InvalidSettings) as error:
        create_server(settings_factory(api_keys="desk-a:not-a-digest"))
    assert "invalid setting API_KEYS=" in str(error.value) and "not-a-digest" not in str(error.value)


# ------------------------------------------------------------------ request limits
def test_per_request_limits_answer_invalid_argument_naming_the_limit(settings_factory, redis_client):
    from api_proto import ml_pb2, ml_pb2_grpc
    with serving(settings_factory, max_ticks_per_message=3, max_rows_per_request=3, max_symbols_per_request=2) as server:
        with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            ticks = [realtime_pb2.Tick(stock_code="LIM.T", price=1.0, volume=1.0, timestamp=f"2024-01-02T09:30:0{i}Z")
                     for i in range(4)]
            with pytest.raises(grpc.RpcError) as error:
                list(realtime_pb2_grpc.RealTimeServiceStub(channel).StreamMarketData(
                    iter([realtime_pb2.StreamDataRequest(ticks=ticks)]), timeout=30))
            assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert "ticks: has 4 ticks; the limit is 3 per message (MAX_TICKS_PER_MESSAGE)" in error.value.details()
            ml = ml_pb2_grpc.MLServiceStub(channel)
            rows = json.dumps({"f0": [1.0, 2.0, 3.0, 4.0], "y": [1.0, 2.0, 3.0, 4.0]})
            for call in (lambda: ml.Predict(ml_pb2.PredictRequest(model_id="m-x", input_data=rows), timeout=30),
                         lambda: ml.TrainModel(ml_pb2.TrainModelRequest(
                             model_type="linear", feature_columns=["f0"], target_column="y", training_data=rows),
                             timeout=30)):
                with pytest.raises(grpc.RpcError) as error:
                    call()
                assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
                assert "has 4 rows; the limit is 3 per request (MAX_ROWS_PER_REQUEST)" in error.value.details()
            with pytest.raises(grpc.RpcError) as error:
                backtest_pb2_grpc.BacktestServiceStub(channel).IntegratedBacktest(backtest_pb2.BacktestRequest(
                    stock_codes=["A.X", "B.X", "C.X"], start_time="2024-01-01", end_time="2024-02-01"), timeout=30)
            assert "stock_codes: has 3 symbols; the limit is 2" in error.value.details()
            grid = {"strategy_type": "sma_crossover",
                    "param_grid": {"fast": list(range(2, 400)), "slow": list(range(3, 400))}}
            with pytest.raises(grpc.RpcError) as error:
                backtest_pb2_grpc.BacktestServiceStub(channel).IntegratedBacktest(backtest_pb2.BacktestRequest(
                    stock_codes=["000001.SZ"], start_time="2024-01-01", end_time="2024-02-01",
                    strategy_config=json.dumps(grid), initial_capital=1e6), timeout=30)
            assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert "param_grid has 158,006 combinations; the limit is 100,000" in error.value.details()
