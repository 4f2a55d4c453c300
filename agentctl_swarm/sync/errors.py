"""Errors of the sync package: one type, with a message that names the place and the fix."""

from __future__ import annotations


class SyncError(Exception):
    """A sync (or seed) step failed; the message says where and what to do about it."""
