"""Simulated Salesforce org: OAuth, REST API and Change Data Capture over the Pub/Sub API."""
