"""What Podman's Quadlet generator makes of our units, for hosts that lack it.

This machine runs Podman 4.3 (no Quadlet; it arrived in 4.4, and the keys the exporter
uses in 4.7), so the tests derive the ``.service`` files the generator would write and
hand those to ``systemd-analyze verify``. The derivation follows Quadlet 4.7's
``ConvertContainer``/``ConvertVolume`` for the keys the exporter writes: which keys are
taken as written (Image, Volume, Network, ...), which are split into words with systemd's
unquoting (Exec, Secret, PodmanArgs) and which are KEY=VALUE lists (Environment, Label),
and the fixed flags and service settings every unit gets. Test code, not product.
"""

from __future__ import annotations

from dataclasses import dataclass

# Quadlet's documented keys (podman-systemd.unit(5) of Podman 4.7.0, the "### `Key=`"
# entries of the [Container] and [Volume] sections), as data.
CONTAINER_KEYS = frozenset(
    """AddCapability AddDevice Annotation AutoUpdate ContainerName DNS DNSOption DNSSearch
    DropCapability Environment EnvironmentFile EnvironmentHost Exec ExposeHostPort Group
    HealthCmd HealthInterval HealthOnFailure HealthRetries HealthStartPeriod HealthStartupCmd
    HealthStartupInterval HealthStartupRetries HealthStartupSuccess HealthStartupTimeout
    HealthTimeout HostName IP IP6 Image Label LogDriver Mount Network NoNewPrivileges Notify
    PidsLimit PodmanArgs PublishPort Pull ReadOnly Rootfs RunInit SeccompProfile Secret
    SecurityLabelDisable SecurityLabelFileType SecurityLabelLevel SecurityLabelNested
    SecurityLabelType ShmSize Sysctl Timezone Tmpfs Ulimit User UserNS VolatileTmp Volume
    WorkingDir""".split()  # noqa: SIM905 (the doc's list, kept readable)
)
VOLUME_KEYS = frozenset(
    ("Copy", "Device", "Group", "Label", "Options", "PodmanArgs", "Type", "User", "VolumeName")
)
INSTALL_KEYS = frozenset({"Alias", "WantedBy", "RequiredBy"})
PODMAN = "/usr/bin/podman"


@dataclass
class Unit:
    name: str
    entries: list[tuple[str, str, str]]  # (section, key, raw value)

    def all(self, section: str, key: str) -> list[str]:
        return [v for s, k, v in self.entries if s == section and k == key]

    def last(self, section: str, key: str) -> str | None:
        values = self.all(section, key)
        return values[-1] if values else None

    def sections(self) -> list[str]:
        return list(dict.fromkeys(s for s, _, _ in self.entries))


def parse_unit(name: str, text: str) -> Unit:
    entries: list[tuple[str, str, str]] = []
    section = ""
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1]
            continue
        key, sep, value = line.partition("=")
        assert sep, f"{name}: not KEY=VALUE: {line!r}"
        entries.append((section, key.strip(), value.strip()))
    return Unit(name, entries)


_ESCAPES = {"a": "\a", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v"}


def split_words(text: str) -> list[str]:
    """systemd's extract_first_word(RELAX | UNQUOTE | CUNESCAPE), for what we write."""
    words: list[str] = []
    i, n = 0, len(text)
    while i < n:
        while i < n and text[i].isspace():
            i += 1
        if i >= n:
            break
        word: list[str] = []
        quote = None
        while i < n:
            c = text[i]
            if quote is None and c.isspace():
                break
            if c == "\\" and i + 1 < n:
                nxt = text[i + 1]
                if nxt == "x":
                    word.append(chr(int(text[i + 2 : i + 4], 16)))
                    i += 4
                    continue
                word.append(_ESCAPES.get(nxt, nxt))
                i += 2
                continue
            if quote is None and c in "\"'":
                quote = c
            elif c == quote:
                quote = None
            else:
                word.append(c)
            i += 1
        words.append("".join(word))
    return words


def key_values(values: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for value in values:
        for word in split_words(value):
            key, sep, val = word.partition("=")
            if sep:
                out[key] = val
    return out


def systemd_literal(word: str) -> str:
    """What systemd makes of a word of ExecStart= (no variables or specifiers left)."""
    out, i = [], 0
    while i < len(word):
        c = word[i]
        if c in "$%":
            assert word[i + 1 : i + 2] == c, f"unescaped {c!r} in {word!r}"
            i += 2
        else:
            i += 1
        out.append(c)
    return "".join(out)


def podman_argv(unit: Unit, volume_names: dict[str, str]) -> list[str]:
    """The `podman run` argv Quadlet 4.7 writes into ExecStart= (before systemd's pass)."""
    c = "Container"
    argv = [PODMAN, "run", f"--name={unit.last(c, 'ContainerName')}"]
    argv += ["--cidfile=%t/%N.cid", "--replace", "--rm", "--cgroups=split"]
    argv += [f"--network={n}" for n in unit.all(c, "Network")]
    argv += ["--sdnotify=conmon", "-d"]
    if unit.last(c, "NoNewPrivileges") == "true":
        argv.append("--security-opt=no-new-privileges")
    if (pids := unit.last(c, "PidsLimit")) is not None:
        argv += ["--pids-limit", pids]
    for caps in unit.all(c, "DropCapability"):
        argv += [f"--cap-drop={cap.lower()}" for cap in split_words(caps)]
    if unit.last(c, "User") is not None:
        argv += ["--user", f"{unit.last(c, 'User')}:{unit.last(c, 'Group')}"]
    if (userns := unit.last(c, "UserNS")) is not None:
        argv += ["--userns", userns]
    for tmpfs in unit.all(c, "Tmpfs"):
        argv += ["--tmpfs", tmpfs]
    for volume in unit.all(c, "Volume"):
        source, _, rest = volume.partition(":")
        argv += ["-v", f"{volume_names.get(source, source)}:{rest}"]
    for key, value in key_values(unit.all(c, "Environment")).items():
        argv += ["--env", f"{key}={value}"]
    for key, value in key_values(unit.all(c, "Label")).items():
        argv += ["--label", f"{key}={value}"]
    for secret in unit.all(c, "Secret"):
        argv += ["--secret", *split_words(secret)]
    if (host := unit.last(c, "HostName")) is not None:
        argv += ["--hostname", host]
    for args in unit.all(c, "PodmanArgs"):
        argv += split_words(args)
    argv.append(unit.last(c, "Image") or "")
    argv += split_words(unit.last(c, "Exec") or "")
    return argv


def escape_words(words: list[str]) -> str:
    """Quadlet's escapeWords: double-quote a word with blanks, quotes or backslashes."""
    out = []
    for word in words:
        if any(c.isspace() or c in "\"'\\" or ord(c) < 32 for c in word):
            body = word.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
            out.append(f'"{body}"')
        else:
            out.append(word)
    return " ".join(out)


def _passthrough(unit: Unit, section: str) -> list[str]:
    return [f"{k}={v}" for s, k, v in unit.entries if s == section]


def container_service(unit: Unit, volume_names: dict[str, str]) -> str:
    """The .service Quadlet 4.7 generates for a .container unit."""
    requires = [
        f"{v.removesuffix('.volume')}-volume.service"
        for v in (x.partition(":")[0] for x in unit.all("Container", "Volume"))
        if v.endswith(".volume")
    ]
    lines = ["[Unit]", *_passthrough(unit, "Unit"), "RequiresMountsFor=%t/containers"]
    for dep in requires:
        lines += [f"Requires={dep}", f"After={dep}"]
    lines += [
        "",
        "[Service]",
        *_passthrough(unit, "Service"),
        "Environment=PODMAN_SYSTEMD_UNIT=%n",
        "KillMode=mixed",
        "ExecStop=/usr/bin/podman rm -f -i --cidfile=%t/%N.cid",
        "ExecStopPost=-/usr/bin/podman rm -f -i --cidfile=%t/%N.cid",
        "Delegate=yes",
        "Type=notify",
        "NotifyAccess=all",
        "SyslogIdentifier=%N",
        "ExecStart=" + escape_words(podman_argv(unit, volume_names)),
        "",
        "[Install]",
        *_passthrough(unit, "Install"),
    ]
    return "\n".join(lines) + "\n"


def volume_service(unit: Unit) -> str:
    """The .service Quadlet 4.7 generates for a .volume unit (`volume create --ignore`)."""
    name = unit.last("Volume", "VolumeName")
    argv = [PODMAN, "volume", "create", "--ignore"]
    for key, value in key_values(unit.all("Volume", "Label")).items():
        argv += ["--label", f"{key}={value}"]
    argv.append(name or "")
    lines = [
        "[Unit]",
        *_passthrough(unit, "Unit"),
        "RequiresMountsFor=%t/containers",
        "",
        "[Service]",
        "ExecStart=" + escape_words(argv),
        "Type=oneshot",
        "RemainAfterExit=yes",
        "SyslogIdentifier=%N",
    ]
    return "\n".join(lines) + "\n"
