"""Pure diagnosis of the host (agentctl_swarm.podman.host.diagnose): facts in, fixes out.

Each problem the doctor knows is fed in as an Observation and must come out as the right
finding and the right action; a healthy host must yield no action at all.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from agentctl_swarm.podman.engine import EngineFacts
from agentctl_swarm.podman.host import (
    AddSubids,
    InstallPackages,
    Observation,
    ProbeResult,
    ShareRootMount,
    StartApiService,
    UseOverlayStorage,
    WriteDropin,
    classify_probe,
    diagnose,
    parse_cgroup_mode,
    parse_kernel,
    parse_root_propagation,
    read_conf_values,
    render_dropin,
    storage_candidates,
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


# -- rootless Podman (a non-root user) ----------------------------------------------------
# The engine facts come from `podman info` (see tests/podman/test_engine.py for the parse).

ROOTLESS_FACTS = EngineFacts(
    rootless=True,
    cgroup_version="v2",
    cgroup_controllers=frozenset({"cpu", "cpuset", "io", "memory", "pids"}),
    graph_driver="overlay",
    slirp4netns="/usr/bin/slirp4netns",
    subordinate_ids=True,
)
ROOTLESS = replace(
    HEALTHY,
    is_root=False,
    cgroup_mode="v2",
    runtime="crun",
    runtimes_installed=("crun",),
    dropin_path=Path("/home/u/.config/containers/containers.conf.d/50-agentctl.conf"),
    dropin_content=None,
    configured_ulimits={},
    socket_url="unix:///run/user/1000/podman/podman.sock",
    engine=ROOTLESS_FACTS,
    user="u",
    uid=1000,
    kernel=(6, 1),
    storage_conf=Path("/home/u/.config/containers/storage.conf"),
)


def finding(diag, check):
    return next(f for f in diag.findings if f.check == check)


def test_healthy_rootless_host_changes_nothing():
    diag = diagnose(ROOTLESS)
    assert diag.actions == () and diag.healthy
    assert checks(diag, "ok") >= {"storage", "limits", "userns", "network", "mounts", "socket"}
    assert checks(diag, "warning") == set()


def test_limits_rootless_on_cgroup_v1_are_a_problem_unless_opted_out():
    v1 = replace(ROOTLESS, engine=replace(ROOTLESS_FACTS, cgroup_version="v1",
                                          cgroup_controllers=frozenset()))  # fmt: skip
    diag = diagnose(v1)
    limits = finding(diag, "limits")
    assert limits.severity == "problem" and not diag.healthy
    assert "rootless Podman on cgroup v1 cannot apply memory/CPU/pids limits" in limits.message
    assert "systemd.unified_cgroup_hierarchy=1" in limits.hint
    assert "AGENTCTL_ALLOW_UNENFORCED_LIMITS=1" in limits.hint
    opted = diagnose(v1, allow_unenforced=True)
    assert finding(opted, "limits").severity == "warning" and opted.healthy
    assert "WITHOUT limits" in finding(opted, "limits").message
    assert "AGENTCTL_ALLOW_UNENFORCED_LIMITS" not in finding(opted, "limits").hint


def test_limits_cgroup_v2_without_delegation_names_the_missing_controllers():
    partial = replace(ROOTLESS, engine=replace(ROOTLESS_FACTS,
                      cgroup_controllers=frozenset({"memory", "pids"})))  # fmt: skip
    limits = finding(diagnose(partial), "limits")
    assert limits.severity == "problem"
    assert "controllers cpu are not delegated" in limits.message
    assert "Delegate=cpu cpuset io memory pids" in limits.hint


def test_rootless_without_subordinate_ids_or_runtime_dir_names_the_root_fixes():
    bare = replace(ROOTLESS, engine=replace(ROOTLESS_FACTS, subordinate_ids=False),
                   runtime_dir_ok=False, socket_ok=False)  # fmt: skip
    diag = diagnose(bare)
    assert finding(diag, "userns").severity == "problem"
    assert "usermod --add-subuids" in finding(diag, "userns").hint
    rundir = finding(diag, "rundir")
    assert rundir.severity == "problem" and "/run/user/1000" in rundir.hint
    # the socket lives in the missing directory: no service is started there
    assert "cannot be started: /run/user/1000 is missing" in finding(diag, "socket").message
    assert not any(isinstance(a, StartApiService) for a in diag.actions)


def test_bridge_networking_needs_slirp4netns_and_dev_net_tun_a_warning():
    diag = diagnose(replace(ROOTLESS, engine=replace(ROOTLESS_FACTS, slirp4netns=""),
                            tun_usable=False))  # fmt: skip
    network = finding(diag, "network")
    assert network.severity == "warning" and diag.healthy
    assert "slirp4netns is not installed (sudo apt-get install slirp4netns)" in network.message
    assert "sudo chmod 0666 /dev/net/tun" in network.message
    assert "network: host" in network.hint


def test_a_private_root_mount_is_a_warning_with_the_command():
    mounts = finding(diagnose(replace(ROOTLESS, root_propagation="private")), "mounts")
    assert mounts.severity == "warning"
    assert "`/` is a private mount" in mounts.message
    assert "sudo mount --make-rshared /" in mounts.hint


def test_an_empty_vfs_store_is_moved_to_overlay_native_first():
    vfs = replace(ROOTLESS, engine=replace(ROOTLESS_FACTS, graph_driver="vfs"),
                  store_empty=True, fuse_overlayfs="/usr/bin/fuse-overlayfs")  # fmt: skip
    diag = diagnose(vfs)
    assert finding(diag, "storage").severity == "warning" and diag.healthy
    (action,) = diag.actions
    assert isinstance(action, UseOverlayStorage) and action.path == ROOTLESS.storage_conf
    assert [label for label, _ in action.candidates] == ["native", "fuse-overlayfs"]
    assert 'mount_program = "/usr/bin/fuse-overlayfs"' in action.candidates[1][1]
    # an old kernel: only fuse-overlayfs; without it, only a hint
    old = replace(vfs, kernel=(5, 10))
    assert [label for label, _ in diagnose(old).actions[0].candidates] == ["fuse-overlayfs"]
    neither = diagnose(replace(old, fuse_overlayfs=None))
    assert neither.actions == ()
    assert "sudo apt-get install fuse-overlayfs" in finding(neither, "storage").hint


def test_a_vfs_store_that_holds_something_or_was_chosen_is_never_reset():
    vfs = replace(ROOTLESS, engine=replace(ROOTLESS_FACTS, graph_driver="vfs"), store_empty=True)
    for obs, why in (
        (replace(vfs, store_empty=False), "the store is not empty"),
        (replace(vfs, storage_conf_exists=True), "storage.conf exists"),
        (replace(vfs, storage_override="/tmp/s.conf"), "CONTAINERS_STORAGE_CONF=/tmp/s.conf"),
    ):
        diag = diagnose(obs)
        assert diag.actions == ()
        hint = finding(diag, "storage").hint
        assert why in hint and "it DELETES this user's containers, images and volumes" in hint


def test_rootful_vfs_is_a_warning_with_the_system_file():
    diag = diagnose(replace(HEALTHY, engine=replace(ROOTLESS_FACTS, rootless=False,
                                                    graph_driver="vfs")))  # fmt: skip
    assert "/etc/containers/storage.conf" in finding(diag, "storage").hint
    assert diag.actions == ()


def test_root_propagation_and_kernel_parsing():
    private = "27 1 254:0 / / rw,relatime - ext4 /dev/vda rw\n"
    shared = "67 65 254:0 / / rw,relatime shared:2 - ext4 /dev/vda rw\n"
    slave = "67 65 254:0 / / rw,relatime master:1 - ext4 /dev/vda rw\n"
    proc = "22 27 0:21 / /proc rw,relatime shared:5 - proc proc rw\n"
    assert parse_root_propagation(private + proc) == "private"
    assert parse_root_propagation(shared) == "shared"
    assert parse_root_propagation(slave) == "slave"
    assert parse_root_propagation(shared + private) == "private"  # the top mount wins
    assert parse_kernel("6.18.44-fc-v657") == (6, 18)
    assert parse_kernel("5.10.0-28-amd64") == (5, 10)
    assert parse_kernel("weird") == (0, 0)
    assert [label for label, _ in storage_candidates((5, 13), None)] == ["native"]


def test_a_private_root_mount_is_made_shared_by_root():
    diag = diagnose(replace(HEALTHY, engine=replace(ROOTLESS_FACTS, rootless=False),
                            root_propagation="private"))  # fmt: skip
    mounts = finding(diag, "mounts")
    assert mounts.severity == "problem" and "device or resource busy" in mounts.message
    assert diag.actions == (ShareRootMount(),)
    assert diag.actions[0].describe() == "mount --make-rshared /"
