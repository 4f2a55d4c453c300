"""A scripted stand-in for the Anthropic Messages API, for deterministic zero-cost runs."""
