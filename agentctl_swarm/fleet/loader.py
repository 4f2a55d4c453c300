"""Parse fleet YAML and report every problem at once as ``FILE:LINE:COL: field: message``.

YAML is parsed with ruamel.yaml's round-trip loader because it remembers where each key
and value stood; pydantic then validates, and each of its errors is mapped back to a
line and column. Cross-field rules (duplicate roles, sensitive mounts) run afterwards on
the validated model and are located the same way. Pure: the text comes in, a validated
fleet or every problem goes out; reading the file is fleet/source.py's job.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.constructor import DuplicateKeyError
from ruamel.yaml.error import MarkedYAMLError

from agentctl_swarm.core.errors import UsageError
from agentctl_swarm.fleet.model import AgentSpec, Defaults, Fleet, RepoSpec

Loc = tuple[str | int, ...]


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a fleet file, located precisely enough to jump to."""

    file: str
    line: int
    column: int
    field: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}:{self.column}"
        return (
            f"{where}: {self.field}: {self.message}" if self.field else f"{where}: {self.message}"
        )


class ProblemsError(UsageError):
    """Every problem found in one file, in file order: the CLI prints each on its own
    line, then the summary line (exit 2). ``summary`` says what to do about them."""

    summary = "nothing was changed"

    def __init__(self, problems: Sequence[Problem], *, hint: str | None = None) -> None:
        self.problems = sorted(problems, key=lambda p: (p.file, p.line, p.column, p.field))
        super().__init__("\n".join(str(p) for p in self.problems), hint=hint)

    def details(self) -> list[str]:
        return [str(p) for p in self.problems]

    def one_line(self) -> str:
        n = len(self.problems)
        files = sorted({p.file for p in self.problems})
        where = f" in {files[0]}" if len(files) == 1 else ""
        return f"{n} problem{'s' if n != 1 else ''}{where}; {self.summary}"


class FleetError(ProblemsError):
    """A fleet file that cannot be used; nothing was changed."""


@dataclass(frozen=True)
class LoadedFleet:
    """A valid fleet plus where it came from (kept to locate later, apply-time errors)."""

    fleet: Fleet
    path: Path
    tree: Any

    def locate(self, loc: Loc, message: str) -> Problem:
        """A problem for ``loc`` in this file (used for errors found after loading)."""
        line, col = _position(self.tree, loc, key=False)
        return Problem(str(self.path), line, col, _dotted(loc), message)


def parse_fleet(
    text: str, filename: str = "<fleet>", *, base_dir: Path | None = None
) -> LoadedFleet:
    """Validate fleet YAML given as text (``filename`` is used in messages).

    Relative ``repo.path``/``sync.into`` are resolved against ``base_dir`` (the fleet
    file's directory, made absolute by the caller), or kept relative without one.
    """
    tree = _parse_yaml(text, filename)
    if tree is None:
        raise FleetError([Problem(filename, 1, 1, "", "the file is empty; see `agentctl schema`")])
    if not isinstance(tree, CommentedMap):
        raise FleetError(
            [Problem(filename, 1, 1, "", "the top level must be a mapping (apiVersion, kind, ...)")]
        )
    try:
        plain = _plain(tree)
    except _TooBig as exc:
        raise FleetError(
            [
                Problem(
                    filename,
                    1,
                    1,
                    "",
                    f"the file expands to more than {MAX_NODES} values (YAML aliases "
                    "repeated inside each other?); write the values out or use fewer aliases",
                )
            ]
        ) from exc
    except RecursionError as exc:
        raise FleetError([Problem(filename, 1, 1, "", "the file is nested too deeply")]) from exc
    # Top-level keys starting with "x-" are the user's own (e.g. anchors for `<<: *x`),
    # as in compose files; they are not part of the fleet.
    plain = {k: v for k, v in plain.items() if not (isinstance(k, str) and k.startswith("x-"))}
    try:
        fleet = Fleet.model_validate(plain)
    except ValidationError as exc:
        problems = [_from_pydantic(err, tree, filename) for err in exc.errors()]
        raise FleetError(_dedupe(problems)) from exc
    problems = [_located(tree, filename, loc, msg) for loc, msg in semantic_problems(fleet)]
    if problems:
        raise FleetError(problems)
    if base_dir is not None:
        fleet = resolve_paths(fleet, base_dir)
    return LoadedFleet(fleet=fleet, path=Path(filename), tree=tree)


def resolve_paths(fleet: Fleet, base: Path) -> Fleet:
    """Relative `repo.path` and `sync.into` mean "next to the fleet file", not the cwd."""

    def fix(path: str | None) -> str | None:
        if path is None or path.startswith(("/", "~")) or "://" in path:
            return path
        return str(base / path)

    def fix_repo(repo: RepoSpec | None) -> RepoSpec | None:
        return None if repo is None else repo.model_copy(update={"path": fix(repo.path)})

    return fleet.model_copy(
        update={
            "repo": fix_repo(fleet.repo),
            "defaults": fleet.defaults.model_copy(update={"repo": fix_repo(fleet.defaults.repo)}),
            "agents": [a.model_copy(update={"repo": fix_repo(a.repo)}) for a in fleet.agents],
            "sync": fleet.sync.model_copy(update={"into": fix(fleet.sync.into)}),
        }
    )


def semantic_problems(fleet: Fleet) -> list[tuple[Loc, str]]:
    """Rules that span fields or need the whole fleet (pure; each with its location)."""
    problems: list[tuple[Loc, str]] = []
    seen: dict[str, int] = {}
    for index, agent in enumerate(fleet.agents):
        if agent.role in seen:
            problems.append(
                (
                    ("agents", index, "role"),
                    f"role {agent.role!r} is already used by agents[{seen[agent.role]}]",
                )
            )
        else:
            seen[agent.role] = index
    problems += _node_problems(fleet)
    for base, spec in agent_field_sources(fleet):
        for vindex, volume in enumerate(spec.volumes or []):
            hit = volume.sensitive_match()
            if hit and not volume.allow_sensitive:
                problems.append(
                    (
                        (*base, "volumes", vindex, "source"),
                        f"mounting {volume.source!r} exposes {hit} (credentials or host control) "
                        "to the agent; set `allow_sensitive: true` on this volume if you mean it",
                    )
                )
        names: set[str] = set()
        for sindex, secret in enumerate(spec.secrets or []):
            if secret.name in names:
                problems.append(
                    ((*base, "secrets", sindex, "name"), f"secret {secret.name!r} is listed twice")
                )
            names.add(secret.name)
    return problems


def _node_problems(fleet: Fleet) -> list[tuple[Loc, str]]:
    """Node names unique, selectors only with nodes, and every agent fits somewhere."""
    from agentctl_swarm.fleet.placement import PlacementError, place

    problems: list[tuple[Loc, str]] = []
    seen: set[str] = set()
    for index, node in enumerate(fleet.nodes):
        if node.name in seen:
            problems.append((("nodes", index, "name"), f"node {node.name!r} is listed twice"))
        seen.add(node.name)
    if not fleet.nodes:
        for index, agent in enumerate(fleet.agents):
            if agent.node_selector:
                problems.append(
                    (
                        ("agents", index, "node_selector"),
                        "node_selector needs a `nodes:` section to choose from",
                    )
                )
        return problems
    if not problems:
        try:
            place(fleet)
        except PlacementError as exc:
            agent = fleet.agents[exc.index]
            field = "node_selector" if agent.node_selector else "replicas"
            problems.append((("agents", exc.index, field), str(exc)))
    return problems


def agent_field_sources(fleet: Fleet) -> Iterable[tuple[Loc, Defaults | AgentSpec]]:
    """`defaults` and each agent, with their locations: the places per-agent fields live."""
    yield ("defaults",), fleet.defaults
    for index, agent in enumerate(fleet.agents):
        yield ("agents", index), agent


# -- YAML ---------------------------------------------------------------------------------


def _parse_yaml(text: str, filename: str) -> Any:
    yaml = YAML(typ="rt")
    yaml.allow_duplicate_keys = False
    try:
        return yaml.load(text)
    except DuplicateKeyError as exc:
        mark = exc.problem_mark
        key = str(exc.problem).split('"')[1] if '"' in str(exc.problem) else ""
        line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        raise FleetError(
            [Problem(filename, line, col, key, "duplicate key; keep only one")]
        ) from exc
    except MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        what = exc.problem or exc.context or "invalid YAML"
        raise FleetError([Problem(filename, line, col, "", f"YAML syntax error: {what}")]) from exc
    except Exception as exc:  # ruamel raises a few unmarked errors (e.g. bad unicode)
        raise FleetError([Problem(filename, 1, 1, "", f"cannot parse YAML: {exc}")]) from exc


# A fleet file expands to a few thousand values; YAML aliases can make a small file
# expand to billions ("billion laughs"). Expansion stops here, with a located error.
MAX_NODES = 100_000


class _TooBig(Exception):
    pass


def _plain(node: Any, budget: list[int] | None = None) -> Any:
    """ruamel's commented containers as plain dicts/lists for pydantic (bounded size)."""
    budget = budget if budget is not None else [MAX_NODES]
    budget[0] -= 1
    if budget[0] < 0:
        raise _TooBig
    if isinstance(node, CommentedMap):
        return {(k if isinstance(k, str) else str(k)): _plain(v, budget) for k, v in node.items()}
    if isinstance(node, CommentedSeq):
        return [_plain(v, budget) for v in node]
    return node


def _position(tree: Any, loc: Loc, *, key: bool) -> tuple[int, int]:
    """1-based line/column of ``loc``: of its key when ``key``, else of its value.

    Walks as deep as the path exists; a missing tail points at the deepest node found.
    """
    node, line, col = tree, 1, 1
    if hasattr(tree, "lc"):
        line, col = tree.lc.line + 1, tree.lc.col + 1
    for depth, part in enumerate(loc):
        last = depth == len(loc) - 1
        if isinstance(node, CommentedMap) and part in node:
            kline, kcol, vline, vcol = _key_value_marks(node, part)
            line, col = (kline + 1, kcol + 1) if (key and last) else (vline + 1, vcol + 1)
            node = node[part]
        elif isinstance(node, CommentedSeq) and isinstance(part, int) and 0 <= part < len(node):
            iline, icol = node.lc.item(part)
            line, col = iline + 1, icol + 1
            node = node[part]
        else:
            break
    return line, col


def _key_value_marks(node: CommentedMap, key: Any) -> tuple[int, int, int, int]:
    """Where ``key`` and its value stand; a key merged in with ``<<: *anchor`` is found
    in the anchored mapping (ruamel keeps positions only there)."""
    merged = getattr(node, "merge", None) or []
    sources = [m[1] if isinstance(m, tuple) else m for m in merged]
    for source in [node, *sources]:
        try:
            kline, kcol = source.lc.key(key)
            vline, vcol = source.lc.value(key)
            return kline, kcol, vline, vcol
        except (KeyError, TypeError, AttributeError):
            continue
    line, col = (node.lc.line, node.lc.col) if hasattr(node, "lc") else (0, 0)
    return line, col, line, col


def _dotted(loc: Loc) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _located(tree: Any, filename: str, loc: Loc, message: str) -> Problem:
    line, col = _position(tree, loc, key=False)
    return Problem(filename, line, col, _dotted(loc), message)


def _model_at(loc: Loc) -> type[BaseModel] | None:
    """The model class whose fields live at ``loc`` (for "did you mean" suggestions)."""
    model: type[BaseModel] | None = Fleet
    for part in loc:
        if isinstance(part, int):
            continue
        if model is None:
            return None
        fields = {f.alias or n: f for n, f in model.model_fields.items()}
        field = fields.get(str(part))
        model = _field_model(field.annotation) if field else None
    return model


def _field_model(annotation: Any) -> type[BaseModel] | None:
    """The BaseModel inside an annotation like ``X | None`` or ``list[X]``."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()) or ():
        found = _field_model(arg)
        if found is not None:
            return found
    # Annotated[...] keeps its origin in __origin__/__metadata__
    origin = getattr(annotation, "__origin__", None)
    if origin is not None and origin is not annotation:
        return _field_model(origin)
    return None


def _known_keys(model: type[BaseModel]) -> list[str]:
    return [field.alias or name for name, field in model.model_fields.items()]


def _from_pydantic(err: dict[str, Any], tree: Any, filename: str) -> Problem:
    loc = _file_loc(tuple(err["loc"]))
    kind = err["type"]
    # Errors raised by a model validator carry no field; pydantic reports them on the model.
    if kind == "extra_forbidden":
        parent, key = loc[:-1], str(loc[-1])
        line, col = _position(tree, loc, key=True)
        model = _model_at(parent)
        known = _known_keys(model) if model else []
        close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
        hint = (
            f"; did you mean {close[0]!r}?"
            if close
            else (f"; allowed here: {', '.join(sorted(known))}" if known else "")
        )
        return Problem(filename, line, col, _dotted(loc), f"unknown key {key!r}{hint}")
    if kind == "missing":
        line, col = _position(tree, loc[:-1], key=False)
        return Problem(filename, line, col, _dotted(loc), "required field is missing")
    line, col = _position(tree, loc, key=False)
    return Problem(filename, line, col, _dotted(loc), _message(err, loc))


def _got(err: dict[str, Any]) -> str:
    value = err.get("input")
    text = repr(value)
    return f" (got {text if len(text) <= 60 else text[:57] + '...'})"


_PLAIN = {
    "string_type": "must be text (put it in quotes if YAML reads it as something else)",
    "int_type": "must be a whole number",
    "int_parsing": "must be a whole number",
    "int_from_float": "must be a whole number",
    "float_type": "must be a number",
    "float_parsing": "must be a number",
    "finite_number": "must be a finite number",
    "bool_type": "must be true or false",
    "bool_parsing": "must be true or false",
    "list_type": "must be a list (lines starting with '- ')",
}


def _message(err: dict[str, Any], loc: Loc = ()) -> str:
    """pydantic's error in the user's words: what the value must be, and what it was."""
    kind, msg = err["type"], err["msg"]
    ctx = err.get("ctx") or {}
    if kind == "value_error":
        return msg.removeprefix("Value error, ")
    if kind == "literal_error":
        return f"got {err.get('input')!r}; expected {ctx.get('expected', '')}"
    if kind in {"model_type", "dict_type", "model_attributes_type"}:
        model = _model_at(loc)
        keys = f" with keys such as {', '.join(_known_keys(model)[:6])}" if model else ""
        return f"must be a mapping (key: value){keys}" + _got(err)
    if kind in _PLAIN:
        return _PLAIN[kind] + _got(err)
    if kind in {"greater_than_equal", "greater_than", "less_than_equal", "less_than"}:
        words = {
            "greater_than_equal": "at least",
            "greater_than": "more than",
            "less_than_equal": "at most",
            "less_than": "less than",
        }[kind]
        bound = next(iter(ctx.values()), "?")
        return f"must be {words} {bound}" + _got(err)
    if kind == "too_short":
        n = ctx.get("min_length", 1)
        return f"must have at least {n} item{'s' if n != 1 else ''}"
    if kind == "too_long":
        return f"must have at most {ctx.get('max_length')} items"
    return msg


def unique_problems(problems: list[Problem]) -> list[Problem]:
    """The problems in order, each text once (several checks may find the same thing)."""
    seen: dict[str, Problem] = {}
    for problem in problems:
        seen.setdefault(str(problem), problem)
    return list(seen.values())


def _dedupe(problems: list[Problem]) -> list[Problem]:
    """pydantic reports one bad value once per union member; keep the first of each place."""
    seen: dict[tuple[int, int, str], Problem] = {}
    for problem in problems:
        seen.setdefault((problem.line, problem.column, problem.field), problem)
    return list(seen.values())


# pydantic names union members in error locations (``memory.str``, ``memory.int``,
# ``x.function-after[...]``); they are not keys of the file.
_UNION_TAG = re.compile(
    r"^(str|int|float|bool|none|(list|dict|tuple|set|literal|function-\w+)\[.*\])$"
)


def _file_loc(loc: tuple[Any, ...]) -> Loc:
    """The part of a pydantic error location that names places in the YAML file."""
    return tuple(p for p in loc if not (isinstance(p, str) and _UNION_TAG.match(p)))
