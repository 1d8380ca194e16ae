"""The ops console in a real browser (Debian's Chromium under Selenium), against `stream-app
demo`: the real broker, the sandbox, a worker, the sources and the console as the demo runs
them. Log in; the customer 360 of a demo person shows her ids in Salesforce, Pardot and TIMS
(masked email for a viewer); a dead letter is shown, replayed, and lands in the sandbox; a
mapping edit with an error is refused with the message, then fixed, previewed, saved and
reloaded by the worker; a row of the mapping table edited wrongly is refused with the message
next to the row, then fixed, diffed and saved; a flow is paused and resumed.
Screenshots go to $CONNECT_TEST_ARTEFACTS/console (default: the temp folder)."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import time
from pathlib import Path
from typing import Any, Iterator

import httpx
import pytest

from tests.support.console import artefacts_dir, chromium, stop_group
from tests.support.kafka import create_topics, produce_json
from tests.support.names import unique
from tests.support.worker import STREAM_APP, free_port

pytestmark = pytest.mark.integration

TITLE = "Replayed from the console"


class Demo:
    def __init__(self, bootstrap: str, cwd: Path) -> None:
        self.run = unique("test")  # its topics are deleted after the test
        self.log = cwd / "demo.out"
        env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": bootstrap, "CONNECT_DEMO_RUN": self.run,
               "CONNECT_WEB_PORT": str(free_port()), "CONNECT_CONSOLE_PORT": str(free_port())}
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen([STREAM_APP, "demo"], cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, start_new_session=True)

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_until_played(self, timeout: float = 420) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if "running until Ctrl-C" in self.text():
                return
            if self.proc.poll() is not None:
                break
            time.sleep(1)
        pytest.fail(f"the demo did not finish playing:\n{self.text()[-4000:]}")

    def found(self, pattern: str) -> re.Match[str]:
        match = re.search(pattern, self.text())
        assert match, f"{pattern!r} not in the demo's output:\n{self.text()[-3000:]}"
        return match

    def stop(self) -> None:
        stop_group(self.proc, 60)


@pytest.fixture
def demo(kafka_bootstrap: str, tmp_path: Path) -> Iterator[Demo]:
    running = Demo(kafka_bootstrap, tmp_path)
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture
def browser() -> Iterator[Any]:
    driver = chromium()
    try:
        yield driver
    finally:
        driver.quit()


def log_in(browser: Any, url: str, name: str, password: str) -> None:
    from selenium.webdriver.common.by import By

    browser.get(url)
    assert "/login" in browser.current_url  # the console sends a stranger to its login page
    browser.find_element(By.ID, "username").send_keys(name)
    browser.find_element(By.ID, "password").send_keys(password)
    browser.find_element(By.CSS_SELECTOR, "form.login button[type=submit]").click()
    wait_for(browser, lambda: "/login" not in browser.current_url, f"{name} logged in")


def wait_for(browser: Any, check: Any, what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.3)
    pytest.fail(f"{what}: not after {timeout}s; page:\n{browser.page_source[:3000]}")


def dead_letter(contact: str) -> dict[str, Any]:
    command = {"system": "salesforce", "object": "Contact", "operation": "upsert", "external_id_field": "Id",
               "external_id": contact, "fields": {"Title": TITLE}, "version": 10**9, "record_key": "console-test",
               "idempotency_key": "console-test-1"}
    return {"reason": "rejected", "error_code": "UNABLE_TO_LOCK_ROW", "error": "retries exhausted", "attempts": 8,
            "system": "salesforce", "object": "Contact", "partition_key": f"salesforce:Contact:{contact}",
            "command": command}


def test_console_in_chromium(demo: Demo, browser: Any, kafka_bootstrap: str) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    shots = artefacts_dir("console")
    demo.wait_until_played()
    console = demo.found(r"ops console: (http://\S+) \(log in as operator or viewer, password (\S+) ").groups()
    url, password = console[0], console[1]
    sandbox_rest = demo.found(r"salesforce-rest\s+(http://\S+)").group(1)
    ada = demo.found(r"Ada\s+Pardot (\S+)\s+Contact (\S+) \(TIMS customer id on it: (\S+)\)\s+TIMS (\S+)").groups()
    prospect, contact, tims = ada[0], ada[1], ada[3]

    worker = demo.found(r"worker web: (http://\S+)").group(1)
    link = httpx.get(f"{worker}/console", follow_redirects=False, timeout=10)
    assert link.status_code == 302 and link.headers["location"] == url  # the worker links to the console

    log_in(browser, url, "operator", password)
    browser.save_screenshot(str(shots / "1-letters-after-login.png"))

    # the customer 360: one search by email shows her records in all three systems
    browser.get(f"{url}customers")
    search = browser.find_element(By.ID, "q")
    search.send_keys("ada@analytical.example")
    search.submit()
    wait_for(browser, lambda: "Linked records" in browser.page_source, "the customer 360")
    links = browser.find_element(By.ID, "links").text
    assert contact in links and prospect in links and tims in links, links
    assert "ada@analytical.example" in browser.find_element(By.ID, "golden").text
    browser.save_screenshot(str(shots / "2-customer-360-operator.png"))
    # by a system's id the same person comes back
    browser.get(f"{url}customers?q={tims}")
    assert contact in browser.find_element(By.ID, "links").text

    # a dead letter: shown, replayed, and it lands in the sandbox's Salesforce through the worker
    prefix = f"demo-{demo.run}."
    asyncio.run(create_topics(kafka_bootstrap, [f"{prefix}dlq.salesforce"], partitions=1))
    asyncio.run(produce_json(kafka_bootstrap, f"{prefix}dlq.salesforce", [("console", dead_letter(contact))]))
    browser.get(f"{url}letters")
    # the filters apply as they change (htmx swaps the table in and updates the address)
    Select(browser.find_element(By.ID, "kind")).select_by_value("dlq")
    wait_for(browser, lambda: "kind=dlq" in browser.current_url, "the kind filter applied")
    wait_for(browser, lambda: "UNABLE_TO_LOCK_ROW" in browser.page_source or browser.refresh(), "the dead letter listed")
    letter_id = browser.find_element(By.CSS_SELECTOR, "#results tbody a").text
    browser.get(f"{url}letters/{letter_id}")
    assert TITLE in browser.find_element(By.ID, "letter-content").text
    browser.save_screenshot(str(shots / "3-dead-letter.png"))
    browser.find_element(By.ID, "replay-one").click()
    wait_for(browser, lambda: "Replayed 1 dead letter" in browser.page_source, "the replay confirmed")
    browser.save_screenshot(str(shots / "4-replayed.png"))

    def landed() -> bool:
        state = httpx.get(f"{sandbox_rest}/__admin/state", timeout=10).text
        return TITLE in state

    wait_for(browser, landed, "the replayed command in the sandbox's Contact", timeout=60)

    edit_a_mapping(browser, url, demo, shots)
    edit_a_mapping_row(browser, url, demo, shots)
    pause_and_resume(browser, url, shots)

    # a viewer sees the same person with her email masked, and cannot replay
    browser.find_element(By.CSS_SELECTOR, "form.who button").click()
    wait_for(browser, lambda: "/login" in browser.current_url, "logged out")
    log_in(browser, f"{url}customers?q={contact}", "viewer", password)
    golden = browser.find_element(By.ID, "golden").text
    assert "a***@analytical.example" in golden and "ada@analytical.example" not in golden
    assert contact in browser.find_element(By.ID, "links").text
    browser.save_screenshot(str(shots / "5-customer-360-viewer.png"))
    browser.get(f"{url}letters")
    assert not browser.find_elements(By.ID, "replay-all")
    browser.get(f"{url}mappings")
    assert "customer_master" in browser.find_element(By.TAG_NAME, "main").text
    # a preview: a record with a mistake is refused with the reason, then the fixed one maps
    box = browser.find_element(By.ID, "record-1")
    box.send_keys('{"source": "salesforce", "entity": "Contract", "fields": {}}')
    box.submit()
    wait_for(browser, lambda: "no inbound mapping for 'salesforce.Contract'" in browser.page_source, "the refusal")
    box = browser.find_element(By.ID, "record-1")
    box.clear()
    box.send_keys('{"source": "salesforce", "entity": "Contact", "fields": {"Id": "003X", "Phone": "(415) 555-0134"}}')
    box.submit()
    wait_for(browser, lambda: browser.find_elements(By.CSS_SELECTOR, ".preview-output"), "the preview")
    assert "***34" in browser.find_element(By.CSS_SELECTOR, ".preview-output").text  # a viewer: masked
    browser.save_screenshot(str(shots / "7-mappings.png"))
    browser.get(f"{url}flows")
    flows = browser.find_element(By.TAG_NAME, "main").text
    assert "customer_sync" in flows and "events in · salesforce.Contact" in flows  # the worker's counts
    browser.save_screenshot(str(shots / "6-flows.png"))


def edit_a_mapping(browser: Any, url: str, demo: Demo, shots: Path) -> None:
    """A mapping edit with an error is refused with file, line and field; fixed, previewed on
    a pasted record and on the newest real event, reviewed, saved; the worker reloads it."""
    from selenium.webdriver.common.by import By

    browser.get(f"{url}mappings")
    browser.find_element(By.ID, "edit-customer_sync-customer_master").click()
    wait_for(browser, lambda: browser.find_elements(By.ID, "text"), "the edit page")
    text = browser.find_element(By.ID, "text").get_attribute("value")
    old, new = 'name: {concat: [first_name, last_name], sep: " "}', 'name: {concat: [last_name, first_name], sep: ", "}'
    assert old in text
    wrong = text.replace(old, new).replace("phone: {from: Phone, clean: phone}", "phone: {from: Phone, clean: fone}", 1)
    line = wrong.splitlines().index("    phone: {from: Phone, clean: fone}") + 1

    def put(element_id: str, value: str) -> None:
        browser.execute_script("arguments[0].value = arguments[1];", browser.find_element(By.ID, element_id), value)

    put("text", wrong)
    browser.find_element(By.ID, "review").click()
    wait_for(browser, lambda: browser.find_elements(By.ID, "problems"), "the refusal")
    problems = browser.find_element(By.ID, "problems").text
    assert f"customer_master.yaml, line {line}" in problems and "inbound.salesforce.Contact.phone.clean" in problems
    assert "unknown cleanser" in problems and not browser.find_elements(By.ID, "save")
    assert browser.find_element(By.ID, "text").get_attribute("aria-invalid") == "true"
    browser.save_screenshot(str(shots / "8-mapping-refused.png"))

    put("text", text.replace(old, new))
    put("record", '{"source": "salesforce", "entity": "Contact", "fields": {"Id": "003Z", "FirstName": "Ada", '
                  '"LastName": "Lovelace"}}')
    browser.find_element(By.ID, "preview-pasted").click()
    wait_for(browser, lambda: browser.find_elements(By.ID, "preview"), "the preview")
    assert '"name": "Lovelace, Ada"' in browser.find_element(By.ID, "preview").text
    browser.find_element(By.ID, "preview-latest").click()  # the newest event the demo's sources wrote
    wait_for(browser, lambda: browser.find_elements(By.ID, "preview") or browser.find_elements(By.ID, "record-error"),
             "the preview of the newest event")
    assert "src." in browser.page_source and browser.find_elements(By.ID, "preview")
    browser.find_element(By.ID, "review").click()
    wait_for(browser, lambda: browser.find_elements(By.ID, "diff"), "the diff")
    diff = browser.find_element(By.ID, "diff").text
    assert f"-      {old}" in diff and f"+      {new}" in diff
    browser.save_screenshot(str(shots / "9-mapping-diff.png"))
    browser.find_element(By.ID, "save").click()
    wait_for(browser, lambda: "The workers were told to reload customer_sync" in browser.page_source, "the save")
    # the demo's site folder (CONNECT_MAPPINGS_DIR), beside its logs
    logs = demo.log.parent / demo.found(r"logs in (\S+)\)").group(1)
    assert new in (logs / "mappings" / "customer_sync" / "customer_master.yaml").read_text()

    def reloaded() -> bool:
        browser.get(f"{url}flows")
        reports = browser.find_elements(By.ID, "reports-customer_sync")
        return bool(reports) and "reload done: 2 files" in reports[0].text

    wait_for(browser, reloaded, "the worker's report of the reload", timeout=60)


def edit_a_mapping_row(browser: Any, url: str, demo: Demo, shots: Path) -> None:
    """A row of the mapping table edited by typing into its cells (no script of ours): a wrong
    transform is refused with file, line and field next to the row; fixed, it is the only line
    of the diff, and the save writes it."""
    from selenium.webdriver.common.by import By

    browser.get(f"{url}mappings/customer_sync/customer_master/edit")
    wait_for(browser, lambda: browser.find_elements(By.ID, "rows"), "the rows table")
    text = browser.find_element(By.ID, "text").get_attribute("value")
    line = text.splitlines().index("    city: {from: MailingCity, clean: text}") + 1
    row = next(tr.get_attribute("id") for tr in browser.find_elements(By.CSS_SELECTOR, "table.rows tr[id^='row-']")
               if tr.find_elements(By.TAG_NAME, "td")[0].text == "inbound.salesforce.Contact"
               and tr.find_elements(By.CSS_SELECTOR, "input[name$='.target']")[0].get_attribute("value") == "city")
    index = row.removeprefix("row-")

    def type_into(element_id: str, value: str) -> None:
        cell = browser.find_element(By.ID, element_id)
        cell.clear()
        cell.send_keys(value)

    type_into(f"r{index}-transform", "clean: txet")
    browser.find_element(By.ID, "apply-rows").click()
    wait_for(browser, lambda: browser.find_elements(By.ID, f"row-{index}-problems"), "the refusal next to the row")
    said = browser.find_element(By.ID, f"row-{index}-problems").text
    assert f"customer_master.yaml, line {line}" in said and "inbound.salesforce.Contact.city.clean" in said
    assert "unknown cleanser" in said and not browser.find_elements(By.ID, "save")
    assert browser.find_element(By.ID, f"r{index}-transform").get_attribute("aria-invalid") == "true"
    browser.save_screenshot(str(shots / "11-mapping-row-refused.png"))

    type_into(f"r{index}-transform", "clean: upper")
    browser.find_element(By.ID, "apply-rows").click()
    wait_for(browser, lambda: browser.find_elements(By.ID, "verdict"), "the row change checked")
    assert not browser.find_elements(By.ID, f"row-{index}-problems")
    browser.find_element(By.ID, "review").click()
    wait_for(browser, lambda: browser.find_elements(By.ID, "diff"), "the diff")
    changed = [d for d in browser.find_element(By.ID, "diff").text.splitlines()
               if d[:1] in "+-" and not d.startswith(("+++", "---"))]
    assert changed == ["-    city: {from: MailingCity, clean: text}", "+    city: {from: MailingCity, clean: upper}"]
    browser.execute_script("arguments[0].scrollIntoView();", browser.find_element(By.ID, "diff"))  # for the picture
    browser.save_screenshot(str(shots / "12-mapping-row-diff.png"))
    browser.find_element(By.ID, "save").click()
    wait_for(browser, lambda: "The workers were told to reload customer_sync" in browser.page_source, "the save")
    logs = demo.log.parent / demo.found(r"logs in (\S+)\)").group(1)
    saved = (logs / "mappings" / "customer_sync" / "customer_master.yaml").read_text()
    assert "    city: {from: MailingCity, clean: upper}\n" in saved and saved.replace("clean: upper}", "clean: text}", 1) == text


def pause_and_resume(browser: Any, url: str, shots: Path) -> None:
    from selenium.webdriver.common.by import By

    browser.get(f"{url}flows")
    assert browser.find_element(By.CSS_SELECTOR, "#main svg title").text.startswith("customer_sync")
    browser.find_element(By.ID, "pause-customer_sync").click()
    wait_for(browser, lambda: browser.find_elements(By.ID, "paused-customer_sync"), "the flow paused")

    def reported() -> bool:
        browser.get(f"{url}flows")
        return "pause done" in browser.find_element(By.ID, "reports-customer_sync").text

    wait_for(browser, reported, "the worker's report of the pause", timeout=60)
    browser.save_screenshot(str(shots / "10-flow-paused.png"))
    browser.find_element(By.ID, "resume-customer_sync").click()
    wait_for(browser, lambda: browser.find_elements(By.ID, "pause-customer_sync"), "the flow resumed")
