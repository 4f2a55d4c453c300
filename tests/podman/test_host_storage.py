"""The doctor's storage fix and its failure paths, with a stand-in `podman` on PATH.

The real path (a fresh user's vfs store moved to native overlay) runs in
tests/rootless/test_as_user.py against real rootless Podman. What cannot be provoked
there is a file system overlay cannot stack on (a container's own overlay root without
/dev/fuse, as in the Lima provisioning test): the stand-in plays Podman refusing overlay
exactly as it words it, so the fallback (record vfs and why, never retry) is exercised.
"""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

import pytest

from agentctl_swarm.podman.host import (
    ActionFailed,
    UseOverlayStorage,
    _opens_rw,
    _runtime_dir_ok,
    _use_overlay,
    diagnose,
    storage_candidates,
)
from tests.podman.test_host_diagnose import ROOTLESS, ROOTLESS_FACTS

REFUSAL = "Error: kernel does not support overlay fs: 'overlay' is not supported over overlayfs"

# $STUB_CONF is the storage.conf the doctor writes; $STUB_MODE picks the behaviour.
STUB = f"""#!/bin/sh
echo "$*" >> "$STUB_LOG"
case "$1 $2" in
  "system reset") [ "$STUB_MODE" = reset-fails ] && {{ echo "Error: reset refused" >&2; exit 125; }}; exit 0 ;;
  "info --format")
    [ "$STUB_MODE" = broken ] && {{ echo "Error: nothing works" >&2; exit 125; }}
    if grep -q 'driver = "overlay"' "$STUB_CONF" 2>/dev/null; then
      if [ "$STUB_MODE" = native-works ] && ! grep -q mount_program "$STUB_CONF"; then
        echo overlay; exit 0
      fi
      echo "{REFUSAL}" >&2; exit 125
    fi
    echo vfs ;;
esac
"""


@pytest.fixture
def stub(tmp_path, monkeypatch):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    podman = bin_dir / "podman"
    podman.write_text(STUB)
    podman.chmod(0o755)
    conf = tmp_path / "config" / "containers" / "storage.conf"
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    monkeypatch.setenv("STUB_CONF", str(conf))
    monkeypatch.setenv("STUB_LOG", str(tmp_path / "calls"))

    def action(mode: str) -> UseOverlayStorage:
        monkeypatch.setenv("STUB_MODE", mode)
        return UseOverlayStorage(conf, storage_candidates((6, 1), "/usr/bin/fuse-overlayfs"))

    action.conf = conf  # type: ignore[attr-defined]
    action.calls = lambda: (tmp_path / "calls").read_text().splitlines()  # type: ignore[attr-defined]
    return action


def test_native_overlay_is_taken_when_podman_can_use_it(stub):
    line = _use_overlay(stub("native-works"))
    assert line == f"switched the empty store from vfs to overlay (native): wrote {stub.conf}"
    assert stub.calls()[0] == "system reset --force"  # reset while the config says vfs
    assert 'driver = "overlay"' in stub.conf.read_text()
    assert "mount_program" not in stub.conf.read_text()


def test_where_overlay_cannot_work_vfs_is_recorded_with_podmans_words_and_not_retried(stub):
    line = _use_overlay(stub("overlay-refused"))
    assert line.startswith("kept vfs: overlay does not work for this store (native: Error: kernel")
    assert "fuse-overlayfs: Error: kernel does not support overlay fs" in line
    text = stub.conf.read_text()
    assert 'driver = "vfs"' in text and "'overlay' is not supported over overlayfs" in text
    # next run: the file exists, so the doctor only warns (and never resets again)
    diag = diagnose(replace(ROOTLESS, engine=replace(ROOTLESS_FACTS, graph_driver="vfs"),
                            store_empty=True, storage_conf_exists=True))  # fmt: skip
    assert diag.actions == ()


def test_when_even_vfs_fails_the_file_is_removed_and_the_failure_raised(stub):
    with pytest.raises(ActionFailed) as err:
        _use_overlay(stub("broken"))
    assert "does not work with vfs either" in str(err.value)
    assert not stub.conf.exists()


def test_a_failing_reset_changes_nothing_and_shows_the_file_to_write(stub):
    with pytest.raises(ActionFailed) as err:
        _use_overlay(stub("reset-fails"))
    assert "`podman system reset --force` failed: Error: reset refused" in str(err.value)
    assert 'driver = "overlay"' in (err.value.hint or "")
    assert not stub.conf.exists()


def test_runtime_dir_and_device_observations(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    assert _runtime_dir_ok(os.getuid())
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path / "absent"))
    assert not _runtime_dir_ok(os.getuid())
    monkeypatch.delenv("XDG_RUNTIME_DIR")
    # /run/user/UID must exist and be the user's (Podman's own rule)
    assert _runtime_dir_ok(os.getuid()) == (
        Path(f"/run/user/{os.getuid()}").is_dir()
        and Path(f"/run/user/{os.getuid()}").stat().st_uid == os.getuid()
    )
    assert _opens_rw(tmp_path / "absent") is False
    (tmp_path / "f").write_text("")
    assert _opens_rw(tmp_path / "f") is True
