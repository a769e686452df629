"""In a real browser (headless Chromium, driven by Selenium): what a person sees of a campaign.

`autoresearch serve --port P --home H` on a free port with a throwaway home, the bundled cooling
deployment pointed at a private copy of the study, `autoresearch trigger --watch` for a short
campaign; then the Prefect UI as a person uses it: its login (the contents of H/api-auth), the
flow run's page (Completed, the experiment subflows listed), the summary artifact (the chart
image loaded, the baseline and champion of results.tsv) and report.html opened from disk.

Chromium is Debian's `chromium` and `chromium-driver`, installed here when it can be (root with
apt-get); elsewhere the test is skipped, with the reason. Screenshots of every page land in
runs/browser-screenshots/ (git-ignored, as all of runs/), with the HTML of a page that failed.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

pytest.importorskip("selenium", reason="selenium is not installed: pip install -e '.[dev]'")
pytestmark = pytest.mark.serial  # a browser's waits, a server and a worker: the machine alone

from selenium import webdriver  # noqa: E402
from selenium.common.exceptions import (  # noqa: E402
    StaleElementReferenceException,
    TimeoutException,
    WebDriverException,
)
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.remote.webdriver import WebDriver  # noqa: E402
from selenium.webdriver.remote.webelement import WebElement  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

from autoresearch.server import free_port  # noqa: E402
from core.ledger import Ledger  # noqa: E402
from core.processes import group_alive, stop_group  # noqa: E402
from core.study import load_study  # noqa: E402
from tests.conftest import COOLING, ROOT, commit_all  # noqa: E402
from tests.test_serve import wait_for  # noqa: E402

AUTORESEARCH = str(Path(sys.executable).with_name("autoresearch"))
CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
APT_PACKAGES = ["chromium", "chromium-driver", "fonts-liberation"]
SHOTS = ROOT / "runs" / "browser-screenshots"
EXPERIMENTS = 3
SEED = 1  # mutate's second experiment is kept under this seed: the champion is not the baseline
WAIT_S = 30.0  # for an element of the single-page app
# Prefect's UI asks Amplitude for its remote config at start (whatever the analytics setting):
# outside the machine, unreachable in CI, and nothing a person sees.
ELSEWHERE = ("amplitude.com",)


# set-up: the browser ------------------------------------------------------------------------


def _apt_install(packages: list[str]) -> str | None:
    """Install Debian packages (root with apt-get only); None when done, else why not."""
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        return "not root with apt-get"
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    lock = ["-o", "DPkg::Lock::Timeout=120"]  # another apt (make sandbox) may hold the lock
    steps = [
        ["apt-get", *lock, "update", "-qq"],
        ["apt-get", *lock, "install", "-y", "-qq", "--no-install-recommends", *packages],
    ]
    for cmd in steps:
        try:
            out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
        except subprocess.TimeoutExpired:
            return f"{' '.join(cmd)} took over 600s"
        if out.returncode != 0:
            tail = "\n".join((out.stdout + out.stderr).strip().splitlines()[-5:])
            return f"{' '.join(cmd)} failed ({out.returncode}): {tail}"
    return None


@pytest.fixture(scope="module")
def chromium() -> tuple[str, str]:
    """Debian's Chromium and its driver, installed once when missing and possible."""
    if not (os.access(CHROMIUM, os.X_OK) and os.access(CHROMEDRIVER, os.X_OK)):
        started = time.monotonic()
        why = _apt_install(APT_PACKAGES)
        if why is not None:
            pytest.skip(f"no {CHROMIUM} and {CHROMEDRIVER}, nor could they be installed: {why}")
        print(f"installed {' '.join(APT_PACKAGES)} in {time.monotonic() - started:.0f}s")
    return CHROMIUM, CHROMEDRIVER


@pytest.fixture(scope="module")
def browser(chromium: tuple[str, str]) -> Iterator[WebDriver]:
    binary, driver_path = chromium
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for arg in (
        "--headless=new",
        "--no-sandbox",  # as root, Chromium's own sandbox refuses to start
        "--disable-dev-shm-usage",
        "--use-angle=swiftshader",  # WebGL in software: the run graph is drawn with it
        "--enable-unsafe-swiftshader",
        "--window-size=1400,1800",
        "--no-first-run",
    ):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    try:
        driver = webdriver.Chrome(service=Service(driver_path), options=options)
    except WebDriverException as exc:
        pytest.fail(f"Chromium would not start under Selenium: {exc.msg}")
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture(scope="module")
def shots() -> Path:
    """The screenshot folder, emptied of an earlier run's pictures."""
    SHOTS.mkdir(parents=True, exist_ok=True)
    for old in [*SHOTS.glob("*.png"), *SHOTS.glob("*.html")]:
        old.unlink()
    print(f"screenshots: {SHOTS}")
    return SHOTS


# set-up: serve and a campaign -------------------------------------------------------------


@dataclass
class Campaign:
    ui_url: str
    api_url: str
    auth: str
    run_id: str
    run_name: str
    printed_link: str  # the link `trigger` printed for the run
    study: Any  # core.study.Study of the private copy

    def ledger(self) -> Ledger:
        return Ledger(self.study.state_dir / "results.tsv", self.study.metric.name)


def _deployments_file(tmp: Path, study: Path) -> Path:
    """The bundled cooling deployment, pointed at the private copy: no schedule, 3 experiments
    of the offline proposer."""
    real = yaml.safe_load((ROOT / "deployments.yaml").read_text())
    cooling = next(d for d in real["deployments"] if d["name"] == "cooling")
    cooling["parameters"] = {
        "study": str(study),
        "experiments": EXPERIMENTS,
        "proposer": "mutate",
        "seed": SEED,
    }
    cooling["schedules"] = []
    path = tmp / "deployments.yaml"
    path.write_text(yaml.safe_dump({"name": "browser", "deployments": [cooling]}))
    return path


@pytest.fixture(scope="module")
def campaign(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Campaign]:
    tmp = tmp_path_factory.mktemp("browser")
    repo = tmp / "repo"
    folder = repo / "cooling"
    shutil.copytree(COOLING, folder, ignore=shutil.ignore_patterns("runs", "__pycache__"))
    commit_all(repo)
    home, port = tmp / "prefect-home", free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "ANTHROPIC_"))}
    env |= {
        "PREFECT_HOME": str(home),  # its records stay in its own home, not the project's
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_WORKER_QUERY_SECONDS": "1",
        "PREFECT_WORKER_PREFETCH_SECONDS": "1",
    }
    deployments = _deployments_file(tmp, folder)
    log = tmp / "serve.log"
    started = time.monotonic()
    with log.open("w") as out:
        serve = subprocess.Popen(
            [AUTORESEARCH, "serve", "--port", str(port), "--home", str(home),
             "--deployments", str(deployments)],
            env=env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, text=True,
            start_new_session=True,
        )  # fmt: skip
    server_pid: int | None = None
    try:

        def ready() -> bool:
            assert serve.poll() is None, f"serve exited:\n{log.read_text()}"
            return "worker on work pool" in log.read_text()

        wait_for("autoresearch serve to start, deploy and run its worker", ready, 180)
        record = json.loads((home / "serve.json").read_text())
        server_pid = int(record["pid"])
        api_url = f"http://127.0.0.1:{port}/api"
        assert record["api_url"] == api_url
        print(f"serve ready in {time.monotonic() - started:.1f}s")

        client_env = env | {"PREFECT_API_URL": api_url, "PREFECT_HOME": str(home)}
        started = time.monotonic()
        argv = [AUTORESEARCH, "trigger", str(folder), "--watch"]
        out = subprocess.run(
            argv, env=client_env, cwd=ROOT, capture_output=True, text=True, timeout=240
        )
        output = out.stdout + out.stderr
        assert out.returncode == 0, f"trigger:\n{output}\nserve:\n{log.read_text()}"
        print(f"campaign of {EXPERIMENTS} experiments in {time.monotonic() - started:.1f}s")
        found = re.search(r"flow run (\S+) \(([0-9a-f-]{36})\)", output)
        assert found, output
        run_name, run_id = found.groups()
        link = re.search(rf"http://\S+/runs/flow-run/{run_id}", output)
        assert link, output
        yield Campaign(
            ui_url=api_url.removesuffix("/api"),
            api_url=api_url,
            auth=(home / "api-auth").read_text().strip(),
            run_id=run_id,
            run_name=run_name,
            printed_link=link.group(0),
            study=load_study(folder),
        )
    finally:
        stop_group(serve, grace_s=20)  # SIGTERM: serve stops its worker and its server
        if server_pid is not None and group_alive(server_pid):
            os.killpg(server_pid, signal.SIGKILL)
            pytest.fail(f"serve left its server (pid {server_pid}) running")


# browser helpers ----------------------------------------------------------------------------

VISIBLE_BY_XPATH = """
const found = document.evaluate(arguments[0], document, null,
                                 XPathResult.ORDERED_NODE_SNAPSHOT_TYPE, null);
for (let i = 0; i < found.snapshotLength; i++) {
  const node = found.snapshotItem(i);
  if (node.getClientRects().length && getComputedStyle(node).visibility !== "hidden") return node;
}
return null;
"""
TABLE_WITH_HEADER = """
for (const table of document.querySelectorAll("table")) {
  const heads = [...table.querySelectorAll("th")].map(th => th.innerText.trim());
  if (!heads.includes(arguments[0])) continue;
  const rows = [...table.querySelectorAll("tbody tr")];
  return [heads, rows.map(tr => [...tr.querySelectorAll("td")].map(td => td.innerText.trim()))];
}
return null;
"""


class Page:
    """The browser, with a screenshot (and on failure the page's HTML) of every step, each named
    `<prefix>-<n>-<step>.png`."""

    def __init__(self, driver: WebDriver, shots: Path, prefix: str) -> None:
        self.driver, self.shots, self.prefix, self.n = driver, shots, prefix, 0
        self.started = time.monotonic()

    def shot(self, name: str) -> Path:
        self.n += 1
        path = self.shots / f"{self.prefix}-{self.n:02d}-{name}.png"
        self.driver.save_screenshot(str(path))
        print(f"{time.monotonic() - self.started:5.1f}s {path.name}")
        return path

    def until(self, what: str, check: Callable[[WebDriver], Any], timeout_s: float = WAIT_S) -> Any:
        try:
            wait = WebDriverWait(
                self.driver, timeout_s, 0.25, ignored_exceptions=[StaleElementReferenceException]
            )  # the single-page app may replace an element as we read it
            return wait.until(check)
        except TimeoutException:
            self.n += 1
            stem = self.shots / f"{self.prefix}-{self.n:02d}-failed"
            self.driver.save_screenshot(f"{stem}.png")
            Path(f"{stem}.html").write_text(self.driver.page_source)
            body = self.text()[:3000]
            raise AssertionError(
                f"not seen in {timeout_s:g}s: {what}\nat {self.driver.current_url}, "
                f"screenshot {stem}.png; the page said:\n{body}"
            ) from None

    def xpath(self, what: str, xpath: str, timeout_s: float = WAIT_S) -> WebElement:
        """The first element that `xpath` finds and that has a box on the page (one script a
        poll: Selenium's own is_displayed costs a round trip, and a big script, per element)."""

        def found(driver: WebDriver) -> WebElement | None:
            return driver.execute_script(VISIBLE_BY_XPATH, xpath)

        return self.until(what, found, timeout_s)

    def tab(self, name: str) -> None:
        self.xpath(
            f"the {name} tab", f"//*[@role='tab' and normalize-space()={_xpath_text(name)}]"
        ).click()

    def table(self, what: str, header: str) -> tuple[list[str], list[list[str]]]:
        """The header cells and the body rows of the first table with a `header` column."""
        found = self.until(what, lambda d: d.execute_script(TABLE_WITH_HEADER, header))
        return found[0], found[1]

    def text(self) -> str:
        try:
            return str(self.driver.execute_script("return document.body.innerText"))
        except WebDriverException:
            return ""

    def image_loaded(self, what: str, css: str) -> WebElement:
        """An <img> that the browser decoded: complete, with a natural width."""

        def loaded(driver: WebDriver) -> WebElement | None:
            for img in driver.find_elements(By.CSS_SELECTOR, css):
                ok = driver.execute_script(
                    "return arguments[0].complete && arguments[0].naturalWidth > 0", img
                )
                if ok:
                    return img
            return None

        img = self.until(f"{what} ({css}) loaded", loaded)
        self.driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", img)
        return img

    def errors(self, server: str) -> list[str]:
        """The console's errors since the last call, but for requests outside the machine."""
        found = []
        for entry in self.driver.get_log("browser"):
            message = entry.get("message", "")
            if entry.get("level") == "SEVERE" and not any(h in message for h in ELSEWHERE):
                found.append(message.replace(server, "")[:300])
        return found


def _xpath_text(text: str) -> str:
    return json.dumps(text)  # a string literal XPath 1.0 reads (no quotes in our names)


# tests --------------------------------------------------------------------------------------


def test_the_prefect_ui_shows_the_campaign(
    browser: WebDriver, shots: Path, campaign: Campaign
) -> None:
    page = Page(browser, shots, "ui")
    ui = campaign.ui_url
    with urllib.request.urlopen(ui + "/ui-settings", timeout=30) as resp:
        settings = json.loads(resp.read())
    assert settings["api_url"] == campaign.api_url, settings  # the UI talks to its own API
    assert settings["auth"] == "BASIC", settings
    v2 = settings.get("v2_base_url") or "/v2"
    assert "v2" in settings["available_uis"], settings
    run_path = f"{v2.rstrip('/')}/runs/flow-run/{campaign.run_id}"

    # A fresh browser on the run's page: the login first, then the page itself.
    browser.get(ui + run_path)
    password = page.xpath("the login's password field", "//input[@type='password']")
    page.shot("login")
    password.send_keys(campaign.auth)
    page.xpath("the login button", "//button[@type='submit']").click()
    on_run_page = f"{run_path}?"  # the login sends the browser back, to a tab of the page
    page.until("the run's page after the login", lambda d: on_run_page in d.current_url)
    page.errors(ui)  # what the login page logged (its 401s) is the login's business

    # The flow run: its name and state in the page's header.
    name = _xpath_text(campaign.run_name)
    title = f"//span[@data-slot='breadcrumb-page' and @title={name}]"
    page.xpath(f"the run's name {campaign.run_name}", title)
    badge = f"{title}/ancestor::nav/following-sibling::div//span[@data-slot='badge']"
    page.xpath("the run's state badge saying Completed", f"{badge}[normalize-space()='Completed']")
    assert "campaign" in page.text()

    # The experiments, each a subflow run of its own, each Completed.
    page.tab("Subflow Runs")
    for n in range(1, EXPERIMENTS + 1):
        link = f"//a[@title={_xpath_text(f'cooling-{n}')}]"
        page.xpath(f"subflow cooling-{n} listed", link)
        badge = f"{link}/ancestor::div[@data-slot='card'][1]//span[@data-slot='badge']"
        page.xpath(f"cooling-{n} Completed", f"{badge}[normalize-space()='Completed']")
    assert f"{EXPERIMENTS} Subflow runs" in page.text()
    page.shot("flow-run")  # the run graph above (drawn by now, in WebGL), the subflows below

    # The run's artifacts, then the summary's own page, as a person clicks through to it.
    page.tab("Artifacts")
    for key in ("cooling-progress", "cooling-summary", "cooling-results"):
        page.xpath(f"artifact {key} listed", f"//*[normalize-space()={_xpath_text(key)}]")
    page.shot("artifacts")
    page.xpath("the summary artifact's card", "//*[normalize-space()='cooling-summary']").click()
    page.until("the summary artifact's page", lambda d: "/artifacts/artifact/" in d.current_url)

    img = page.image_loaded("the progress chart", "img[alt='cooling progress']")
    src = img.get_attribute("src") or ""
    assert src.startswith("data:image/png;base64,"), src[:60]
    width = browser.execute_script("return arguments[0].naturalWidth", img)
    assert width > 100, width

    ledger = campaign.ledger()
    base, best = ledger.baseline(), ledger.champion()
    assert base is not None and best is not None and len(ledger.rows()) == EXPERIMENTS
    headers, rows = page.table("the summary's table", "baseline")
    assert len(rows) == 1, rows
    row = dict(zip(headers, rows[0], strict=True))
    assert row["baseline"] == f"{base.metric:.6g}", row
    assert row["champion"] == f"{best.metric:.6g} ({best.commit})", row
    text = page.text()
    assert "cooling: rmse (minimize)" in text
    report = campaign.study.state_dir / "report.html"
    assert str(report) in text
    page.shot("summary-artifact")

    # The link `autoresearch trigger` printed for the run, now that the browser is logged in.
    browser.get(campaign.printed_link)
    page.until(
        f"the printed link {campaign.printed_link} showing the run, Completed",
        lambda d: campaign.run_name in page.text() and "Completed" in page.text(),
    )
    page.shot("printed-link")
    errors = page.errors(ui)
    print("console errors after the login:", *errors or ["none"], sep="\n  ")
    assert not [e for e in errors if "/api/" in e], errors  # every API call it made answered


def test_report_html_from_disk(browser: WebDriver, shots: Path, campaign: Campaign) -> None:
    page = Page(browser, shots, "report")
    report = campaign.study.state_dir / "report.html"
    assert report.exists()
    browser.get("about:blank")  # the last page's late errors are not report.html's
    page.errors("")
    browser.get(report.as_uri())
    page.until("report.html's title", lambda d: "cooling: rmse (minimize)" in d.title)
    page.image_loaded("the progress chart", "img[alt='progress']")

    ledger = campaign.ledger()
    base, best = ledger.baseline(), ledger.champion()
    assert base is not None and best is not None
    headers, rows = page.table("the summary table", "what")
    assert headers == ["what", "value"], headers
    shown = dict(rows)  # type: ignore[arg-type]
    assert shown["baseline"] == f"{base.metric:.6g}", shown
    assert shown["best"] == f"{best.metric:.6g}", shown
    assert shown["champion"] == best.commit, shown
    assert shown["experiments"] == str(EXPERIMENTS), shown
    page.shot("report-html")
    assert not page.errors(report.as_uri()), "report.html logged errors"
