"""The dashboard in a real browser: headless Chromium (Debian's chromium + chromium-driver, installed
here when missing) driven by Selenium, against real uvicorn, Redis, the gRPC server and a worker."""
from __future__ import annotations

import json
import threading
import time
from datetime import datetime, timedelta

import pytest

from api_proto import backtest_pb2, backtest_pb2_grpc, realtime_pb2, realtime_pb2_grpc
from tests.conftest import wait_until
from tests.system_packages import commands
from tests.gateway_helpers import start_gateway_for

BROWSER_PACKAGES = ("chromium", "chromium-driver")


@pytest.fixture(scope="session")
def chromium() -> tuple[str, str]:
    """Debian's chromium and its driver, installed with apt-get when missing (tests run as root)."""
    return commands(("chromium", "chromedriver"), BROWSER_PACKAGES)


@pytest.fixture
def browser(chromium):
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service
    options = Options()
    options.binary_location = chromium[0]
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                     "--window-size=1400,1000", "--no-first-run"):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(chromium[1]), options=options)
    driver.set_script_timeout(10)
    yield driver
    driver.quit()


@pytest.fixture
def gateway(platform):
    running = start_gateway_for(platform.settings)
    yield running
    running.stop()


def page_value(driver, script: str):
    return driver.execute_script(script)


def painted_pixels(driver, selector: str) -> int:
    """Non-transparent pixels on the canvas under ``selector`` (0 when none is there)."""
    return page_value(driver, f"""
        const canvas = document.querySelector({json.dumps(selector)});
        if (!canvas || !canvas.width) return 0;
        const data = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
        let painted = 0;
        for (let i = 3; i < data.length; i += 4) if (data[i] > 0) painted++;
        return painted;""")


def stream_ticks(channel, symbol: str, stop: threading.Event) -> None:
    stub = realtime_pb2_grpc.RealTimeServiceStub(channel)
    start = datetime(2024, 6, 3, 9, 30)

    def ticks():
        for i in range(3000):
            if stop.is_set():
                return
            yield realtime_pb2.StreamDataRequest(stock_code=symbol, price=10 + 0.02 * (i % 40), volume=100 + i,
                                                 timestamp=(start + timedelta(seconds=i)).isoformat())
            time.sleep(0.01)
    list(stub.StreamMarketData(ticks(), timeout=60))


def test_dashboard_shows_a_backtest_reach_completed_with_its_equity_chart_and_live_ticks(
        browser, gateway, channel):
    from selenium.webdriver.common.by import By
    browser.get(f"http://127.0.0.1:{gateway.port}/")
    assert "dashboard" in browser.title
    wait_until(lambda: page_value(browser, "return document.getElementById('conn-status').dataset.state")
               == "live", timeout=15)
    # Workers and queue depths arrive on the system channel.
    wait_until(lambda: "yes" in browser.find_element(By.ID, "workers").text, timeout=20)
    assert "backtest" in browser.find_element(By.ID, "queues").text

    stub = backtest_pb2_grpc.BacktestServiceStub(channel)
    job_id = stub.IntegratedBacktest(backtest_pb2.BacktestRequest(
        stock_codes=["000001.SZ", "600000.SH"], start_time="2024-01-01", end_time="2024-12-31",
        strategy_config=json.dumps({"strategy_type": "trend_following", "lookback_period": 20,
                                    "moving_average_window": 50}),
        initial_capital=1_000_000, commission_rate=0.0003)).backtest_id
    row = f'#jobs tr[data-job-id="{job_id}"]'
    wait_until(lambda: browser.find_elements(By.CSS_SELECTOR, row), timeout=20)  # it appears...
    wait_until(lambda: browser.find_elements(By.CSS_SELECTOR, f'{row} td.status[data-status="COMPLETED"]'),
               timeout=60)  # ...and reaches COMPLETED
    assert page_value(browser, f"return document.querySelector('{row} progress').value") == 1
    # The equity curve of the finished backtest is drawn, with its metrics beside it.
    wait_until(lambda: page_value(browser, "return document.getElementById('equity-chart').dataset.jobId")
               == job_id, timeout=20)
    wait_until(lambda: painted_pixels(browser, "#equity-chart canvas") > 500, timeout=10)
    assert "total_return" in browser.find_element(By.ID, "metrics").text

    # A symbol's live ticks with indicators, while a gRPC stream publishes them.
    box = browser.find_element(By.ID, "symbol-input")
    box.send_keys("DASH.WS")
    browser.find_element(By.CSS_SELECTOR, "#symbol-form button").click()
    stop = threading.Event()
    streaming = threading.Thread(target=stream_ticks, args=(channel, "DASH.WS", stop), daemon=True)
    streaming.start()
    try:
        wait_until(lambda: len(browser.find_elements(By.CSS_SELECTOR, "#ticks tr")) >= 5, timeout=30)
        wait_until(lambda: painted_pixels(browser, "#tick-chart canvas") > 200, timeout=10)
        legend = browser.find_element(By.ID, "tick-chart").text
        assert "sma_5" in legend, legend
    finally:
        stop.set()
        streaming.join(timeout=30)

    errors = [entry for entry in browser.get_log("browser") if entry["level"] == "SEVERE"]
    assert not errors, errors


def test_dashboard_with_api_keys_asks_for_one_and_connects_with_it(browser, platform):
    from selenium.webdriver.common.by import By
    from services.security import key_digest
    key = "dashboard-key"
    gateway = start_gateway_for(platform.settings, api_keys=f"desk:{key_digest(key).hex()}")
    state = "return document.getElementById('conn-status').dataset.state"
    try:
        browser.get(f"http://127.0.0.1:{gateway.port}/")
        wait_until(lambda: page_value(browser, state) == "unauthenticated", timeout=15)
        assert browser.find_element(By.ID, "key-form").is_displayed()
        browser.find_element(By.ID, "key-input").send_keys(key)
        browser.find_element(By.CSS_SELECTOR, "#key-form button").click()
        wait_until(lambda: page_value(browser, state) == "live", timeout=15)
        wait_until(lambda: "yes" in browser.find_element(By.ID, "workers").text, timeout=20)
        # A fresh page keeps the key for the session, or takes it from /#key=...
        browser.get(f"http://127.0.0.1:{gateway.port}/#key={key}")
        wait_until(lambda: page_value(browser, state) == "live", timeout=15)
        assert "key=" not in browser.current_url
    finally:
        gateway.stop()
    # The refused first connection shows as a closed socket, not as a script error.
    errors = [entry for entry in browser.get_log("browser") if entry["level"] == "SEVERE"
              and "WebSocket" not in entry["message"]]
    assert not errors, errors
