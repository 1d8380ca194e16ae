"""`stream-app sandbox` as a user starts it: four servers, one line each, one org behind them."""

from __future__ import annotations

import signal
import subprocess

import grpc
import httpx

from connectors.salesforce.proto import pubsub_api_pb2 as pb
from connectors.salesforce.proto import pubsub_api_pb2_grpc as pb_grpc
from sandbox.run import PARDOT_BUSINESS_UNIT, TIMS_API_KEY
from sandbox.shop import ACCESS_TOKEN as SHOP_ACCESS_TOKEN
from sandbox.shop import API_VERSION as SHOP_API_VERSION
from tests.support.worker import STREAM_APP


async def test_sandbox_command_serves_every_system() -> None:
    proc = subprocess.Popen(
        [STREAM_APP, "sandbox", "--salesforce-port", "0", "--pubsub-port", "0", "--pardot-port", "0", "--tims-port", "0",
         "--shop-port", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        assert proc.stdout is not None
        urls = dict(proc.stdout.readline().split() for _ in range(5))
        assert set(urls) == {"salesforce-rest", "salesforce-pubsub", "pardot", "tims", "shop"}

        async with httpx.AsyncClient(timeout=10) as http:
            token = (await http.post(f"{urls['salesforce-rest']}/services/oauth2/token", data={
                "grant_type": "client_credentials", "client_id": "demo", "client_secret": "demo"})).json()
            assert token["instance_url"] == urls["salesforce-rest"]
            bearer = {"Authorization": f"Bearer {token['access_token']}"}
            shop = await http.post(f"{urls['shop']}/admin/api/{SHOP_API_VERSION}/graphql.json",
                                   json={"query": "{ orders(first: 1) { nodes { id } } }"},
                                   headers={"X-Shopify-Access-Token": SHOP_ACCESS_TOKEN})
            assert shop.status_code == 200 and shop.json()["data"] == {"orders": {"nodes": []}}
            versions = await http.get(f"{urls['salesforce-rest']}/services/data/")
            assert versions.status_code == 200 and versions.json()

            # Pardot accepts the org's tokens and nothing else.
            query = f"{urls['pardot']}/api/v5/objects/prospects"
            headers = {**bearer, "Pardot-Business-Unit-Id": PARDOT_BUSINESS_UNIT}
            assert (await http.get(query, params={"fields": "id,email"}, headers=headers)).status_code == 200
            bad = await http.get(query, params={"fields": "id"},
                                 headers={"Authorization": "Bearer forged", "Pardot-Business-Unit-Id": PARDOT_BUSINESS_UNIT})
            assert bad.status_code == 401

            customers = await http.get(f"{urls['tims']}/v1/customers", headers={"Authorization": f"Bearer {TIMS_API_KEY}"})
            assert customers.status_code == 200

            org_id = token["id"].rstrip("/").split("/")[-2]
        async with grpc.aio.insecure_channel(urls["salesforce-pubsub"].removeprefix("grpc://")) as channel:
            topic = await pb_grpc.PubSubStub(channel).GetTopic(
                pb.TopicRequest(topic_name="/data/ContactChangeEvent"),
                metadata=(("accesstoken", token["access_token"]), ("instanceurl", urls["salesforce-rest"]),
                          ("tenantid", org_id)))
            assert topic.can_subscribe and topic.schema_id
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err[-2000:]
    assert "Unclosed" not in err
