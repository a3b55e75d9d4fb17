"""Operator settings: flags over FORESEER_* variables over defaults, bad values named."""

from __future__ import annotations

import argparse
import socket

import pytest

from foreseer.operator import settings


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    settings.add_arguments(parser)
    return parser.parse_args(argv)


def test_defaults_watch_the_whole_cluster_with_verified_tls() -> None:
    loaded = settings.load(parse(), environ={})
    assert loaded.scope.clusterwide
    assert loaded.prometheus.verify() is True
    assert loaded.prometheus.headers() == {}


def test_a_flag_wins_over_its_environment_variable() -> None:
    environ = {"FORESEER_PROMETHEUS_URL": "http://env:9090", "FORESEER_METRICS_PORT": "9100",
               "FORESEER_NAMESPACES": "a, b"}
    loaded = settings.load(parse("--prometheus-url", "https://flag:9090", "--log-json"), environ)
    assert loaded.prometheus.url == "https://flag:9090"
    assert loaded.server.port == 9100
    assert loaded.scope.namespaces == ("a", "b")
    assert not loaded.scope.clusterwide
    assert loaded.logging.json


def test_the_bearer_token_file_is_read_on_every_request(tmp_path) -> None:
    token = tmp_path / "token"
    token.write_text("one\n")
    loaded = settings.load(parse("--prometheus-bearer-token-file", str(token)), {})
    assert loaded.prometheus.headers() == {"Authorization": "Bearer one"}
    token.write_text("two\n")
    assert loaded.prometheus.headers() == {"Authorization": "Bearer two"}


def test_basic_auth_reads_the_password_from_a_file(tmp_path) -> None:
    password = tmp_path / "password"
    password.write_text("s3cret\n")
    loaded = settings.load(None, {"FORESEER_PROMETHEUS_USERNAME": "me",
                                  "FORESEER_PROMETHEUS_PASSWORD_FILE": str(password)})
    assert loaded.prometheus.basic_auth() == ("me", "s3cret")


def test_insecure_tls_must_be_asked_for_and_excludes_a_ca_file() -> None:
    assert settings.load(parse("--prometheus-insecure"), {}).prometheus.verify() is False
    with pytest.raises(ValueError, match="not both"):
        settings.load(parse("--prometheus-insecure", "--prometheus-ca-file", "/ca.pem"), {})


@pytest.mark.parametrize(("environ", "named"), [
    ({"FORESEER_METRICS_PORT": "eighty"}, "FORESEER_METRICS_PORT"),
    ({"FORESEER_LOG_JSON": "maybe"}, "FORESEER_LOG_JSON"),
    ({"FORESEER_LOG_LEVEL": "LOUD"}, "unknown log level"),
    ({"FORESEER_PROMETHEUS_URL": "prometheus:9090"}, "http://"),
    ({"FORESEER_PROMETHEUS_USERNAME": "me"}, "password file"),
])
def test_a_bad_value_is_a_clear_error(environ: dict[str, str], named: str) -> None:
    with pytest.raises(ValueError, match=named):
        settings.load(None, environ)


def test_foreseer_run_refuses_a_bad_setting_with_the_flag_named(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from foreseer.cli import main

    assert main(["run", "--metrics-port", "eighty", "--standalone"]) == 2
    assert "--metrics-port" in capsys.readouterr().err


def test_foreseer_run_says_so_when_its_metrics_port_is_taken(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from foreseer.cli import main

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code = main(["run", "--standalone", "--metrics-host", "127.0.0.1",
                     "--metrics-port", str(port)])
    assert code == 1
    assert f"cannot serve /metrics and /healthz on 127.0.0.1:{port}" in capsys.readouterr().err


def test_metrics_are_open_by_default_and_kubernetes_authn_is_asked_for_by_flag_or_variable(
) -> None:
    assert settings.load(parse(), {}).server.metrics_auth is settings.MetricsAuth.NONE
    flagged = settings.load(parse("--metrics-auth", "kubernetes"), {})
    assert flagged.server.metrics_auth is settings.MetricsAuth.KUBERNETES
    from_env = settings.load(None, {"FORESEER_METRICS_AUTH": "kubernetes"})
    assert from_env.server.metrics_auth is settings.MetricsAuth.KUBERNETES
    with pytest.raises(ValueError, match="--metrics-auth"):
        settings.load(parse("--metrics-auth", "basic"), {})
