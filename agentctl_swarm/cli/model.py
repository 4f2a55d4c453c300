"""CLI commands: ``agentctl model serve`` (the scripted model for Claude Code).

Argument parsing and output only; the model lives in ``agentctl_swarm.model``.
"""

from __future__ import annotations

import logging
import signal
import threading
from pathlib import Path
from typing import Annotated

import typer

from agentctl_swarm.cli.common import settings
from agentctl_swarm.core.errors import UsageError
from agentctl_swarm.core.logs import setup_logging

log = logging.getLogger("agentctl.model")

EXAMPLE = """\
A script says, turn by turn, what the model answers. Example (hello.yaml):

\b
  conversations:
    - name: writer
      match: {prompt: "write (?P<file>\\\\S+)"}   # regex over the task prompt
      turns:
        - text: "Writing ${file}."
          tool_use:
            - Write: {file_path: "${cwd}/${file}", content: "hello\\n"}
        - tool_use:
            - mcp__agentchat__agentchat_send: {target: "#work", message: "STATUS wrote ${file}"}
        - text: Done.
          usage: {input_tokens: 1200, output_tokens: 40}
    - turns:                          # no match: answers every other prompt
        - error: {kind: rate_limit, retry_after: 30}

\b
Turn N answers the request that already holds N assistant turns, so one server
serves many concurrent Claude Code processes and retries get the same answer.
A turn has text and/or tool_use (Write, Edit, Bash, Read, mcp__<server>__<tool>;
{name: X, input: {...}} or the short {X: {...}}), or an error, or hang: true;
delay: SECONDS waits first; usage sets the token counts (estimated otherwise);
a bare string is a text turn. Errors: a status (401, 429, 529, ...) or a kind
(authentication, permission, rate_limit, overloaded, prompt_too_long, api_error,
invalid_request, not_found, request_too_large), or a mapping with status/kind,
message, retry_after, headers, and times: N (only the first N attempts fail, then
the turn's answer follows; scope: session | server). ${cwd}, ${prompt} and the
match's named groups are substituted. A script with one conversation may give
just `turns:` at the top level.

\b
Run Claude Code against it:
  ANTHROPIC_BASE_URL=http://127.0.0.1:PORT ANTHROPIC_API_KEY=anything \\
  CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC=1 ENABLE_TOOL_SEARCH=false \\
  claude -p "write hello.txt" --output-format stream-json --verbose
"""

model_app = typer.Typer(
    name="model",
    help="A scripted stand-in for the Anthropic API, for deterministic zero-cost runs.",
    no_args_is_help=True,
)


def register(app: typer.Typer) -> None:
    """Add this module's commands to the `agentctl` app."""
    app.add_typer(model_app, name="model")


@model_app.command("serve", epilog=EXAMPLE)
def serve(
    script: Annotated[
        Path,
        typer.Option("--script", "-s", help="The model script (YAML).", show_default=False),
    ],
    host: Annotated[
        str, typer.Option(help="Address to listen on (loopback unless --allow-remote).")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", "-p", help="TCP port (0 picks a free one).")] = (
        8089
    ),
    allow_remote: Annotated[
        bool,
        typer.Option(
            "--allow-remote",
            help="Allow a non-loopback --host (the server answers anyone, without a key).",
        ),
    ] = False,
    watch: Annotated[
        bool,
        typer.Option("--watch/--no-watch", help="Reload the script when the file changes."),
    ] = True,
) -> None:
    """Serve the Anthropic Messages API from a script, for the real Claude Code binary.

    Answers POST /v1/messages (streamed as SSE, or as JSON), /v1/messages/count_tokens,
    GET /v1/models and the health checks Claude Code makes. Prints the base URL, then
    logs one line per request until Ctrl-C.
    """
    from agentctl_swarm.model import ScriptedModel, read_script
    from agentctl_swarm.model.server import url_of

    if not 0 <= port <= 65535:
        raise UsageError(f"--port {port}: must be between 0 and 65535")
    model = ScriptedModel(read_script(script))
    server = model.make_server(host, port, allow_remote=allow_remote)
    url = url_of(server)
    setup_logging("model", fmt=settings().log_format)
    stop = threading.Event()
    if watch:
        threading.Thread(
            target=_watch, args=(model, script, stop), name="script-watch", daemon=True
        ).start()
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())
    typer.echo(f"scripted model on {url} (script {script}); Ctrl-C stops it", err=True)
    typer.echo(f"ANTHROPIC_BASE_URL={url}")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        stop.set()
        model.stop_event().set()
        server.server_close()


def _watch(model: object, path: Path, stop: threading.Event, interval: float = 1.0) -> None:
    """Swap in the script when its file changes; a broken edit keeps the old script."""
    from agentctl_swarm.model import ScriptedModel, ScriptError, read_script

    assert isinstance(model, ScriptedModel)

    def stamp() -> tuple[float, int] | None:
        try:
            info = path.stat()
        except OSError:
            return None
        return info.st_mtime, info.st_size

    seen = stamp()
    while not stop.wait(interval):
        now = stamp()
        if now is None or now == seen:
            continue
        seen = now
        try:
            model.script = read_script(path)
        except ScriptError as exc:
            log.warning(
                "script has problems; keeping the previous one",
                extra={"script": str(path), "problems": exc.details()},
            )
        else:
            log.info("script reloaded", extra={"script": str(path)})
