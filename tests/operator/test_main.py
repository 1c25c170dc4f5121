"""The operator's start-up decisions that depend on the cluster."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest
from kinfer_operator.election import ElectionSettings
from kinfer_operator.main import identity, lease_namespace, main, parse_args, routes_watched


class _Kube:
    """Discovery and RBAC answers, and which were asked."""

    def __init__(self, served: bool, allowed: bool) -> None:
        self.served, self.allowed = served, allowed
        self.asked: list[str] = []

    def serves(self, kind: str) -> bool:
        self.asked.append(f"serves {kind}")
        return self.served

    def may_watch(self, group: str, resource: str, namespaces: Sequence[str] = ()) -> bool:
        self.asked.append(f"may_watch {resource} {list(namespaces)}")
        return self.allowed


@pytest.mark.parametrize(
    ("served", "allowed", "watched"),
    [(True, True, True), (False, True, False), (True, False, False)],
)
def test_auto_watches_routes_only_when_their_crd_is_served_and_rbac_allows(
    served: bool, allowed: bool, watched: bool
) -> None:
    kube = _Kube(served, allowed)
    assert routes_watched("auto", kube, ["ml"]) is watched
    assert kube.asked[0] == "serves HTTPRoute"


@pytest.mark.parametrize(("mode", "watched"), [("true", True), ("false", False)])
def test_an_explicit_mode_asks_the_cluster_nothing(mode: str, watched: bool) -> None:
    kube = _Kube(served=False, allowed=False)
    assert routes_watched(mode, kube, []) is watched
    assert kube.asked == []


def test_a_bad_prometheus_configuration_stops_the_operator_before_it_starts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "prometheus.yaml"
    config.write_text("endpoints: {thanos: {url: 'ftp://thanos'}}\n")
    monkeypatch.setenv("KINFER_PROMETHEUS_CONFIG", str(config))
    with pytest.raises(SystemExit, match="Prometheus configuration") as caught:
        main([])
    assert "thanos" in str(caught.value)


def test_template_rolls_default_to_two_and_read_their_env(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("KINFER_MAX_TEMPLATE_ROLLS", raising=False)
    monkeypatch.delenv("KINFER_TEMPLATE_MARK", raising=False)
    args = parse_args([])
    assert (args.max_template_rolls, args.template_mark) == (2, "")
    monkeypatch.setenv("KINFER_MAX_TEMPLATE_ROLLS", "5")
    monkeypatch.setenv("KINFER_TEMPLATE_MARK", "upgrade-1")
    args = parse_args([])
    assert (args.max_template_rolls, args.template_mark) == (5, "upgrade-1")


@pytest.mark.parametrize("argv", [["--max-template-rolls", "0"], ["--template-mark", "x" * 64]])
def test_out_of_bounds_template_settings_are_refused(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit):
        parse_args(argv)
    assert argv[0] in capsys.readouterr().err


def test_leader_election_is_off_unless_a_lease_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KINFER_LEADER_ELECTION", raising=False)
    assert parse_args([]).leader_election == ""
    monkeypatch.setenv("KINFER_LEADER_ELECTION", "kinfer")
    monkeypatch.setenv("KINFER_LEADER_ELECTION_LEASE_DURATION", "20")
    args = parse_args([])
    assert args.leader_election == "kinfer"
    assert args.election == ElectionSettings(20, 10, 2)


@pytest.mark.parametrize(
    ("argv", "named"),
    [
        (["--peering", "kinfer"], "--leader-election LEASE"),
        (["--leader-election", "Not_A_Name"], "--leader-election 'Not_A_Name'"),
        (["--leader-election-renew-deadline", "15"], "--leader-election-renew-deadline=15"),
        (["--leader-election-retry-period", "0"], "--leader-election-retry-period=0"),
        (["--leader-election-lease-duration", "99999"], "--leader-election-lease-duration"),
    ],
)
def test_bad_election_flags_are_refused_naming_the_flag(
    argv: list[str], named: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit):
        parse_args(argv)
    assert named in capsys.readouterr().err


def test_the_lease_lives_in_the_pod_s_own_namespace_unless_told(tmp_path: Path) -> None:
    own = tmp_path / "namespace"
    own.write_text("kinfer-system\n")
    assert lease_namespace("", str(own)) == "kinfer-system"
    assert lease_namespace("ops", str(own)) == "ops"
    with pytest.raises(SystemExit, match="--leader-election-namespace"):
        lease_namespace("", str(tmp_path / "absent"))


def test_two_processes_on_one_host_get_different_identities(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("POD_ID", "kinfer-7d9f")
    first, second = identity(), identity()
    assert first != second
    assert first.startswith("kinfer-7d9f_")


@pytest.mark.parametrize(
    ("mode", "served", "allowed", "watched"),
    [
        ("auto", True, True, True),
        ("true", True, True, True),
        ("true", False, True, False),  # never forced: a cluster without GRPCRoute keeps HTTP
        ("auto", True, False, False),
        ("false", True, True, False),
    ],
)
def test_grpc_routes_are_watched_only_where_served_and_allowed(
    mode: str, served: bool, allowed: bool, watched: bool
) -> None:
    from kinfer_operator.main import grpc_routes_watched

    kube = _Kube(served, allowed)
    assert grpc_routes_watched(mode, kube, ["ml"]) is watched
    if mode != "false":
        assert kube.asked[0] == "serves GRPCRoute"
