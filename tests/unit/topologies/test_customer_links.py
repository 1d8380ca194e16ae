"""The customer master tells other flows a golden record's ids in each system when they change
(``customer_master.links``, keyed by the customer key; ids only): how the web orders flow learns
the TIMS customer of a shop customer that matching joined under another email (docs/adr/0035,
addendum)."""

from __future__ import annotations

from typing import Any

from connectors.envelope import SourceEvent
from tests.unit.topologies.test_merge_batches import Harness, tims, until
from topologies.customer_links import TOPIC

#: a TIMS customer entered at the counter (no Salesforce Id), and an edit of it
CREATE, NET60 = tims("e1", 1_000, "CREATE", external_id=None), tims("e2", 2_000, payment_terms="net60", external_id=None)


def shop_customer(event_id: str, ts: int) -> dict[str, Any]:
    event = SourceEvent(event_id=event_id, source="shop", entity="customer", record_id="gid://shopify/Customer/7",
                        change_type="CREATE", fields={"email": "ada.private@example.com", "first_name": "Ada",
                                                      "last_name": "Lovelace"}, full_state=True, commit_timestamp=ts)
    return {"kind": "event", "event": event.model_dump(mode="json")}


async def test_a_shop_customer_joining_a_tims_customer_is_told_once_with_both_ids() -> None:
    harness = Harness(size=1)
    async with harness.agent.test_context() as agent:
        events = [await agent.put(m, key=b"k-ada", wait=False)
                  for m in (CREATE, shop_customer("s1", 1_500), NET60, shop_customer("s1", 1_500))]
        await until(lambda: all(e.message.acked for e in events))
    told = harness.outputs.on(TOPIC)
    assert [key for key, _ in told] == ["k-ada"], "told when the links changed, not for other edits"
    (_, value), record = told[0], harness.table["k-ada"]
    assert value["links"] == {"tims_customer": "C1", "shop_customer": "shop:shopify:Customer:7"}
    assert value["version"] == 2 and record["told_links"] == value["links"]
    assert "ada" not in str(value["links"]).lower(), "ids only"


async def test_a_merged_record_tells_that_it_holds_nothing_and_the_survivor_tells_what_it_took() -> None:
    harness = Harness(size=1)
    harness.flow.identity = harness.context.replicated("identity")
    absorb = {"kind": "absorb", "into": "k-ada", "merge_id": "r1", "by": "alice"}
    async with harness.agent.test_context() as agent:
        events = [await agent.put(m, key=b"k-dup", wait=False) for m in (CREATE, shop_customer("s1", 1_500), absorb)]
        events.append(await agent.put(shop_customer("s9", 900), key=b"k-ada", wait=False))
        await until(lambda: all(e.message.acked for e in events))
        absorbed = [value for key, value in harness.outputs.on("customer_sync.merge") if key == "k-ada"]
        events = [await agent.put(value, key=b"k-ada", wait=False) for value in absorbed]
        await until(lambda: all(e.message.acked for e in events))
    told = harness.outputs.on(TOPIC)
    assert [(key, value["links"]) for key, value in told] == [
        ("k-dup", {"tims_customer": "C1", "shop_customer": "shop:shopify:Customer:7"}),
        ("k-dup", {}),
        ("k-ada", {"shop_customer": "shop:shopify:Customer:7", "tims_customer": "C1"})]
    assert told[2][1]["version"] > told[0][1]["version"], "the survivor's statement is the newer"
