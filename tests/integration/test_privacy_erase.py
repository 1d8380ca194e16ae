"""`stream-app privacy erase` end to end (issue #20, docs/adr/0034): the sandbox, a worker and
the three sources after the demo's flows 1 and 2, on the real broker.

A person onboarded through Pardot, Salesforce and TIMS is erased by email: the dry run changes
nothing; the erase deletes the Lead and the prospect and anonymises the Contact and the TIMS
customer (the shipped policy), forgets them in the tables (export finds nobody), records the
erasure on audit.privacy without personal data; a late edit of the anonymised Contact does not
bring them back; and neither does replaying every topic the worker reads from offset 0.
"""

from __future__ import annotations

import json
import re

import pytest

from sandbox.pardot.objects import PardotError
from tests.integration.test_replay_e2e import GROUP_TOPICS, Connect, connect, first_onboarded  # noqa: F401
from tests.support.kafka import read_json

pytestmark = pytest.mark.integration

SINKS = {"CONNECT_SINK_OBJECTS": "salesforce.Contact,salesforce.Account,salesforce.Lead,tims.customer,pardot.prospect"}


def prospect_gone(connect: Connect, prospect: int) -> bool:
    try:
        connect.sandbox.pardot.get("prospects", prospect)
    except PardotError:
        return True
    return False


@pytest.mark.parametrize("connect", [SINKS], indirect=True, ids=["erase-sinks"])
async def test_an_erased_person_is_gone_everywhere_and_stays_gone_through_a_replay(connect: Connect) -> None:
    person = first_onboarded()
    org, tims, ids = connect.sandbox.org, connect.sandbox.tims, person.ids
    assert (await connect.cli("privacy", "export", "--email", person.email)).returncode == 0

    dry = await connect.cli("privacy", "erase", "--email", person.email, "--dry-run")
    assert dry.returncode == 0, dry.stderr
    planned = json.loads(dry.stdout)["flows"]["customer_sync"]["actions"]
    assert planned == {"salesforce.Lead": f"delete {ids['lead']}", "salesforce.Contact": f"anonymise {ids['contact']}",
                       "pardot.prospect": f"delete {ids['prospect']}", "tims.customer": f"anonymise {ids['tims']}"}
    assert person.email not in dry.stdout and person.last not in dry.stdout
    assert not prospect_gone(connect, ids["prospect"]) and org.get("Lead", ids["lead"]) is not None

    erased = await connect.cli("privacy", "erase", "--email", person.email)
    assert erased.returncode == 0, erased.stderr

    def anonymised() -> bool:
        contact, customer = org.get("Contact", ids["contact"]) or {}, tims.customer(ids["tims"])
        return (contact.get("LastName"), contact.get("Email"), customer.get("name"), customer.get("email")) == (
            "Erased", None, "Erased customer", None)

    await connect.wait_for("the Lead and the prospect deleted, the Contact and the TIMS customer anonymised",
                           lambda: org.get("Lead", ids["lead"]) is None and prospect_gone(connect, ids["prospect"])
                           and anonymised())
    gone = await connect.cli("privacy", "export", "--email", person.email)
    assert gone.returncode == 1 and "no person" in gone.stderr, gone.stdout + gone.stderr
    audit = await read_json(connect.bootstrap, f"{connect.prefix}audit.privacy", until=lambda vs: len(vs) >= 1)
    assert len(audit) == 1 and audit[0]["flows"]["customer_sync"]["actions"] == planned
    assert person.email not in json.dumps(audit) and person.first not in json.dumps(audit)

    # a late edit in Salesforce: the person's events are dropped, TIMS stays anonymised
    org.update("Contact", ids["contact"], {"Phone": "(415) 555-0199", "MailingCity": "Leeds"})
    await connect.settle()
    assert anonymised() and tims.customer(ids["tims"]).get("phone") is None

    # every topic the worker reads, from offset 0: the person does not come back
    await connect.stop_worker()
    for topic in GROUP_TOPICS:
        result = await connect.cli("replay", "--topic", topic, "--from-offset", "0")
        assert result.returncode == 0, result.stderr
        assert int(re.search(r"total: (\d+) messages to reprocess", result.stdout).group(1)) >= 0
    await connect.start_worker()
    await connect.settle(quiet=5)
    assert anonymised() and tims.customer(ids["tims"]).get("phone") is None
    assert not [c for c in tims.all("customers") if str(c.get("email") or "").lower() == person.email]
    assert org.get("Lead", ids["lead"]) is None and prospect_gone(connect, ids["prospect"])
    gone = await connect.cli("privacy", "export", "--email", person.email)
    assert gone.returncode == 1, gone.stdout
