"""API key definitions, buckets and metadata parsing (services/security.py), without a server."""
from __future__ import annotations

import hashlib
import json
import threading

import pytest

from config.settings import InvalidSettings
from services.security import KeyFileError, KeyRing, TokenBucket, parse_keys, presented_key

SERVICES = ("gpu_api.backtest.BacktestService", "gpu_api.realtime.RealTimeService")


def sha(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def test_key_file_entries_with_defaults():
    keys = parse_keys(json.dumps({"keys": [
        {"name": "desk-a", "key_sha256": sha("a"), "services": ["gpu_api.realtime.RealTimeService"],
         "rate_per_second": 200, "burst": 400},
        {"name": "ops", "key_sha256": sha("b").upper()},
        {"name": "slow", "key_sha256": sha("c"), "rate_per_second": 0.5}]}), SERVICES)
    desk, ops, slow = keys
    assert desk.digest == hashlib.sha256(b"a").digest() and (desk.rate_per_second, desk.burst) == (200, 400)
    assert desk.may_call("gpu_api.realtime.RealTimeService") and not desk.may_call("gpu_api.backtest.BacktestService")
    assert ops.services is None and ops.rate_per_second is None and ops.may_call("anything")
    assert slow.burst == 1.0  # at least one call fits


def test_inline_name_digest_pairs():
    keys = parse_keys(f" desk-a:{sha('a')} , desk-b:{sha('b')},")
    assert [k.name for k in keys] == ["desk-a", "desk-b"] and all(k.services is None for k in keys)
    assert parse_keys("") == [] and parse_keys("  ") == []


@pytest.mark.parametrize("document,message", [
    ("{not json", "not valid JSON"),
    ("[1]", "must be name:sha256hex"),
    ('{"keys": {}}', 'expected an object {"keys"'),
    ('{"keys": [1]}', "keys[0] must be an object"),
    ('{"keys": [{"name": "a", "key": "plaintext"}]}', "never the key"),
    ('{"keys": [{"name": "", "key_sha256": "%s"}]}' % sha("a"), "keys[0].name"),
    ('{"keys": [{"name": "a", "key_sha256": "abc"}]}', "keys[0].key_sha256 must be 64 hex"),
    ('{"keys": [{"name": "a", "key_sha256": "%s", "services": "x"}]}' % sha("a"), "must be a list"),
    ('{"keys": [{"name": "a", "key_sha256": "%s", "services": ["gpu_api.Nope"]}]}' % sha("a"),
     "unknown service(s) gpu_api.Nope"),
    ('{"keys": [{"name": "a", "key_sha256": "%s", "rate_per_second": -1}]}' % sha("a"), "positive number"),
    ('{"keys": [{"name": "a", "key_sha256": "%s", "burst": true}]}' % sha("a"), "keys[0].burst"),
    ('{"keys": [{"name": "a", "key_sha256": "%s"}, {"name": "a", "key_sha256": "%s"}]}' % (sha("a"), sha("b")),
     "share a name"),
    ('{"keys": [{"name": "a", "key_sha256": "%s"}, {"name": "b", "key_sha256": "%s"}]}' % (sha("a"), sha("a")),
     "share a key_sha256"),
    ("desk-a", "must be name:sha256hex"),
])
def test_malformed_definitions_name_the_problem(document, message):
    with pytest.raises(KeyFileError) as error:
        parse_keys(document, SERVICES)
    assert message in str(error.value)


def test_token_bucket_bursts_then_refills_at_its_rate():
    now = [100.0]
    bucket = TokenBucket(rate=2.0, burst=3.0, clock=lambda: now[0])
    assert [bucket.take() for _ in range(4)] == [True, True, True, False]
    now[0] += 0.25
    assert not bucket.take()
    now[0] += 0.25
    assert bucket.take() and not bucket.take()
    now[0] += 100
    assert sum(bucket.take() for _ in range(10)) == 3  # never more than the burst


def test_token_bucket_is_thread_safe():
    bucket = TokenBucket(rate=1e-9, burst=1000.0)
    granted = []

    def hammer():
        granted.append(sum(bucket.take() for _ in range(500)))
    threads = [threading.Thread(target=hammer) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(granted) == 1000


@pytest.mark.parametrize("metadata,expected", [
    ([("authorization", "Bearer k1")], "k1"), ([("authorization", "bearer  k1 ")], "k1"),
    ([("x-api-key", " k2 ")], "k2"), ([("authorization", "Basic k1")], None), ([("authorization", "Bearer ")], None),
    ([("x-api-key", "")], None), ([], None), (None, None), ([("x-api-key-bin", b"k")], None),
])
def test_presented_key_from_metadata(metadata, expected):
    assert presented_key(metadata) == expected


def test_key_ring_finds_by_digest_and_rate_limits_per_key(tmp_path):
    path = tmp_path / "keys.json"
    path.write_text(json.dumps({"keys": [{"name": "file-key", "key_sha256": sha("f"), "rate_per_second": 1,
                                          "burst": 1}]}))
    ring = KeyRing(inline=f"inline-key:{sha('i')}", path=str(path))
    assert ring.enabled and ring.find("i").name == "inline-key" and ring.find("f").name == "file-key"
    assert ring.find("nope") is None and ring.find("") is None
    file_key = ring.find("f")
    assert ring.admit(file_key) and not ring.admit(file_key) and ring.admit(ring.find("i"))
    assert not KeyRing().enabled


def test_key_ring_startup_errors_name_the_variable(tmp_path):
    with pytest.raises(InvalidSettings, match="invalid setting API_KEYS_FILE="):
        KeyRing(path=str(tmp_path / "missing.json"))
    (tmp_path / "bad.json").write_text('{"keys": [{"name": "a"}]}')
    with pytest.raises(InvalidSettings, match=r"invalid setting API_KEYS_FILE=.*keys\[0\].key_sha256"):
        KeyRing(path=str(tmp_path / "bad.json"))
    with pytest.raises(InvalidSettings, match="invalid setting API_KEYS='<redacted>'"):
        KeyRing(inline="a:b")


def test_security_settings_use_the_deployment_variable_names(monkeypatch, tmp_path):
    from config.settings import load_settings
    monkeypatch.chdir(tmp_path)  # no .env here
    assert (load_settings().tls_cert_file, load_settings().api_keys_file) == ("", "")  # off by default
    names = {"TLS_CERT_FILE": "/c.pem", "TLS_KEY_FILE": "/k.pem", "TLS_CLIENT_CA_FILE": "/ca.pem",
             "API_KEYS": "a:" + "0" * 64, "API_KEYS_FILE": "/keys.json"}
    for name, value in names.items():
        monkeypatch.setenv(name, value)
    settings = load_settings()
    assert [getattr(settings, name.lower()) for name in names] == list(names.values())
