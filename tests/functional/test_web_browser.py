"""The web pages in a real browser (Debian's Chromium, headless, driven by Playwright):
a researcher signs in, finds a dataset, creates a project and asks for a permit; an
administrator approves both; the researcher runs a query, a job, and sends its table to
the airlock; a reviewer sees the flagged cells and approves; the operator watches a
migration from Azurite to SeaweedFS finish and verifies it; an auditor verifies the
chain. Screenshots of every step are saved under ``.test-artifacts/screenshots`` (or
``$HDH_TEST_OUTPUT/screenshots``)."""

from __future__ import annotations

import os
import re
import shutil
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pytest
import uvicorn

from hdh import policy
from hdh.api import create_app
from hdh.devservers import AzuriteServer, SeaweedFSServer, free_port
from hdh.hub import Hub
from hdh.identity.service import add_user, operator
from hdh.ingest.service import ingest
from hdh.migrate.service import plan_migration, run_migration
from hdh.storage.locations import LocationSpec, add_location
from hdh.workspace.jobs import isolation
from tests.conftest import SHARED_DATA

playwright_api = pytest.importorskip("playwright.sync_api")

pytestmark = [pytest.mark.s3, pytest.mark.azure, pytest.mark.slow]
ADMIN = operator("os:operator")
NURSERY = SHARED_DATA / "sdc_acro" / "data" / "nursery.csv"
PASSWORD = "a long demo password"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync"]  # fmt: skip
SCRIPT = """import hdh.workspace as ws
frame = ws.table("nursery", as_="pandas")
ws.crosstab(frame, "recommend", "parents").save("recommend.csv")
print("rows", len(frame))
"""
SHOTS = Path(os.environ.get("HDH_TEST_OUTPUT", ".test-artifacts")) / "screenshots"
AXE = Path(__file__).parents[2] / "node_modules" / "axe-core" / "axe.min.js"


@pytest.fixture
def served(
    hub: Hub,
    azure_server: AzuriteServer,
    s3_server: SeaweedFSServer,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[tuple[Hub, str]]:
    if not AXE.is_file():
        pytest.fail("axe-core is missing: make install (npm ci) installs it")
    if shutil.which("chromium") is None:
        pytest.fail("Chromium is missing: make install (scripts/install-system.sh) installs it")
    if isolation() is None:
        pytest.skip("jobs need bubblewrap")
    container = azure_server.create_container(f"c-{uuid.uuid4().hex[:12]}")
    bucket = s3_server.create_bucket(f"b-{uuid.uuid4().hex[:12]}")
    with hub.transaction() as session:
        add_location(session, LocationSpec(
            name="azure-francecentral", preset="azure", account=azure_server.account,
            container=container, endpoint=azure_server.endpoint, country="FR",
        ), actor=ADMIN.actor)  # fmt: skip
        add_location(session, LocationSpec(
            name="scaleway-fr-par", preset="seaweedfs", endpoint=s3_server.endpoint,
            bucket=bucket, country="FR", certifications=["secnumcloud", "hds"],
        ), actor=ADMIN.actor)  # fmt: skip
        # Where the story starts: health data on a US-owned cloud, tolerated.
        policy.set_rule(
            session, "health-data-in-eu", data_class="health", countries=["EU"],
            certifications=[], forbid_extraterritorial=False, actor=ADMIN.actor,
        )  # fmt: skip
    monkeypatch.setenv("HDH_LOC_AZURE_FRANCECENTRAL_ACCOUNT_KEY", azure_server.key)
    monkeypatch.setenv("HDH_LOC_SCALEWAY_FR_PAR_ACCESS_KEY_ID", s3_server.access_key)
    monkeypatch.setenv("HDH_LOC_SCALEWAY_FR_PAR_SECRET_ACCESS_KEY", s3_server.secret_key)
    ingest(hub, NURSERY, name="nursery", actor="os:steward", location="azure-francecentral")
    for name, roles in (("rita", ["researcher"]), ("ada", ["admin"]), ("rob", ["reviewer"]),
                        ("aude", ["auditor"])):  # fmt: skip
        add_user(hub, name, roles=roles, actor=ADMIN.actor, password=PASSWORD)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(hub), host="127.0.0.1", port=port,
                                           log_level="warning"))  # fmt: skip
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline, "the server did not start"
        time.sleep(0.05)
    try:
        yield hub, f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_the_whole_story_in_a_browser(served: tuple[Hub, str]) -> None:
    hub, base = served
    SHOTS.mkdir(parents=True, exist_ok=True)
    expect = playwright_api.expect
    with playwright_api.sync_playwright() as driver:
        browser = driver.chromium.launch(executable_path=shutil.which("chromium"), args=ARGS)
        try:

            def person(name: str) -> playwright_api.Page:
                context = browser.new_context(locale="en-GB", base_url=base)
                page = context.new_page()
                page.set_default_timeout(30_000)
                page.goto("/catalogue")
                expect(page).to_have_url(re.compile(r"/login\?next="))
                page.get_by_label("Name").fill(name)
                page.get_by_label("Password").fill(PASSWORD)
                page.get_by_role("button", name="Sign in").click()
                expect(page.get_by_test_id("who")).to_have_text(name)
                return page

            problems: dict[str, list[str]] = {}

            def shot(page: playwright_api.Page, name: str) -> None:
                """A screenshot, and axe-core's accessibility checks of the page (WCAG 2.1
                A and AA rules): serious and critical findings are collected."""
                page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)
                page.add_script_tag(path=str(AXE))
                found = page.evaluate(
                    "() => axe.run(document, {runOnly: ['wcag2a', 'wcag2aa', 'wcag21a',"
                    " 'wcag21aa']}).then(r => r.violations.map(v => ({id: v.id, impact:"
                    " v.impact, nodes: v.nodes.map(n => n.target.join(' '))})))"
                )
                serious = [f"{v['id']} ({v['impact']}): {v['nodes'][:3]}" for v in found
                           if v["impact"] in ("serious", "critical")]  # fmt: skip
                if serious:
                    problems[name] = serious

            # The researcher finds the dataset and asks for it.
            rita = person("rita")
            # The keyboard first meets the link that skips to the content.
            rita.keyboard.press("Tab")
            expect(rita.locator(":focus")).to_have_attribute("href", "#main")
            rita.get_by_label("Search the catalogue").fill("recommend")
            expect(rita.locator("#results")).to_contain_text("Results for")
            shot(rita, "01-catalogue-search")
            rita.locator("#results").get_by_role("link", name="nursery").click()
            expect(rita.get_by_test_id("rows")).to_have_text("12,960")
            expect(rita.locator("svg.chart").first).to_be_visible()
            shot(rita, "02-dataset")
            rita.get_by_role("link", name="Projects").click()
            rita.get_by_label("Short name").fill("nursery-study")
            rita.get_by_label("Title").fill("Nursery admissions")
            rita.get_by_role("button", name="Create the project").click()
            expect(rita.get_by_test_id("project-status")).to_have_text("draft")
            rita.get_by_label("Action").select_option("submit")
            rita.get_by_role("button", name="Apply").click()
            expect(rita.get_by_test_id("project-status")).to_have_text("submitted")
            rita.get_by_label("Columns, separated by commas").fill(
                "recommend, parents, health, finance"
            )
            rita.get_by_role("button", name="Send the request").click()
            expect(rita.locator("tr[data-permit]")).to_contain_text("requested")
            shot(rita, "03-project-requested")

            # The administrator approves the project and grants the permit.
            ada = person("ada")
            ada.goto("/projects/nursery-study")
            ada.get_by_label("Action").select_option("approve")
            ada.get_by_label("Approval reference").fill("CESREES-2026-042")
            ada.get_by_role("button", name="Apply").click()
            expect(ada.get_by_test_id("project-status")).to_have_text("approved")
            ada.get_by_label("Action").select_option("activate")
            ada.get_by_role("button", name="Apply").click()
            expect(ada.get_by_test_id("project-status")).to_have_text("active")
            ada.get_by_role("button", name="Grant").click()
            expect(ada.locator("tr[data-permit]")).to_contain_text("granted")
            shot(ada, "04-permit-granted")

            # The researcher queries, pages through the result, and runs a job.
            rita.reload()
            rita.get_by_role("link", name="Open the workspace").click()
            grouped = ("SELECT recommend, parents, health, finance, count(*) AS n FROM {} "
                       "GROUP BY ALL ORDER BY ALL")  # fmt: skip
            raw = grouped.format(f"read_csv('{NURSERY}')")  # the same question of the file
            groups = duckdb.sql(f"SELECT count(*) FROM ({raw})").fetchall()[0][0]
            rita.get_by_role("textbox", name="SQL query").fill(grouped.format("nursery"))
            rita.get_by_role("button", name="Run").click()
            grid = rita.get_by_test_id("result-grid")
            expect(grid.locator("tbody tr")).to_have_count(25)  # a page
            expect(grid).to_contain_text("not_recom")
            rita.get_by_role("button", name="Next page").click()
            expect(rita.get_by_test_id("query-summary")).to_contain_text(f"Rows 26 to {groups}")
            shot(rita, "05-query")
            rita.get_by_text("Submit a job").click()
            rita.get_by_label("Script file name (.py or .sql)").fill("table.py")
            rita.get_by_label("Script", exact=True).fill(SCRIPT)
            rita.get_by_role("button", name="Submit", exact=True).click()
            expect(rita.get_by_test_id("job-status")).to_have_text("succeeded", timeout=120_000)
            expect(rita.locator("pre.log")).to_contain_text("rows 12960")
            shot(rita, "06-job")
            rita.get_by_role("link", name="Workspace").click()
            rita.get_by_label(re.compile("recommend.csv")).check()
            rita.get_by_label("Note").fill("Table 1 of the paper")
            rita.get_by_role("button", name="Send to the airlock").click()
            expect(rita.get_by_test_id("export-status")).to_have_text("checked")
            expect(rita.get_by_test_id("verdict")).to_have_text("suppressed")

            # The reviewer sees the flagged cells and approves.
            rob = person("rob")
            rob.get_by_role("link", name="Airlock").click()
            rob.get_by_label("Status").select_option("checked")
            rob.get_by_role("button", name="Show").click()
            rob.get_by_role("link", name=re.compile(r"#\d+")).click()
            flagged = rob.locator("td[data-flagged]")
            expect(flagged.first).to_be_visible()
            assert flagged.count() >= 1
            expect(flagged.first).to_have_attribute("title", re.compile("threshold"))
            shot(rob, "07-airlock-review")
            rob.get_by_label("Approve").check()
            rob.get_by_label("Comment").fill("Small cells suppressed; fine.")
            rob.get_by_role("button", name="Record the decision").click()
            expect(rob.get_by_test_id("export-status")).to_have_text("released")

            # The operator watches the hub move to the sovereign location.
            moved = plan_migration(hub, ADMIN, "azure-francecentral", "scaleway-fr-par")
            ada.goto(f"/migrations/{moved.id}")
            expect(ada.get_by_test_id("migration-status")).to_have_text("planned")
            outcome: list[object] = []

            def run() -> None:
                try:
                    outcome.append(run_migration(hub, ADMIN, moved.id, concurrency=4))
                except Exception as exc:  # reported below, in the test's thread
                    outcome.append(exc)

            runner = threading.Thread(target=run)
            runner.start()
            # The page follows the run by itself (htmx polling), without a reload.
            expect(ada.get_by_test_id("migration-status")).to_have_text("copied", timeout=120_000)
            runner.join(timeout=60)
            assert not isinstance(outcome[0], Exception), outcome
            expect(ada.get_by_test_id("copied")).to_have_text(f"{moved.objects} / {moved.objects}")
            expect(ada.locator("#progress svg.chart")).to_be_visible()  # throughput
            ada.get_by_role("button", name="Verify the target now").click()
            expect(ada.get_by_test_id("verified")).to_contain_text("Every object is on the target")
            shot(ada, "08-migration")
            ada.get_by_role("button", name="Make the report").click()
            expect(ada.get_by_test_id("matched")).to_have_text(f"{moved.objects} / {moved.objects}")
            shot(ada, "09-migration-report")
            ada.get_by_role("link", name="Locations").click()
            expect(ada.get_by_test_id("placements")).to_contain_text("scaleway-fr-par")
            shot(ada, "10-locations")

            # The auditor verifies the chain, in French.
            aude = person("aude")
            aude.get_by_role("link", name="FR", exact=True).click()
            aude.goto("/audit")
            aude.get_by_role("button", name="Vérifier la chaîne").click()
            expect(aude.get_by_test_id("chain")).to_contain_text("La chaîne est intacte")
            expect(aude.get_by_test_id("events")).to_contain_text("airlock.review")
            shot(aude, "11-audit")
            assert problems == {}, problems
        finally:
            browser.close()
