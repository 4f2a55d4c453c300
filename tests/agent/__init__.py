"""Tests of the in-container agent side (supervisor, backoff, state)."""
