"""The Salesforce Pub/Sub API (eventbus.v1) proto and its generated stubs; see scripts/gen_proto.sh."""
