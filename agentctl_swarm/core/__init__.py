"""One mechanism per concern, shared by every part: errors, files, locks, backoff, logging,
subprocesses and retries.

Nothing here imports another agentctl package, so every part (host, container, pure core)
can depend on it without cycles. Modules that touch the world (``files``, ``proc``,
``logs``) are kept apart from the pure ones (``errors``, ``backoff``).
"""
