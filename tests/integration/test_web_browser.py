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
    counts = [int(r.find_elements(By.TAG_NAME, "td")[2].text) for r in rows[1:]]
    assert counts == [1, 1]
    text = browser.find_element(By.TAG_NAME, "body").text
    assert "<script>alert(1)</script>" in text  # shown as text, never run
    assert browser.execute_script("return window.__pwned__ === undefined")
