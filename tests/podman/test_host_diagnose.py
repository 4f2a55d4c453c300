"""Pure diagnosis of the host (agentctl_swarm.podman.host.diagnose): facts in, fixes out.

Each problem the doctor knows is fed in as an Observation and must come out as the right
finding and the right action; a healthy host must yield no action at all.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from agentctl_swarm.podman.host import (
    AddSubids,
    InstallPackages,
    Observation,
    ProbeResult,
    StartApiService,
    WriteDropin,
    classify_probe,
    diagnose,
    parse_cgroup_mode,
    read_conf_values,
    render_dropin,
)

DROPIN = Path("/etc/containers/containers.conf.d/50-agentctl.conf")
HAND_WRITTEN = (
    "[containers]\n"
    'default_ulimits = ["nofile=20000:20000", "nproc=4096:4096"]\n'
    "[engine]\n"
    'runtime = "runc"\n'
)

# The machine this project was developed on, after the manual fixes: healthy.
HEALTHY = Observation(
    is_root=True,
    podman_path="/usr/bin/podman",
    podman_version="4.3.1",
    apt_available=True,
    cgroup_mode="hybrid",
    runtime="runc",
    runtimes_installed=("runc",),
    rlimit_hard={"nofile": 20000, "nproc": 96365},
    can_raise_rlimits=False,
    configured_ulimits={"nofile": (20000, 20000), "nproc": (4096, 4096)},
    dropin_path=DROPIN,
    dropin_content=HAND_WRITTEN,
    socket_url="unix:///run/podman/podman.sock",
    socket_ok=True,
    probe=ProbeResult("localhost/agentctl-agent:latest", True),
)


def checks(diag, severity="problem"):
    return {f.check for f in diag.findings if f.severity == severity}


def test_healthy_host_changes_nothing():
    diag = diagnose(HEALTHY)
    assert diag.actions == ()
    assert diag.healthy
    assert checks(diag, "ok") == {"podman", "runtime", "rlimits", "socket"}


def test_missing_podman_is_installed_first_when_allowed():
    obs = replace(HEALTHY, podman_path=None, podman_version=None, runtime=None, socket_ok=False)
    diag = diagnose(obs)
    assert isinstance(diag.actions[0], InstallPackages)
    assert {"podman", "runc"} <= set(diag.actions[0].packages)
    assert "podman" in checks(diag)


def test_missing_podman_with_no_install_gives_a_hint_only():
    obs = replace(HEALTHY, podman_path=None, runtime=None)
    diag = diagnose(obs, allow_install=False)
    assert not any(isinstance(a, InstallPackages) for a in diag.actions)
    finding = next(f for f in diag.problems if f.check == "podman")
    assert "--no-install" in finding.message
    assert "apt-get install" in finding.hint


def test_missing_podman_without_root_or_apt_is_not_installed():
    for obs in (
        replace(HEALTHY, podman_path=None, is_root=False),
        replace(HEALTHY, podman_path=None, apt_available=False),
    ):
        diag = diagnose(obs)
        assert not any(isinstance(a, InstallPackages) for a in diag.actions)
        assert "podman" in checks(diag)


def test_podman_info_failure_is_reported_without_guessing_a_fix():
    diag = diagnose(replace(HEALTHY, podman_error="cannot connect to storage"))
    assert "podman" in checks(diag)
    assert diag.actions == ()


def test_crun_on_hybrid_cgroups_switches_to_runc():
    obs = replace(HEALTHY, runtime="crun", runtimes_installed=("crun", "runc"))
    diag = diagnose(obs)
    assert "runtime" in checks(diag)
    (write,) = [a for a in diag.actions if isinstance(a, WriteDropin)]
    assert read_conf_values([write.content])[0] == "runc"
    assert not any(isinstance(a, InstallPackages) for a in diag.actions)


def test_crun_on_hybrid_without_runc_installs_runc():
    obs = replace(HEALTHY, runtime="crun", runtimes_installed=("crun",), dropin_content=None)
    diag = diagnose(obs)
    assert diag.actions[0] == InstallPackages(("runc",))
    assert isinstance(diag.actions[1], WriteDropin)


def test_crun_on_pure_cgroup_v2_is_fine():
    obs = replace(HEALTHY, runtime="crun", cgroup_mode="v2", runtimes_installed=("crun",))
    assert diagnose(obs).actions == ()


def test_crun_failing_probe_is_recognised_even_when_cgroups_look_fine():
    probe = ProbeResult(
        "img",
        False,
        "crun: cgroups in hybrid mode not supported, drop all controllers from cgroupv2",
    )
    obs = replace(HEALTHY, runtime="crun", cgroup_mode="unknown", probe=probe)
    assert "runtime" in checks(diagnose(obs))


def test_rlimits_above_host_hard_limits_get_capped_in_the_dropin():
    obs = replace(HEALTHY, configured_ulimits={}, dropin_content=None)
    diag = diagnose(obs)
    assert "rlimits" in checks(diag)
    (write,) = diag.actions
    assert isinstance(write, WriteDropin) and write.path == DROPIN
    _, ulimits = read_conf_values([write.content])
    assert ulimits == {"nofile": (20000, 20000), "nproc": (4096, 4096)}


def test_configured_ulimit_above_the_hard_limit_is_a_problem():
    obs = replace(HEALTHY, configured_ulimits={"nofile": (65536, 65536), "nproc": (4096, 4096)})
    diag = diagnose(obs)
    finding = next(f for f in diag.problems if f.check == "rlimits")
    assert "65536" in finding.message and "20000" in finding.message
    assert any(isinstance(a, WriteDropin) for a in diag.actions)


def test_rlimits_are_no_problem_with_cap_sys_resource_or_rootless():
    for obs in (
        replace(HEALTHY, configured_ulimits={}, can_raise_rlimits=True),
        replace(HEALTHY, configured_ulimits={}, is_root=False),
        replace(HEALTHY, configured_ulimits={}, rlimit_hard={"nofile": 2**20, "nproc": 2**21}),
    ):
        assert "rlimits" not in checks(diagnose(obs))


def test_rlimit_failure_seen_by_the_probe_is_fixed():
    probe = ProbeResult("img", False, "error setting rlimit type 7: operation not permitted")
    obs = replace(HEALTHY, can_raise_rlimits=True, probe=probe, configured_ulimits={})
    diag = diagnose(obs)
    assert "rlimits" in checks(diag)
    assert any(isinstance(a, WriteDropin) for a in diag.actions)


def test_fixing_ulimits_keeps_the_runtime_already_in_our_dropin():
    old = render_dropin("runc", {})
    obs = replace(HEALTHY, configured_ulimits={}, dropin_content=old)
    (write,) = diagnose(obs).actions
    runtime, ulimits = read_conf_values([write.content])
    assert runtime == "runc" and set(ulimits) == {"nofile", "nproc"}


def test_applying_the_fix_makes_the_host_healthy():
    """Idempotence: the observation after writing the drop-in needs no further action."""
    obs = replace(HEALTHY, runtime="crun", configured_ulimits={}, dropin_content=None)
    (write,) = [a for a in diagnose(obs).actions if isinstance(a, WriteDropin)]
    runtime, ulimits = read_conf_values([write.content])
    after = replace(obs, runtime=runtime, configured_ulimits=ulimits, dropin_content=write.content)
    assert diagnose(after).actions == ()


def test_containers_conf_override_means_no_dropin_but_a_hint():
    obs = replace(HEALTHY, configured_ulimits={}, conf_override="/tmp/my.conf")
    diag = diagnose(obs)
    assert not any(isinstance(a, WriteDropin) for a in diag.actions)
    finding = next(f for f in diag.problems if f.check == "config")
    assert "/tmp/my.conf" in finding.message and "nofile=20000:20000" in finding.hint


def test_non_root_cannot_write_the_system_dropin():
    obs = replace(HEALTHY, runtime="crun", is_root=False, dropin_content=None)
    diag = diagnose(obs)
    assert not any(isinstance(a, WriteDropin) for a in diag.actions)
    assert "config" in checks(diag)


def test_dead_socket_is_started_after_the_dropin():
    obs = replace(HEALTHY, socket_ok=False, configured_ulimits={}, dropin_content=None)
    actions = diagnose(obs).actions
    assert [type(a) for a in actions] == [WriteDropin, StartApiService]
    assert actions[1] == StartApiService("unix:///run/podman/podman.sock", "process")


def test_socket_start_uses_systemd_where_it_runs():
    diag = diagnose(replace(HEALTHY, socket_ok=False, systemd=True))
    assert diag.actions == (StartApiService("unix:///run/podman/podman.sock", "systemd"),)
    assert "systemctl enable --now podman.socket" in diag.actions[0].describe()


def test_custom_socket_path_starts_a_service_process_even_with_systemd():
    obs = replace(HEALTHY, socket_ok=False, systemd=True, socket_url="unix:///tmp/x/api.sock")
    assert diagnose(obs).actions == (StartApiService("unix:///tmp/x/api.sock", "process"),)


def test_non_unix_endpoint_that_is_down_is_reported_not_started():
    diag = diagnose(replace(HEALTHY, socket_ok=False, socket_url="tcp://127.0.0.1:8888"))
    assert diag.actions == ()
    assert "socket" in checks(diag)


def test_cgroup_mode_from_mounts():
    v2 = "cgroup2 /sys/fs/cgroup cgroup2 rw,nosuid 0 0\n"
    hybrid = (
        "tmpfs /sys/fs/cgroup tmpfs ro 0 0\n"
        "cgroup2 /sys/fs/cgroup/unified cgroup2 rw 0 0\n"
        "cgroup /sys/fs/cgroup/memory cgroup rw,memory 0 0\n"
    )
    v1 = "tmpfs /sys/fs/cgroup tmpfs ro 0 0\ncgroup /sys/fs/cgroup/pids cgroup rw,pids 0 0\n"
    assert parse_cgroup_mode(v2) == "v2"
    assert parse_cgroup_mode(hybrid) == "hybrid"
    assert parse_cgroup_mode(v1) == "v1"
    assert parse_cgroup_mode("") == "unknown"


def test_conf_files_merge_later_wins_and_bad_toml_is_skipped():
    runtime, ulimits = read_conf_values(
        [
            '[engine]\nruntime = "crun"\n[containers]\ndefault_ulimits = ["nofile=1:2"]\n',
            "this is [not toml",
            '[engine]\nruntime = "runc"\n',
        ]
    )
    assert runtime == "runc" and ulimits == {"nofile": (1, 2)}


def test_rendered_dropin_is_stable_and_reads_back():
    a = render_dropin("runc", {"nproc": (4096, 4096), "nofile": (20000, 20000)})
    b = render_dropin("runc", {"nofile": (20000, 20000), "nproc": (4096, 4096)})
    assert a == b
    assert read_conf_values([a]) == ("runc", {"nofile": (20000, 20000), "nproc": (4096, 4096)})


def test_probe_output_classification():
    assert classify_probe("error setting rlimit type 7: operation not permitted") == "rlimit"
    assert classify_probe("crun: cgroups in hybrid mode not supported") == "runtime"
    assert classify_probe("no space left on device") == "other"


def test_missing_subordinate_ids_for_user_namespaces_are_added():
    lacking = replace(
        HEALTHY, subid_files={"/etc/subuid": "cloudsdk:100000:65536\n", "/etc/subgid": ""}
    )
    diag = diagnose(lacking)
    assert "userns" in checks(diag)
    (action,) = [a for a in diag.actions if isinstance(a, AddSubids)]
    assert action.paths == (Path("/etc/subgid"), Path("/etc/subuid"))
    assert action.line.startswith("containers:")
    present = {p: "containers:2147483647:2147483648\n" for p in ("/etc/subuid", "/etc/subgid")}
    assert "userns" in checks(diagnose(replace(HEALTHY, subid_files=present)), "ok")
    assert "userns" not in checks(diagnose(replace(lacking, is_root=False)))
