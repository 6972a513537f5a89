"""The dashboard in a real browser: Debian's chromium, headless, driven by Selenium through
Debian's chromedriver, against the app on loopback after a cycle (issue 21, in progress). Each
page loads with no console error, its charts are there, and the chart's numbers are its table's;
screenshots go to the test's temporary folder."""
import shutil

import pytest

from tests.integration.test_web import site  # noqa: F401  (the app on loopback after a cycle)

pytestmark = pytest.mark.slow


@pytest.fixture
def browser(tmp_path):
    if not shutil.which("chromedriver") or not shutil.which("chromium"):
        pytest.fail("chromium and chromium-driver are not installed (apt-get install -y chromium chromium-driver)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium")
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=options)
    driver.set_page_load_timeout(120)  # a hang guard
    try:
        yield driver
    finally:
        driver.quit()


def test_pages_load_without_console_errors_and_charts_match_tables(site, browser, tmp_path):  # noqa: F811
    base, _ = site
    from selenium.webdriver.common.by import By

    for name, path in (("operations", "/"), ("district", "/district/alpha")):
        browser.get(base + path)
        errors = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
        assert errors == [], errors
        browser.save_screenshot(str(tmp_path / f"{name}.png"))
        assert (tmp_path / f"{name}.png").stat().st_size > 1000
    charts = browser.find_elements(By.CSS_SELECTOR, "figure svg")
    assert len(charts) >= 2  # students by type and band, use over time
    rows = browser.find_elements(By.XPATH, "//table[caption[starts-with(., 'Students by type and band')]]//tr")
    table = {}
    for row in rows[1:]:
        cells = [c.text for c in row.find_elements(By.TAG_NAME, "td")]
        table[cells[0]] = table.get(cells[0], 0) + int(cells[2])
    assert table == {"1 assessment": 1, "none": 1}
    labels = browser.execute_script(  # the chart's own numbers: each bar's total, drawn as text
        "return Array.from(document.querySelectorAll('figure svg g[id^=total-] text')).map(t => t.textContent)")
    assert sorted(int(v) for v in labels) == sorted(table.values())
    text = browser.find_element(By.TAG_NAME, "body").text
    assert "<script>alert(1)</script>" in text  # shown as text, never run
    assert browser.execute_script("return window.__pwned__ === undefined")


def _submit_run_now(browser, token):
    """Type the token, press "run now" and wait for the answer page to replace this one (the
    element held before the click goes stale), so nothing is read from the page being left."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.ui import WebDriverWait

    browser.find_element(By.NAME, "token").send_keys(token)
    page = browser.find_element(By.TAG_NAME, "html")
    browser.find_element(By.XPATH, "//button[@value='0']").click()
    WebDriverWait(browser, 120).until(expected_conditions.staleness_of(page))  # a hang guard


def _read(browser, read):
    """`read(browser)` once the page holds still: retried while an element goes stale under it."""
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(browser, 120, ignored_exceptions=(StaleElementReferenceException,)).until(
        lambda b: (read(b),))[0]


def test_run_now_with_the_token_starts_a_cycle_that_appears_and_without_it_is_refused(site, browser):  # noqa: F811
    base, started = site
    from selenium.webdriver.common.by import By
    import time

    def cycles(b):
        return len(b.find_elements(By.XPATH, "//table[caption='Last cycles']//tr")) - 1

    browser.get(base + "/")
    before = _read(browser, cycles)
    _submit_run_now(browser, "not-the-token")
    assert "refused" in _read(browser, lambda b: b.find_element(By.TAG_NAME, "body").text)
    assert started == []
    browser.get(base + "/")
    _submit_run_now(browser, "web-token-7c1d")
    deadline = time.monotonic() + 120  # a hang guard
    while not started and time.monotonic() < deadline:
        time.sleep(0.1)
    browser.get(base + "/")
    after = _read(browser, cycles)
    assert started == [False] and after == before + 1
