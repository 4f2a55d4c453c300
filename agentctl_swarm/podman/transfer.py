"""Streaming a command's output out of a container, with a byte cap and a deadline.

``PodmanBackend.exec`` collects all output in memory (and podman-py joins the frames
quadratically); a sync must not trust the container to keep its output small or to
finish. ``exec_stream`` runs the command, hands stdout to a sink chunk by chunk, aborts
past ``max_bytes`` or the deadline, and never blocks the caller beyond the deadline (the
read runs in a worker thread that is abandoned on timeout and ends with the socket).
It costs two API calls (create + start), one fewer than exec + get_archive would.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from podman.errors import APIError, NotFound

from agentctl_swarm.podman.backend import PodmanBackend, PodmanError

MAX_STDERR = 64 * 1024


class _Abort(Exception):
    pass


def exec_stream(
    backend: PodmanBackend,
    container: str,
    argv: list[str],
    sink: Callable[[bytes], None],
    *,
    max_bytes: int,
    timeout: float,
    user: str | None = None,
    env: dict[str, str] | None = None,
) -> bytes:
    """Run ``argv`` in ``container``, feed stdout to ``sink``; returns (capped) stderr.

    Raises PodmanError when the container is missing, the output passes ``max_bytes``,
    or the command does not finish within ``timeout`` seconds. The exit code is not
    available on a streamed exec: callers put success into the output itself.
    """
    state: dict[str, Any] = {"stdout": 0, "stderr": b""}
    done = threading.Event()

    def pump() -> None:
        try:
            _, frames = backend.exec_frames(container, argv, user=user, env=env)
            for frame in frames:
                if done.is_set():
                    raise _Abort
                out, err = frame if isinstance(frame, tuple) else (frame, None)
                if out:
                    state["stdout"] += len(out)
                    if state["stdout"] > max_bytes:
                        raise PodmanError(
                            f"output of exec in {container} passed the cap of {max_bytes} bytes"
                        )
                    sink(out)
                if err and len(state["stderr"]) < MAX_STDERR:
                    state["stderr"] += err[: MAX_STDERR - len(state["stderr"])]
        except NotFound:
            state["error"] = PodmanError(f"no container {container}")
        except APIError as exc:
            state["error"] = PodmanError(f"exec in {container} failed: {str(exc)[:300]}")
        except _Abort:
            pass
        except Exception as exc:  # surfaced in the caller's thread
            state["error"] = (
                exc
                if isinstance(exc, PodmanError)
                else PodmanError(f"exec in {container} failed: {exc!r}"[:400])
            )

    worker = threading.Thread(target=pump, name=f"exec-stream-{container}", daemon=True)
    worker.start()
    worker.join(timeout)
    if worker.is_alive():
        done.set()
        raise PodmanError(f"exec in {container} did not finish within {timeout:.1f}s")
    if "error" in state:
        raise state["error"]
    return bytes(state["stderr"])
