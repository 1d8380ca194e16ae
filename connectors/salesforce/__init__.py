"""Salesforce: OAuth, REST client, CDC source over the Pub/Sub API, sObject sink."""
