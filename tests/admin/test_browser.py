"""The status page in a real headless browser (Debian's chromium and chromedriver, driven by
selenium), against `siemgate run` as a process: log in, see an integration pending with its
link and one confirmed, a sink up and one down, click Confirm, see it confirmed.

The screenshot (1280x800) goes to the test's directory; with SIEMGATE_UPDATE_SCREENSHOT=1 it
also replaces docs/admin-status.png. Without chromium, chromedriver or selenium the test
skips with the reason, except under CI=true, where it fails.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import struct
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from siemgate.ingest.confirmation_store import ConfirmationStore
from siemgate_standins.broker import free_port
from tests.admin.support import TOKEN
from tests.ingest.confirmation_https import Reply, make_tls, serve
from tests.support import wait_until

pytestmark = pytest.mark.anyio

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
SCREENSHOT = Path(__file__).resolve().parents[2] / "docs" / "admin-status.png"
WIDTH, HEIGHT = 1280, 800
KEY = "browser-webhook-key-0123"
STAGING_LINK = "https://appsec.vendor.example/integrations/confirm?token=5c1f0e"


def browser_or_skip() -> None:
    missing = [str(path) for path in (CHROMIUM, CHROMEDRIVER) if not os.access(path, os.X_OK)]
    try:
        import selenium  # noqa: F401
    except ImportError:
        missing.append("the selenium package")
    if missing:
        reason = (f"the browser test needs {', '.join(missing)} (Debian: apt-get install chromium "
                  "chromium-driver; pip install selenium)")
        if os.environ.get("CI") == "true":
            pytest.fail(f"under CI=true: {reason}")
        pytest.skip(reason)


def test_a_missing_browser_fails_under_ci_and_skips_elsewhere(monkeypatch: pytest.MonkeyPatch,
                                                              tmp_path: Path) -> None:
    monkeypatch.setattr(sys.modules[__name__], "CHROMIUM", tmp_path / "no-chromium")
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="under CI=true: the browser test needs .*no-chromium"):
        browser_or_skip()
    monkeypatch.delenv("CI")
    with pytest.raises(pytest.skip.Exception, match="apt-get install chromium chromium-driver"):
        browser_or_skip()


@contextlib.contextmanager
def chrome(tmp_path: Path) -> Iterator[Any]:
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    options = Options()
    options.binary_location = str(CHROMIUM)
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                     f"--window-size={WIDTH},{HEIGHT}", "--force-device-scale-factor=1", "--lang=en-US",
                     "--no-first-run", "--disable-extensions", "--disable-background-networking",
                     f"--user-data-dir={tmp_path / 'chromium-profile'}"):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    # Both paths given: selenium uses them and never looks for (or downloads) another browser.
    service = Service(executable_path=str(CHROMEDRIVER), log_output=str(tmp_path / "chromedriver.log"))
    driver = webdriver.Chrome(options=options, service=service)
    try:
        # The viewport, exactly (a headless window's size includes a window frame).
        driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                               {"width": WIDTH, "height": HEIGHT, "deviceScaleFactor": 1, "mobile": False})
        yield driver
    finally:
        driver.quit()


def write_config(tmp_path: Path, port: int, admin_port: int, ca_file: Path) -> Path:
    path = tmp_path / "run.yaml"
    path.write_text(f"""
log_level: info
listen: {{host: 127.0.0.1, port: {port}}}
admin: {{host: 127.0.0.1, port: {admin_port}, token: "${{SIEMGATE_ADMIN_TOKEN}}"}}
integrations:
  - name: appsec-prod
    auth: {{header: X-Api-Key, values: ["{KEY}"]}}
    # The operator's click lifts allowed_hosts; the test vendor is on loopback.
    confirmation: {{mode: manual, allow_private_addresses: true, ca_file: {ca_file}}}
  - name: appsec-staging
    path: /hooks/staging
    auth: {{header: X-Api-Key, values: ["{KEY}"]}}
# Relative to the process's directory (tmp_path), as a deployment's ./data.
bus: {{type: embedded, path: ./data/siemgate.db}}
state_dir: ./data/state
quarantine: {{path: ./data/quarantine}}
forward: {{lag_interval_seconds: 1, drain_timeout_seconds: 2}}
sinks:
  - {{name: archive, type: file, path: ./data/out/events.ndjson, fsync: never}}
  # Nothing listens there: the sink is down, its events wait on the log.
  - {{name: qradar, type: syslog, address: "tcp://127.0.0.1:{free_port()}", format: leef,
     batch: {{max_events: 100}}, retry: {{initial_seconds: 0.2, max_seconds: 1}}}}
""")
    return path


def batch(n: int, size: int) -> bytes:
    severities = ("high", "medium", "low", "low", "medium", "info")
    return orjson.dumps([{"id": f"ev-{n}-{i}", "severity": severities[(n + i) % 6], "type": "sql_injection",
                          "url": "https://shop.example/login"} for i in range(size)])


async def test_status_page_in_a_real_browser(tmp_path: Path, processes: list[subprocess.Popen[bytes]]) -> None:
    browser_or_skip()
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.ui import WebDriverWait

    tls = make_tls(tmp_path)
    port, admin_port = free_port(), free_port()
    config = write_config(tmp_path, port, admin_port, tls.ca_file)
    # appsec-staging was confirmed earlier (`siemgate confirm`).
    store = ConfirmationStore(str(tmp_path / "data" / "state"))
    await store.record_link("appsec-staging", STAGING_LINK, "2026-11-28T16:42:07Z")
    await store.mark_confirmed("appsec-staging", STAGING_LINK, "cli")

    async with serve(tls, {"/integrations/confirm": Reply(body=b"Integration confirmed")}) as vendor:
        link = vendor.url("/integrations/confirm?token=8d2c41f7a9")
        log = tmp_path / "run.log"
        with open(log, "ab") as handle:
            process = subprocess.Popen([sys.executable, "-m", "siemgate", "run", "-c", str(config)],
                                       stdout=handle, stderr=handle, cwd=tmp_path,
                                       env={**os.environ, "SIEMGATE_ADMIN_TOKEN": TOKEN})
        processes.append(process)
        admin = f"http://127.0.0.1:{admin_port}"
        async with httpx.AsyncClient(timeout=10) as client:
            async def api() -> dict[str, Any] | None:
                assert process.poll() is None, log.read_text()
                try:
                    response = await client.get(f"{admin}/api/status", headers={"Authorization": f"Bearer {TOKEN}"})
                except httpx.HTTPError:
                    return None
                return dict(response.json()) if response.status_code == 200 else None

            async def webhooks_ready() -> bool:
                try:
                    return (await client.get(f"http://127.0.0.1:{port}/readyz")).status_code == 200
                except httpx.HTTPError:
                    return False

            await wait_until(webhooks_ready, "siemgate run to be ready", timeout=30)
            # The vendor's setup: its confirmation message, then events; and a sender with a stale key.
            webhook = f"http://127.0.0.1:{port}/webhook/appsec-prod"
            headers = {"X-Api-Key": KEY, "Content-Type": "application/json"}
            assert (await client.post(webhook, content=orjson.dumps({"confirmationLink": link}),
                                      headers=headers)).status_code == 200
            for n in range(6):
                assert (await client.post(webhook, content=batch(n, 500), headers=headers)).status_code == 200
            assert (await client.post(f"http://127.0.0.1:{port}/hooks/staging", content=batch(99, 120),
                                      headers=headers)).status_code == 200
            for _ in range(2):
                stale = {**headers, "X-Api-Key": "an-old-key-000000000"}
                assert (await client.post(webhook, content=batch(0, 1), headers=stale)).status_code == 401

            async def settled() -> bool:
                status = await api()
                if status is None:
                    return False
                sinks = {s["name"]: s for s in status["sinks"]}
                return (sinks["archive"]["state"] == "up" and sinks["archive"]["delivered"] >= 3121
                        and sinks["qradar"]["state"] == "down" and sinks["qradar"]["lag_total"] > 0
                        and (sinks["archive"]["rate_per_second"] or 0) > 0)

            await wait_until(settled, "the archive sink to deliver everything and qradar to be down", timeout=60)

            with chrome(tmp_path) as driver:
                wait = WebDriverWait(driver, 20)
                driver.get(admin + "/")
                # Not logged in: the login form, and none of the data.
                token_input = wait.until(expected_conditions.presence_of_element_located((By.ID, "token")))
                assert "appsec-prod" not in driver.page_source and link not in driver.page_source
                token_input.send_keys("not-the-admin-token-000")
                token_input.submit()
                wait.until(expected_conditions.text_to_be_present_in_element((By.CSS_SELECTOR, ".error"),
                                                                             "That is not the admin token."))
                assert "appsec-prod" not in driver.page_source
                driver.find_element(By.ID, "token").send_keys(TOKEN)
                driver.find_element(By.CSS_SELECTOR, "form[action='/login'] button").click()
                wait.until(expected_conditions.presence_of_element_located((By.ID, "integration-appsec-prod")))

                def state(row: str) -> str:
                    return str(driver.find_element(By.CSS_SELECTOR, f"#{row} [data-state]").text)

                assert state("integration-appsec-prod") == "Pending"
                assert driver.find_element(By.CSS_SELECTOR, "#integration-appsec-prod [data-link]").text == link
                assert state("integration-appsec-staging") == "Confirmed"
                assert state("sink-archive") == "Up"
                assert state("sink-qradar") == "Down"
                prod = driver.find_element(By.ID, "integration-appsec-prod").text
                assert "3,001" in prod and "401 \u00d7 2" in prod  # events and rejections of the last hour
                # The stylesheet applied (its nonce matches the CSP), and nothing was blocked.
                header = driver.find_element(By.TAG_NAME, "header")
                assert header.value_of_css_property("background-color") == "rgba(21, 35, 59, 1)"
                blocked = [e for e in driver.get_log("browser") if "Content Security Policy" in e["message"]]
                assert blocked == []

                png = driver.get_screenshot_as_png()
                assert struct.unpack(">II", png[16:24]) == (WIDTH, HEIGHT)
                (tmp_path / "admin-status.png").write_bytes(png)
                if os.environ.get("SIEMGATE_UPDATE_SCREENSHOT") == "1":
                    SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copyfile(tmp_path / "admin-status.png", SCREENSHOT)

                driver.find_element(By.CSS_SELECTOR, "button[data-confirm='appsec-prod']").click()
                wait.until(expected_conditions.text_to_be_present_in_element(
                    (By.CSS_SELECTOR, ".flash.ok"), "appsec-prod is confirmed"))
                assert state("integration-appsec-prod") == "Confirmed"
                assert driver.find_elements(By.CSS_SELECTOR, "button[data-confirm]") == []
                (tmp_path / "admin-status-confirmed.png").write_bytes(driver.get_screenshot_as_png())

            assert [seen.path for seen in vendor.requests] == ["/integrations/confirm?token=8d2c41f7a9"]
            status = await api()
            assert status is not None
            prod_status = next(i for i in status["integrations"] if i["name"] == "appsec-prod")
            assert (prod_status["state"], prod_status["confirmed_via"]) == ("confirmed", "admin")

        process.send_signal(signal.SIGTERM)
        assert process.wait(30) == 0, log.read_text()
