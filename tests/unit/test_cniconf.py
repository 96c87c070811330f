"""The CNI config the agent installs: upstream's shapes, chained reference plugins, exclusive
renames, custom and read configs; the installer on a real directory; the plugin executable
``cni-install`` puts into the bin directory; the Helm values behind them."""

from __future__ import annotations

import dataclasses
import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from pylium.agent.cniconf import install, install_plugin, uninstall
from pylium.base.errors import ConfigError
from pylium.core.cniconf import plan, plugin_wrapper, render
from pylium.core.settings import resolve
from pylium.model.config import (
    AgentSettings,
    CNIChainedPlugin,
    CNIChainingMode,
    ConfigErrors,
)


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
    assert chained["cniVersion"] == "0.3.1"  # upstream's portmap mode


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
        cni_bin_path=str(tmp_path / "bin"),
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


def test_render_chained_reference_plugins() -> None:
    both = json.loads(render(chained_plugins=["portmap", "bandwidth"]))
    assert both["name"] == "cilium" and both["cniVersion"] == "1.0.0"  # CHECK needs >= 0.4.0
    assert both["plugins"][1:] == [
        {"type": "portmap", "capabilities": {"portMappings": True}},
        {"type": "bandwidth", "capabilities": {"bandwidth": True}},
    ]
    # Mode portmap keeps upstream's network name and puts portmap first, without a duplicate.
    mode = json.loads(render(chaining_mode="portmap", chained_plugins=["bandwidth", "portmap"]))
    assert mode["name"] == "portmap"
    assert [p["type"] for p in mode["plugins"]] == ["cilium-cni", "portmap", "bandwidth"]
    with pytest.raises(ValueError, match="tuning"):
        render(chained_plugins=["tuning"])


def test_chained_plugins_from_helm_values_and_configmap() -> None:
    resolved = resolve(sets=["cni.chainingMode=portmap", "cni.chainedPlugins={bandwidth}"])
    assert resolved.as_configmap()["cni-chained-plugins"] == "bandwidth"
    assert resolved.settings.cni_chained_plugins == (CNIChainedPlugin.BANDWIDTH,)
    assert resolved.sources["cni-chained-plugins"] == "--set"
    assert resolve().as_configmap()["cni-chained-plugins"] == ""
    parsed = AgentSettings.from_configmap({"cni-chained-plugins": "portmap,bandwidth portmap"})
    assert parsed.cni_chained_plugins == (CNIChainedPlugin.PORTMAP, CNIChainedPlugin.BANDWIDTH)
    with pytest.raises(ConfigErrors, match="bandwith"):
        AgentSettings.from_configmap({"cni-chained-plugins": "bandwith"})


def test_cni_install_and_bin_path_from_helm_values() -> None:
    default = resolve()
    assert default.settings.cni_install and default.settings.cni_bin_path == "/opt/cni/bin"
    cm = resolve(sets=["cni.install=false", "cni.binPath=/usr/lib/cni"]).as_configmap()
    assert (cm["cni-install"], cm["cni-bin-path"]) == ("false", "/usr/lib/cni")
    assert not any("binPath" in w for w in resolve(sets=["cni.binPath=/x"]).warnings)


def test_install_plugin_writes_an_executable_atomically(tmp_path: Path) -> None:
    bindir = tmp_path / "opt" / "cni" / "bin"
    settings = dataclasses.replace(AgentSettings(), cni_bin_path=str(bindir))
    assert install_plugin(dataclasses.replace(settings, cni_install=False)) is None
    assert not bindir.exists()

    target = install_plugin(settings)
    assert target == bindir / "cilium-cni"
    assert stat.S_IMODE(os.stat(target).st_mode) == 0o755
    assert target.read_text() == plugin_wrapper(sys.executable)
    assert os.listdir(bindir) == ["cilium-cni"]  # no temp file left behind
    inode = os.stat(target).st_ino
    assert install_plugin(settings) == target and os.stat(target).st_ino == inode  # unchanged

    # A stale file (another version) is replaced by rename, never rewritten in place.
    target.write_text("#!/bin/sh\nexit 1\n")
    install_plugin(settings)
    assert os.stat(target).st_ino != inode
    assert target.read_text() == plugin_wrapper(sys.executable)

    # The installed file is a working plugin: VERSION through this venv's pylium-cni.
    out = subprocess.run(
        [str(target)],
        env={"CNI_COMMAND": "VERSION", "PATH": "/usr/bin:/bin"},
        input='{"cniVersion": "1.0.0"}',
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    assert json.loads(out.stdout)["supportedVersions"][-1] == "1.1.0"

    blocked = tmp_path / "file"
    blocked.write_text("")
    with pytest.raises(ConfigError, match="cni-bin-path"):
        install_plugin(dataclasses.replace(settings, cni_bin_path=str(blocked / "bin")))


def test_wrapper_quotes_the_interpreter_path() -> None:
    text = plugin_wrapper("/srv/my venv/bin/python")
    assert text.startswith("#!/bin/sh\n")
    assert "exec '/srv/my venv/bin/python' -I -m pylium.cni \"$@\"" in text


def test_kube_proxy_replacement_declares_port_mappings() -> None:
    """With kube-proxy replacement cilium-cni takes the portMappings capability itself (the
    agent serves hostPorts from the LB maps); not when portmap is chained (it would DNAT the
    same ports again), and never without kube-proxy replacement."""
    kpr = json.loads(render(host_ports=True))["plugins"]
    assert kpr[0]["capabilities"] == {"portMappings": True}
    chained = json.loads(render(host_ports=True, chaining_mode="portmap"))["plugins"]
    assert "capabilities" not in chained[0] and chained[1]["type"] == "portmap"
    assert "capabilities" not in json.loads(render())["plugins"][0]
