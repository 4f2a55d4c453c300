"""The task coordinator: a durable task board that assigns work to agents over AgentChat.

* :mod:`.grammar` — the coordination lines (TASK, CLAIM, ASSIGN, ...): parser and
  formatter, pure.
* :mod:`.board` — the state machine (claims, max-active, budgets, requeue, quota pause
  and probe): pure, time passed in.
* :mod:`.store` — SQLite (WAL) persistence of the board.
* :mod:`.service` — the asyncio shell: the AgentChat client, ticks, persistence, the
  HTTP reads; embedded in ``agentctl server`` or standalone (``agentctl coordinator``).
"""
