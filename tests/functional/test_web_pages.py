"""The web pages over HTTP (no browser): signing in and out, the sign-in rate limit, the
CSRF token on forms, each role's pages answering what the library would, errors as
pages, and both languages. The browser walks the same pages in test_web_browser.py."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from hdh import audit
from hdh.api import create_app
from hdh.api.signin import PER_NAME
from hdh.catalog.service import describe
from hdh.governance.permits import decide, request_permit
from hdh.governance.projects import create_project, transition
from hdh.hub import Hub, init_hub
from hdh.identity.service import Principal, add_user, list_tokens, operator
from hdh.ingest.service import ingest
from hdh.migrate.service import plan_migration, run_migration, throughput
from hdh.storage.locations import LocationSpec, add_location
from hdh.web.i18n import FRENCH, choose
from tests.conftest import SHARED_DATA

ADMIN = operator("os:operator")
PATIENTS = SHARED_DATA / "synthea_csv_100_ma" / "patients.csv"
NURSERY = SHARED_DATA / "sdc_acro" / "data" / "nursery.csv"
TEMPLATES = Path(__file__).parents[2] / "src" / "hdh" / "web" / "templates"
PASSWORD = "correct horse battery staple"


@pytest.fixture(scope="module")
def web_hub(tmp_path_factory: pytest.TempPathFactory) -> Hub:
    with init_hub(tmp_path_factory.mktemp("web") / "hub", actor="test:init") as hub:
        ingest(hub, NURSERY, name="nursery", actor="os:steward")
        for name, roles in (("sam", ["steward"]), ("rita", ["researcher"]),
                            ("aude", ["auditor"]), ("ada", ["admin"])):  # fmt: skip
            add_user(hub, name, roles=roles, actor=ADMIN.actor, password=PASSWORD)
        yield hub


def signed_in(hub: Hub, name: str) -> TestClient:
    client = TestClient(create_app(hub), base_url="http://127.0.0.1")
    answer = client.post("/login", data={"name": name, "password": PASSWORD, "next": "/"},
                         follow_redirects=False)  # fmt: skip
    assert answer.status_code == 303, answer.text
    return client


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf" value="([0-9a-f]{32})"', html)
    assert found, "the page has no form with a CSRF token"
    return found.group(1)


def text_of(html: str) -> str:
    """The words a reader sees (tags dropped, spaces collapsed)."""

    class Words(HTMLParser):
        def __init__(self) -> None:
            super().__init__()
            self.parts: list[str] = []
            self.skip = 0

        def handle_starttag(self, tag: str, attrs: object) -> None:
            self.skip += tag in ("script", "style")

        def handle_endtag(self, tag: str) -> None:
            self.skip -= tag in ("script", "style")

        def handle_data(self, data: str) -> None:
            if not self.skip:
                self.parts.append(data)

    parser = Words()
    parser.feed(html)
    return " ".join(" ".join(parser.parts).split())


def test_a_page_without_a_session_leads_to_sign_in_and_back(web_hub: Hub) -> None:
    client = TestClient(create_app(web_hub), base_url="http://127.0.0.1")
    answer = client.get("/catalogue/nursery", follow_redirects=False)
    assert answer.status_code == 303
    assert answer.headers["location"] == "/login?next=%2Fcatalogue%2Fnursery"
    wrong = client.post("/login", data={"name": "rita", "password": "nope"})
    assert wrong.status_code == 401
    assert "authentication failed" in text_of(wrong.text)
    form = {"name": "rita", "password": PASSWORD, "next": "/catalogue/nursery"}
    right = client.post("/login", data=form, follow_redirects=False)
    assert right.headers["location"] == "/catalogue/nursery"
    cookie = right.headers["set-cookie"]
    assert "HttpOnly" in cookie
    assert "SameSite=strict" in cookie
    page = client.get("/catalogue/nursery")
    assert page.status_code == 200
    assert "Signed in as rita" in text_of(page.text) or "Connecté en tant que rita" in text_of(
        page.text
    )
    # A sign-in elsewhere cannot send the browser off the site.
    form = {"name": "rita", "password": PASSWORD, "next": "//evil.example/"}
    away = client.post("/login", data=form, follow_redirects=False)
    assert away.headers["location"] == "/catalogue"


def test_signing_out_revokes_the_session(web_hub: Hub) -> None:
    client = signed_in(web_hub, "aude")
    live = [t for t in list_tokens(web_hub, "aude") if t.label == "sign-in" and not t.revoked_at]
    assert live
    page = client.get("/audit")
    out = client.post("/logout", data={"csrf": csrf_of(page.text)}, follow_redirects=False)
    assert out.headers["location"] == "/login"
    after = {t.id for t in list_tokens(web_hub, "aude") if t.revoked_at}
    assert {t.id for t in live} <= after
    # The old cookie no longer opens a page, even if a browser kept it.
    client.cookies.set("hdh_session", "hdh_" + live[-1].id + "_" + "x" * 43)
    assert client.get("/audit", follow_redirects=False).status_code == 303


def test_repeated_failed_sign_ins_are_refused_for_a_while(tmp_path: Path) -> None:
    with init_hub(tmp_path / "hub", actor="test:init") as hub:
        add_user(hub, "mallory", roles=["researcher"], actor=ADMIN.actor, password=PASSWORD)
        client = TestClient(create_app(hub), base_url="http://127.0.0.1")
        for _ in range(PER_NAME):
            assert client.post("/login", data={"name": "mallory", "password": "guess"}
                               ).status_code == 401  # fmt: skip
        # Now even the right password is not tried: guessing goes no faster.
        limited = client.post("/login", data={"name": "mallory", "password": PASSWORD})
        assert limited.status_code == 429
        assert "too many failed sign-ins" in text_of(limited.text)
        api = client.post("/api/v1/login", json={"name": "mallory", "password": PASSWORD})
        assert api.status_code == 429
        assert api.json()["error"]["code"] == "too_many_attempts"
        assert int(api.headers["retry-after"]) > 0


def test_the_api_signs_in_with_a_password_for_a_token(web_hub: Hub) -> None:
    client = TestClient(create_app(web_hub))
    wrong = client.post("/api/v1/login", json={"name": "sam", "password": "nope"})
    assert (wrong.status_code, wrong.json()["error"]["code"]) == (401, "authentication_failed")
    made = client.post("/api/v1/login", json={"name": "sam", "password": PASSWORD})
    assert made.status_code == 201, made.text
    token = made.json()["token"]
    me = client.get("/api/v1/me", headers={"Authorization": f"Bearer {token}"}).json()
    assert me == {"name": "sam", "roles": ["steward"]}


def test_a_form_without_its_csrf_token_is_refused(web_hub: Hub) -> None:
    client = signed_in(web_hub, "rita")
    forged = client.post("/projects", data={"csrf": "0" * 32, "name": "forged", "title": "F"})
    assert forged.status_code == 403
    assert "CSRF" in text_of(forged.text)
    missing = client.post("/projects", data={"name": "forged", "title": "F"})
    assert missing.status_code == 422
    page = client.get("/projects")
    made = client.post("/projects", data={"csrf": csrf_of(page.text), "name": "real-one",
                                          "title": "Real"}, follow_redirects=False)  # fmt: skip
    assert made.headers["location"] == "/projects/real-one"
    assert "status-draft" in client.get("/projects/real-one").text


def test_the_dataset_page_shows_profiles_with_small_counts_suppressed(web_hub: Hub) -> None:
    client = signed_in(web_hub, "rita")
    client.cookies.set("hdh_lang", "en")
    page = client.get("/catalogue/nursery")
    words = text_of(page.text)
    assert "12,960" in words  # the rows of the version
    assert "Counts under 10 are suppressed" in words
    assert page.text.count('<svg class="chart') == 10  # one chart per column
    assert ">priority</text>" in page.text  # top values are labelled
    assert 'role="img"' in page.text
    found = client.get("/catalogue?q=nursery")
    assert '<a href="/catalogue/nursery">nursery</a>' in found.text
    nothing = client.get("/catalogue?q=zzzyx")
    assert "No dataset, schema or nomenclature matches every word." in text_of(nothing.text)
    # Searching with htmx answers only the results, not the whole page.
    partial = client.get("/catalogue?q=nursery", headers={"HX-Request": "true"})
    assert "<html" not in partial.text
    assert "nursery" in partial.text


def test_errors_are_pages_that_say_what_to_do(web_hub: Hub) -> None:
    client = signed_in(web_hub, "rita")
    client.cookies.set("hdh_lang", "en")
    missing = client.get("/catalogue/no-such-set")
    assert missing.status_code == 404
    assert "there is no dataset named 'no-such-set'" in text_of(missing.text)
    assert "What to do" in text_of(missing.text)
    denied = client.get("/audit")
    assert denied.status_code == 403
    assert "audit.read" in text_of(denied.text) or "may not" in text_of(denied.text)
    nowhere = client.get("/no/such/page")
    assert nowhere.status_code == 404
    assert "<html" in nowhere.text
    # The API keeps answering JSON in its one error shape.
    api = client.get("/api/v1/datasets")
    assert api.status_code == 401
    assert api.json()["error"]["code"] == "authentication_failed"


def test_each_role_sees_its_pages(web_hub: Hub) -> None:
    aude = signed_in(web_hub, "aude")
    audit_page = aude.get("/audit?action=auth.*")
    assert audit_page.status_code == 200
    # Filters by time too; a bad one says how to write it.
    assert "user.add" not in aude.get("/audit?action=user.*&since=2999-01-01").text
    assert "user.add" in aude.get("/audit?action=user.*&since=2000-01-01&until=2999-01-01").text
    wrong = aude.get("/audit?since=yesterday")
    assert wrong.status_code == 422
    assert "since 'yesterday' is not a date or time" in text_of(wrong.text)
    assert "auth.failed" in audit_page.text or "user.add" in aude.get("/audit").text
    verified = aude.post("/audit/verify", data={"csrf": csrf_of(audit_page.text)},
                         headers={"HX-Request": "true"})  # fmt: skip
    assert verified.status_code == 200
    assert 'data-testid="chain"' in verified.text
    assert "✔" in verified.text
    ada = signed_in(web_hub, "ada")
    ada.cookies.set("hdh_lang", "en")
    locations = text_of(ada.get("/locations").text)
    assert "What the policy allows where" in locations
    assert ada.get("/migrations").status_code == 200
    rita = signed_in(web_hub, "rita")
    assert rita.get("/locations").status_code == 403
    nav = rita.get("/catalogue").text
    assert 'href="/audit"' not in nav
    assert 'href="/migrations"' not in nav


def test_pages_speak_french_and_english(web_hub: Hub) -> None:
    client = signed_in(web_hub, "rita")
    french = client.get("/catalogue", headers={"Accept-Language": "fr-FR,fr;q=0.9"})
    assert '<html lang="fr">' in french.text
    assert "Rechercher dans le catalogue" in french.text
    switched = client.get("/lang/en?next=/catalogue", follow_redirects=False)
    assert switched.headers["location"] == "/catalogue"
    client.cookies.set("hdh_lang", "en")
    english = client.get("/catalogue", headers={"Accept-Language": "fr-FR"})
    assert '<html lang="en">' in english.text
    assert "Search the catalogue" in english.text
    # State words too: the code stays in the markup, the reader sees their language.
    create_project(web_hub, Principal("rita", frozenset({"researcher"})), "parlons", title="P")
    client.get("/lang/fr?next=/")  # the switch in the header, as a reader uses it
    shown = client.get("/projects/parlons").text
    assert '<span class="status status-draft" data-testid="project-status">brouillon</span>' in (
        shown
    )
    client.get("/lang/en?next=/")
    assert 'data-testid="project-status">draft</span>' in client.get("/projects/parlons").text
    assert choose(None, "de-DE,en;q=0.8,fr;q=0.9") == "fr"
    assert choose(None, "en-GB,en;q=0.9") == "en"
    assert choose(None, None) == "fr"


def test_every_sentence_of_the_pages_has_its_french() -> None:
    said: set[str] = set()
    for template in TEMPLATES.glob("*.html"):
        text = template.read_text(encoding="utf-8")
        said |= set(re.findall(r"""_\(\s*"([^"]+)"\s*[,)]""", text))
        said |= set(re.findall(r"""_\(\s*'([^']+)'\s*[,)]""", text))
    assert len(said) > 100
    missing = sorted(s for s in said if s not in FRENCH)
    assert missing == []


def test_the_workspace_pages_results_and_refreshes_saved_tables(web_hub: Hub) -> None:
    rita = Principal("rita", frozenset({"researcher"}))
    create_project(web_hub, rita, "kinder", title="Kindergarten")
    transition(web_hub, rita, "kinder", "submit")
    transition(web_hub, ADMIN, "kinder", "approve", approval_ref="ref-1")
    transition(web_hub, ADMIN, "kinder", "activate")
    permit = request_permit(web_hub, rita, "kinder", "nursery", columns=["recommend", "parents"])
    decide(web_hub, ADMIN, permit.id, "grant")
    client = signed_in(web_hub, "rita")
    client.cookies.set("hdh_lang", "en")
    page = client.get("/projects/kinder/workspace")
    csrf = csrf_of(page.text)
    # Two columns of one name keep their own values.
    same = client.post("/projects/kinder/query", data={
        "csrf": csrf, "sql": "SELECT 1 AS x, 2 AS x FROM nursery LIMIT 1"})  # fmt: skip
    assert re.search(r"<td>1</td><td>2</td>", same.text), same.text
    # A page of 25 rows, then the next one from row 26.
    ask = "SELECT recommend, parents, count(*) AS n FROM nursery GROUP BY ALL ORDER BY ALL"
    first = client.post("/projects/kinder/query", data={"csrf": csrf, "sql": ask},
                        headers={"HX-Request": "true"})  # fmt: skip
    assert "<html" not in first.text
    assert "Rows 1 to" in text_of(first.text)
    saved = client.post("/projects/kinder/query", headers={"HX-Request": "true"},
                        data={"csrf": csrf, "sql": ask, "save": "by_parents"})  # fmt: skip
    assert 'id="saved-tables" hx-swap-oob="true"' in saved.text
    assert "saved.by_parents" in saved.text
    # The project's history shows its life, not who was refused a look at it.
    sam = signed_in(web_hub, "sam")
    assert sam.get("/projects/kinder").status_code == 404  # not even its existence
    with web_hub.read() as session:
        refusals = audit.list_events(session, audit.EventFilter(
            object_type="project", object_id="kinder", action="authz.denied"))  # fmt: skip
    assert refusals  # the trail has it; the project's page does not show it
    history = text_of(client.get("/projects/kinder").text)
    assert "project.create" in history
    assert "project.activate" in history
    assert "authz.denied" not in history
    assert "sam" not in history
    # The lead adds a member, who then sees the project, and removes them.
    page = client.get("/projects/kinder")
    form = {"csrf": csrf_of(page.text), "user": "sam", "role": "viewer"}
    added = client.post("/projects/kinder/members", data=form, follow_redirects=False)
    assert added.status_code == 303
    assert sam.get("/projects/kinder").status_code == 200
    assert "project.member.add" in text_of(client.get("/projects/kinder").text)
    client.post("/projects/kinder/members",
                data={"csrf": csrf_of(page.text), "user": "sam", "role": "none"})  # fmt: skip
    assert sam.get("/projects/kinder").status_code == 404
    bad = client.post("/projects/kinder/members",
                      data={"csrf": csrf_of(page.text), "user": "sam", "role": "lead"})  # fmt: skip
    assert bad.status_code == 422


def test_the_migration_dashboard_shows_progress_throughput_and_verification(
    tmp_path: Path,
) -> None:
    with init_hub(tmp_path / "hub", actor="test:init") as hub:
        with hub.transaction() as session:
            add_location(session, LocationSpec(name="elsewhere", kind="local",
                                               path=str(tmp_path / "elsewhere"), country="FR"),
                         actor=ADMIN.actor)  # fmt: skip
        ingest(hub, NURSERY, name="nursery", actor="os:steward")
        add_user(hub, "ada", roles=["admin"], actor=ADMIN.actor, password=PASSWORD)
        planned = plan_migration(hub, ADMIN, "local", "elsewhere")
        ada = signed_in(hub, "ada")
        ada.cookies.set("hdh_lang", "en")
        before = ada.get(f"/migrations/{planned.id}")
        assert f"0 / {planned.objects}" in text_of(before.text)
        assert 'hx-trigger="every 5s"' in before.text  # follows a run that may start
        assert "Nothing is copied yet." in text_of(before.text)
        run_migration(hub, ADMIN, planned.id)
        after = ada.get(f"/migrations/{planned.id}")
        assert f"{planned.objects} / {planned.objects}" in text_of(after.text)
        assert 'class="chart"' in after.text
        assert "hx-trigger" not in after.text  # copied: nothing left to follow
        series = throughput(hub, ADMIN, planned.id)
        assert round(sum(s["bytes_per_s"] * s["seconds"] for s in series)) == planned.bytes
        form = {"csrf": csrf_of(after.text)}
        checked = ada.post(f"/migrations/{planned.id}/verify", data=form,
                           headers={"HX-Request": "true"})  # fmt: skip
        assert "Every object is on the target with its SHA-256." in text_of(checked.text)
        # The report verifies and is audited: a form, never a link.
        assert ada.get(f"/migrations/{planned.id}/report").status_code == 405
        made = ada.post(f"/migrations/{planned.id}/report", data={"csrf": csrf_of(after.text)})
        assert f"{planned.objects} / {planned.objects}" in text_of(made.text)
        assert "Signature checked" in text_of(made.text)


def test_kept_catalogue_answers_follow_each_change(tmp_path: Path) -> None:
    """Catalogue reads are kept between requests; a change to the hub is seen by the
    very next one, on the pages and the API, in each language."""
    with init_hub(tmp_path / "hub", actor="test:init") as hub:
        ingest(hub, NURSERY, name="nursery", actor="os:steward")
        add_user(hub, "rita", roles=["researcher"], actor=ADMIN.actor, password=PASSWORD)
        client = signed_in(hub, "rita")
        token = client.post("/api/v1/login", json={"name": "rita", "password": PASSWORD})
        api = {"Authorization": f"Bearer {token.json()['token']}"}
        for _ in range(2):  # the second answer comes from what was kept
            assert "Admissions" not in client.get("/catalogue/nursery").text
            assert 'href="/catalogue/nursery"' not in client.get("/catalogue?q=admissions").text
            assert (
                client.get("/api/v1/datasets/nursery", headers=api).json()["metadata"][
                    "description"
                ]
                == ""
            )
        describe(hub, "nursery", actor="os:steward", description="Admissions to nursery school")
        assert "Admissions to nursery school" in client.get("/catalogue/nursery").text
        described = client.get("/api/v1/datasets/nursery", headers=api).json()
        assert described["metadata"]["description"] == "Admissions to nursery school"
        assert 'href="/catalogue/nursery"' in client.get("/catalogue?q=admissions").text
        client.cookies.set("hdh_lang", "fr")
        assert "Valeurs vides" in client.get("/catalogue/nursery").text
        client.cookies.set("hdh_lang", "en")
        assert "Empty values" in client.get("/catalogue/nursery").text
        ingest(hub, NURSERY, name="creche", actor="os:steward")
        listed = client.get("/api/v1/datasets", headers=api).json()
        assert [d["name"] for d in listed["items"]] == ["creche", "nursery"]
