"""Tests of the sandbox simulators, against their real servers on loopback."""
