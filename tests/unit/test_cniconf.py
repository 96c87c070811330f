"""The CNI config the agent installs: upstream's shapes, exclusive renames, custom and read
configs; and the installer on a real directory."""

from __future__ import annotations

import dataclasses
import json
import os
import stat
from pathlib import Path

from pylium.agent.cniconf import install, uninstall
from pylium.core.cniconf import plan, render
from pylium.model.config import AgentSettings, CNIChainingMode


def test_render_none_and_portmap() -> None:
    plain = json.loads(render(log_file="/var/run/cilium/cilium-cni.log"))
    assert plain["cniVersion"] == "0.3.1" and plain["name"] == "cilium"
    assert plain["plugins"] == [
        {"type": "cilium-cni", "enable-debug": False, "log-file": "/var/run/cilium/cilium-cni.log"}
    ]
    chained = json.loads(render(chaining_mode="portmap"))
    assert chained["name"] == "portmap"
    assert [p["type"] for p in chained["plugins"]] == ["cilium-cni", "portmap"]
    assert chained["plugins"][1]["capabilities"] == {"portMappings": True}


def test_plan_exclusive_custom_and_legacy() -> None:
    files = [
        "05-cilium.conflist",
        "10-flannel.conflist",
        "87-podman.conflist",
        "x.json",
        "notes.txt",
        "old.conf.cilium_bak",
        "05-cilium.conf",
    ]
    exclusive = plan(
        target_name="05-cilium.conflist",
        existing=files,
        custom=False,
        exclusive=True,
        generated="G",
    )
    assert exclusive.content == "G"
    assert dict(exclusive.renames) == {
        "05-cilium.conf": "05-cilium.conf.cilium_bak",
        "10-flannel.conflist": "10-flannel.conflist.cilium_bak",
        "87-podman.conflist": "87-podman.conflist.cilium_bak",
        "x.json": "x.json.cilium_bak",
    }
    shared = plan(
        target_name="05-cilium.conflist",
        existing=files,
        custom=False,
        exclusive=False,
        generated="G",
    )
    assert shared.renames == (("05-cilium.conf", "05-cilium.conf.cilium_bak"),)
    assert (
        plan(target_name="t", existing=[], custom=True, exclusive=False, generated="G").content
        is None
    )
    assert (
        plan(
            target_name="t",
            existing=[],
            custom=False,
            exclusive=False,
            generated="G",
            read_conf="R",
        ).content
        == "R"
    )


def test_install_on_a_directory(tmp_path: Path) -> None:
    netd = tmp_path / "net.d"
    netd.mkdir()
    (netd / "87-podman-bridge.conflist").write_text("{}")
    settings = dataclasses.replace(
        AgentSettings(),
        write_cni_conf_when_ready=str(netd / "05-cilium.conflist"),
        cni_chaining_mode=CNIChainingMode.PORTMAP,
        cni_uninstall=True,
    )
    written = install(settings, tmp_path / "agent.sock")
    assert written == netd / "05-cilium.conflist"
    conf = json.loads(written.read_text())
    assert conf["plugins"][0]["socket-path"] == str(tmp_path / "agent.sock")
    assert stat.S_IMODE(os.stat(written).st_mode) == 0o600
    assert sorted(os.listdir(netd)) == [
        "05-cilium.conflist",
        "87-podman-bridge.conflist.cilium_bak",
    ]

    custom_src = tmp_path / "mine.conflist"
    custom_src.write_text('{"cniVersion": "1.0.0", "name": "mine", "plugins": []}')
    read = dataclasses.replace(settings, read_cni_conf=str(custom_src))
    assert install(read, tmp_path / "agent.sock") is not None
    assert json.loads(written.read_text())["name"] == "mine"

    uninstall(settings)
    assert not written.exists()
    assert install(dataclasses.replace(settings, custom_cni_conf=True), tmp_path / "s") is None
    assert not written.exists()
