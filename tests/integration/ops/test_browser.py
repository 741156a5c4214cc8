"""The console in a real browser: Debian's headless Chromium driven by Selenium through
/usr/bin/chromedriver (no browser download). An operator logs in, finds subscriptions by
every kind of identifier, reads a timeline, carries out every action with a reason and sees
it in the timeline under ``ops:<user>``; a form stripped of its CSRF token is refused, and
wrong credentials show nothing.

``.ci/run`` installs ``chromium`` and ``chromium-driver`` when they are missing; these tests
are skipped only when they are not installed. With BILLING_OPS_SCREENSHOTS set to a folder,
the overview and a subscription page are saved there (docs/ holds the ones the README shows).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from urllib.parse import quote

import pytest
from selenium import webdriver
from selenium.common.exceptions import WebDriverException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.wait import WebDriverWait

from tests.integration.ops.conftest import PASSWORD, USER, Ops

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--window-size=1280,1000",
    "--lang=en-US",
)
ACTOR = "by ops:oncall"

pytestmark = pytest.mark.skipif(
    not (CHROMIUM.exists() and CHROMEDRIVER.exists()),
    reason="needs Debian's chromium and chromium-driver (apt-get install -y chromium "
    "chromium-driver; .ci/run installs them)",
)


def start_browser(profile: Path, *, network_log: bool = False) -> WebDriver:
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in (*FLAGS, f"--user-data-dir={profile}"):
        options.add_argument(flag)
    if network_log:
        options.set_capability("goog:loggingPrefs", {"performance": "ALL"})
    return webdriver.Chrome(options=options, service=Service(str(CHROMEDRIVER)))


@pytest.fixture(scope="module")
def browser() -> Iterator[WebDriver]:
    profile = Path(tempfile.mkdtemp(prefix="billing-ops-chromium-"))
    driver = start_browser(profile)
    driver.implicitly_wait(5)
    yield driver
    driver.quit()
    shutil.rmtree(profile, ignore_errors=True)


def log_in(driver: WebDriver, ops: Ops) -> None:
    """Credentials in the address, once: the browser keeps them for the origin."""
    host = ops.url.removeprefix("http://")
    driver.get(f"http://{quote(USER)}:{quote(PASSWORD)}@{host}/ops/")
    assert driver.find_element(By.TAG_NAME, "h1").text == "Overview"


def search(driver: WebDriver, wanted: str) -> None:
    box = driver.find_element(By.ID, "q")
    box.clear()
    with next_page(driver):
        box.send_keys(wanted, Keys.ENTER)


@contextmanager
def next_page(driver: WebDriver) -> Iterator[None]:
    """Wait, after what the block does, until the browser shows another page."""
    page = driver.find_element(By.TAG_NAME, "html")
    yield

    def gone(_driver: WebDriver) -> bool:
        try:
            page.is_enabled()
        except WebDriverException:  # stale, or "does not belong to the document": replaced
            return True
        return False

    WebDriverWait(driver, 15).until(gone)


def heading(driver: WebDriver) -> str:
    return driver.find_element(By.TAG_NAME, "h1").text


def submit(driver: WebDriver, form_id: str, reason: str, **fields: str) -> None:
    form = driver.find_element(By.ID, form_id)
    for name, value in fields.items():
        form.find_element(By.NAME, name).send_keys(value)
    form.find_element(By.NAME, "reason").send_keys(reason)
    with next_page(driver):
        form.find_element(By.TAG_NAME, "button").click()


def banner(driver: WebDriver) -> str:
    return driver.find_element(By.CSS_SELECTOR, ".banner").text


def newest_event(driver: WebDriver, kind: str) -> WebElement:
    """The newest timeline entry of an event kind."""
    xpath = f"//ol[@id='timeline']/li[contains(@class, 'event')][span[@class='kind' and text()='{kind}']]"
    return driver.find_elements(By.XPATH, xpath)[0]


def acted(driver: WebDriver, kind: str, reason: str) -> None:
    entry = newest_event(driver, kind)
    assert entry.find_element(By.CLASS_NAME, "actor").text == ACTOR
    assert f"reason {reason}" in entry.find_element(By.CLASS_NAME, "details").text


def screenshot(driver: WebDriver, name: str) -> None:
    """The whole page, when BILLING_OPS_SCREENSHOTS names a folder."""
    folder = os.environ.get("BILLING_OPS_SCREENSHOTS")
    if not folder:
        return
    height = int(driver.execute_script("return document.documentElement.scrollHeight"))
    metrics = {"width": 1280, "height": min(height, 3000), "deviceScaleFactor": 1, "mobile": False}
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", metrics)  # type: ignore[attr-defined]
    driver.save_screenshot(str(Path(folder) / name))
    driver.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})  # type: ignore[attr-defined]


def test_find_a_subscription_by_each_identifier_and_read_its_timeline(
    browser: WebDriver, ops: Ops
) -> None:
    sid, charge = ops.paid("cust-1001")
    late = ops.past_due("cust-1002")
    log_in(browser, ops)
    assert charge.imp_uid
    for wanted in ("cust-1001", str(sid), charge.merchant_uid, charge.imp_uid):
        search(browser, wanted)
        assert heading(browser) == f"Subscription {sid} active", wanted
    search(browser, "cust-1002")
    assert heading(browser) == f"Subscription {late} past_due"
    failed = browser.find_element(By.ID, f"charge-{ops.charges(late)[0].id}").text
    assert "failed 9,900 KRW, period 1 attempt 1" in failed
    assert "PortOne declined (HTTP 200, code 0): 잔액부족" in failed
    assert "failed 잔액부족 (soft)" in failed
    times = [t.text for t in browser.find_elements(By.CSS_SELECTOR, "#timeline time")]
    assert times and all(t.endswith("+09:00") for t in times)
    kinds = [k.text for k in browser.find_elements(By.CSS_SELECTOR, "#timeline li.event .kind")]
    assert kinds[-1] == "subscription_created"  # the oldest, at the bottom
    search(browser, "nobody-has-this")
    assert "Nothing has the customer_uid" in banner(browser)


def test_every_action_with_a_reason_is_in_the_timeline_as_the_operator(
    browser: WebDriver, ops: Ops
) -> None:
    sid, charge = ops.paid("cust-2001")
    late = ops.past_due("cust-2002")
    notice = ops.failing_notice(late, "HTTP 500 from the receiver")
    log_in(browser, ops)

    browser.get(f"{ops.console}/subscriptions/{sid}")
    submit(browser, f"refund-charge-{charge.id}", "price error", amount="abc")
    assert banner(browser).startswith("amount: a whole number of KRW above 0, such as 5000")
    assert ops.refunds(charge.id) == []
    submit(browser, f"refund-charge-{charge.id}", "price error on the invoice", amount="3000")
    assert banner(browser) == "Refunded: PortOne confirmed the refund."
    assert "refund 1 succeeded 3,000 KRW of charge" in browser.find_element(By.ID, "refund-1").text
    acted(browser, "charge_refunded", "price error on the invoice")
    assert "refunded 3,000 KRW" in browser.find_element(By.ID, f"charge-{charge.id}").text
    screenshot(browser, "ops-subscription.png")

    submit(browser, "cancel", "moving abroad")  # at period end: the default choice
    assert banner(browser) == "Cancels at the end of the paid period: no renewal."
    acted(browser, "cancel_scheduled", "moving abroad")

    browser.get(f"{ops.console}/subscriptions/{late}")
    submit(browser, f"resend-{notice.id}", "receiver fixed")
    assert banner(browser).startswith("The notice is due again")
    acted(browser, "notice_resend", "receiver fixed")
    submit(browser, "retry", "card limit raised")
    assert banner(browser).startswith("Retry asked")
    acted(browser, "retry_now", "card limit raised")
    submit(browser, "pause", "customer asked for a pause")
    assert heading(browser) == f"Subscription {late} paused"
    acted(browser, "subscription_paused", "customer asked for a pause")
    submit(browser, "resume", "customer is back")
    assert heading(browser) == f"Subscription {late} active"
    acted(browser, "subscription_resumed", "customer is back")
    browser.find_element(By.ID, "cancel-now").click()
    submit(browser, "cancel", "fraud suspected")
    assert heading(browser) == f"Subscription {late} canceled"
    acted(browser, "subscription_canceled", "fraud suspected")
    assert browser.find_elements(By.ID, "actions") == []  # nothing left to do

    browser.get(f"{ops.console}/")
    assert browser.find_element(By.ID, "mrr").text == "9,900 KRW"  # the one ending still counts


def test_the_overview_charts_weeks_of_charges(browser: WebDriver, ops: Ops) -> None:
    for n in range(6):
        ops.subscribe(f"cust-night-{n}", plan="nightly-ny")
    ops.sandbox.script("cust-night-0", [*["approve"] * 5, "decline:한도초과"])
    ops.sandbox.script("cust-night-1", ["decline:분실카드"])
    ops.sandbox.script("cust-night-2", [*["approve"] * 16, *["decline:잔액부족"] * 3])
    for _day in range(21):
        ops.charge_due()
        ops.advance(timedelta(days=1))
    log_in(browser, ops)
    paid = browser.find_elements(By.CSS_SELECTOR, "#chart rect.paid")
    failed = browser.find_elements(By.CSS_SELECTOR, "#chart rect.failed")
    assert len(paid) == len(ops.days_with("paid")) == 21  # a bar a day
    assert len(failed) == len(ops.days_with("failed")) >= 2
    legend = browser.find_element(By.CLASS_NAME, "legend").text
    counts = f"paid ({ops.count_charges('paid')}) failed ({ops.count_charges('failed')})"
    assert legend.startswith(counts)
    screenshot(browser, "ops-overview.png")
    browser.get(f"{ops.console}/queues")
    rows = browser.find_elements(By.CSS_SELECTOR, "#past-due-rows tbody tr")
    # night-0 recovered; night-1 (a lost card) was canceled when its dunning window closed
    assert [row.text.split()[1] for row in rows] == ["cust-night-2"]
    assert "잔액부족" in rows[0].text
    screenshot(browser, "ops-queues.png")


def test_a_form_without_its_csrf_token_is_refused(browser: WebDriver, ops: Ops) -> None:
    sid, _charge = ops.paid("cust-3001")
    log_in(browser, ops)
    browser.get(f"{ops.console}/subscriptions/{sid}")
    browser.execute_script("document.querySelector('#pause input[name=csrf]').remove()")
    submit(browser, "pause", "no token")
    assert heading(browser) == "403"
    assert "this form has no valid CSRF token" in banner(browser)
    assert ops.subscription(sid).status == "active"


def test_wrong_or_no_credentials_are_401_and_show_nothing(ops: Ops, tmp_path: Path) -> None:
    ops.paid("cust-4001")
    host = ops.url.removeprefix("http://")
    for name, address in [
        ("none", f"{ops.url}/ops/"),
        ("wrong", f"http://{USER}:wrong@{host}/ops/"),
    ]:
        driver = start_browser(tmp_path / name, network_log=True)
        try:
            driver.get(address)
            assert _status_of(driver, "/ops/") == 401
            shown = driver.find_element(By.TAG_NAME, "body").text
            assert "Overview" not in shown and "KRW" not in shown
        finally:
            driver.quit()


def _status_of(driver: WebDriver, path: str) -> int | None:
    """The HTTP status the browser received for ``path`` (from its network log)."""
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message["method"] == "Network.responseReceived":
            response = message["params"]["response"]
            if response["url"].endswith(path) and response["url"].startswith("http"):
                return int(response["status"])
    return None
