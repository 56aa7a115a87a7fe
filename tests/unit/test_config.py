"""Config files and their merge with flags."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from edgek.cmd.main import app
from edgek.config import ConfigError, load_config, merge
from server.config import ServerConfig, server_options

KNOWN = {"data-dir", "tls-san", "https-listen-port", "disable-agent", "write-kubeconfig-mode"}


def test_missing_default_file_is_empty(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("edgek.config.DEFAULT_CONFIG", tmp_path / "absent.yaml")
    assert load_config(None) == {}


def test_named_missing_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.yaml")


def test_keys_are_flag_names_and_flags_win(tmp_path: Path) -> None:
    f = tmp_path / "c.yaml"
    f.write_text("data-dir: /srv/edgek\ntls-san: [pi.local, 10.0.0.9]\nhttps-listen-port: 7443\n")
    values = merge(
        {"data-dir": None, "https-listen-port": 9443, "tls-san": None}, load_config(f), KNOWN
    )
    assert values == {
        "data-dir": "/srv/edgek",
        "tls-san": ["pi.local", "10.0.0.9"],
        "https-listen-port": 9443,
    }
    cfg = ServerConfig.from_settings(values)
    assert cfg.data_dir == Path("/srv/edgek")
    assert cfg.https_listen_port == 9443
    assert cfg.tls_san == ["pi.local", "10.0.0.9"]
    assert cfg.datastore_url == "sqlite:////srv/edgek/server/db/state.db"


def test_unknown_key_and_bad_shape_are_errors(tmp_path: Path) -> None:
    f = tmp_path / "c.yaml"
    f.write_text("data-dirr: /x\n")
    with pytest.raises(ConfigError, match="unknown config key"):
        merge({}, load_config(f), KNOWN)
    f.write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="must be a mapping"):
        load_config(f)
    f.write_text("a: [unclosed\n")
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_config(f)


def test_typed_values() -> None:
    cfg = ServerConfig.from_settings(
        {"disable-agent": "true", "write-kubeconfig-mode": "0644", "tls-san": "one"}
    )
    assert cfg.disable_agent is True
    assert cfg.write_kubeconfig_mode == 0o644
    assert cfg.tls_san == ["one"]


def test_server_options_come_from_the_config_fields() -> None:
    """Every flag field is an ``edgek server`` option with its help; internal fields and
    hidden options are not listed."""
    res = CliRunner().invoke(app, ["server", "--help"], env={"COLUMNS": "300"})
    assert res.exit_code == 0, res.output
    listed = {o.name for o in server_options() if not o.hidden}
    assert {"data-dir", "https-listen-port", "disable", "token-file"} <= listed
    for option in server_options():
        assert (f"--{option.name} " in res.output) is not option.hidden
    assert "--watch-bookmark-interval" not in res.output
    assert "--config" in res.output and "--debug" in res.output


def test_settings_read_into_field_types(tmp_path: Path) -> None:
    cfg = ServerConfig.from_settings(
        {"data-dir": str(tmp_path), "https-listen-port": "7443", "token-file": "t"}
    )
    assert cfg.data_dir == tmp_path and cfg.https_listen_port == 7443
    assert cfg.token_file == Path("t")
    with pytest.raises(ValueError, match="invalid value for --https-listen-port: 'x'"):
        ServerConfig.from_settings({"https-listen-port": "x"})


def test_server_passes_the_agent_options_to_its_embedded_agent(tmp_path: Path) -> None:
    from edgek.cmd.server import EMBEDDED_AGENT_OPTIONS, _embedded_agent_config

    names = {option.name for option in server_options()}
    assert set(EMBEDDED_AGENT_OPTIONS) <= names
    cfg = ServerConfig.from_settings(
        {
            "data-dir": str(tmp_path),
            "node-name": "pi1",
            "node-ip": ["192.168.5.10"],
            "node-label": ["zone=a"],
            "node-taint": ["edge=true:NoSchedule"],
            "kubelet-port": "10260",
            "private-registry": str(tmp_path / "reg.yaml"),
            "service-proxy": "true",
        }
    )
    agent = _embedded_agent_config(cfg)
    assert agent.service_proxy
    assert (agent.node_name, agent.node_ip, agent.kubelet_port) == ("pi1", ["192.168.5.10"], 10260)
    assert agent.node_labels == {"zone": "a"}
    assert agent.node_taints == [{"key": "edge", "value": "true", "effect": "NoSchedule"}]
    assert agent.private_registry == tmp_path / "reg.yaml" and agent.data_dir == tmp_path
    assert agent.server == cfg.local_url


def test_server_passes_cluster_dns_settings_and_disable_dns(tmp_path: Path) -> None:
    from edgek.cmd.server import _embedded_agent_config
    from server.controllers.builtin import check_disable

    cfg = ServerConfig.from_settings(
        {
            "data-dir": str(tmp_path),
            "cluster-dns": "10.43.0.53",
            "cluster-domain": "edge.local",
            "disable": ["dns", "scheduler"],
        }
    )
    check_disable(cfg.disable)  # dns is the agent's, scheduler a loop: both known
    agent = _embedded_agent_config(cfg)
    assert (agent.cluster_dns, agent.cluster_domain, agent.disable) == (
        "10.43.0.53",
        "edge.local",
        ["dns"],
    )
    assert _embedded_agent_config(ServerConfig(data_dir=tmp_path)).disable == []


def test_server_refuses_a_bad_embedded_agent_option_in_one_line(tmp_path: Path) -> None:
    res = CliRunner().invoke(
        app, ["server", "--data-dir", str(tmp_path), "--node-taint", "nocolon"]
    )
    assert res.exit_code == 1
    assert "taint" in res.output and len(res.output.strip().splitlines()) == 1
