"""OpenFeature's generic OFREP provider (openfeature-provider-ofrep, from PyPI) against a live flaglog.

Self-contained: the module starts its own `flaglog serve` (the binary in $FLAGLOG_BIN, default
target/debug/flaglog) on a free loopback port over a fresh SQLite database, after creating an
administrator and importing the small environment document below with the CLI, and stops it at
the end. A server that cannot start fails the tests; nothing here is ever skipped.

The provider is configured as its README shows, with the environment key as a bearer token, and
every flag is read through OpenFeature's client API, as an application would.
"""

import json
import os
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
import requests
from openfeature import api
from openfeature.contrib.provider.ofrep import OFREPProvider
from openfeature.evaluation_context import EvaluationContext
from openfeature.exception import ErrorCode
from openfeature.flag_evaluation import Reason

REPO = Path(__file__).resolve().parents[2]
CLIENT_KEY = "ofrep-python-client"
DOMAIN = "flaglog-ofrep"
LAYOUT = {"columns": 3, "theme": "compact"}


def feature_state(django_id, feature_id, name, enabled, value, priority=None):
    return {
        "django_id": django_id,
        "enabled": enabled,
        "feature": {"id": feature_id, "name": name, "type": "STANDARD"},
        "feature_segment": None if priority is None else {"priority": priority},
        "feature_state_value": value,
        "multivariate_feature_state_values": [],
    }


# A Flagsmith environment document: a toggle, a JSON value, a segment-targeted string, a number,
# a switched-off string.
DOCUMENT = {
    "id": 1,
    "api_key": CLIENT_KEY,
    "name": "ofrep python",
    "project": {
        "id": 1,
        "name": "ofrep python",
        "hide_disabled_flags": False,
        "organisation": {
            "id": 1,
            "name": "org",
            "feature_analytics": False,
            "persist_trait_data": True,
            "stop_serving_flags": False,
        },
        "segments": [
            {
                "id": 10,
                "name": "pro users",
                "rules": [
                    {
                        "type": "ALL",
                        "rules": [],
                        "conditions": [
                            {"operator": "EQUAL", "property_": "plan", "value": "pro"}
                        ],
                    }
                ],
                "feature_states": [
                    feature_state(201, 3, "welcome", True, "welcome, pro", priority=1)
                ],
            }
        ],
    },
    "feature_states": [
        feature_state(101, 1, "dark_mode", True, None),
        feature_state(102, 2, "layout", True, json.dumps(LAYOUT)),
        feature_state(103, 3, "welcome", True, "generic"),
        feature_state(104, 4, "max_items", True, 42),
        feature_state(105, 5, "retired", False, "old"),
    ],
}


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def last_line(completed):
    lines = completed.stdout.strip().splitlines()
    if completed.returncode != 0 or not lines:
        pytest.fail(
            f"{' '.join(completed.args)} failed ({completed.returncode}):\n"
            f"{completed.stdout}\n{completed.stderr}"
        )
    return lines[-1]


@pytest.fixture(scope="module")
def flaglog():
    """A running flaglog serving DOCUMENT; yields its base URL and server-side key."""
    binary = Path(os.environ.get("FLAGLOG_BIN", REPO / "target" / "debug" / "flaglog"))
    if not binary.is_file():
        pytest.fail(f"no flaglog binary at {binary}: build it or set FLAGLOG_BIN")
    with tempfile.TemporaryDirectory(prefix="flaglog-ofrep-") as tmp:
        env = dict(os.environ, DATABASE_URL=f"sqlite://{tmp}/flaglog.db", RUST_LOG="warn")

        def cli(*args):
            return subprocess.run(
                [str(binary), *args], env=env, capture_output=True, text=True, timeout=60
            )

        token = last_line(cli("admin", "create", "--email", "x@y.z"))
        document = Path(tmp) / "document.json"
        document.write_text(json.dumps(DOCUMENT))
        imported = json.loads(last_line(cli("import", "--environment-document", str(document))))
        assert imported["client_key"] == CLIENT_KEY

        port = free_port()
        base = f"http://127.0.0.1:{port}"
        log = open(Path(tmp) / "server.log", "w")
        server = subprocess.Popen(
            [str(binary), "serve", "--bind", f"127.0.0.1:{port}"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            wait_until_served(server, base, Path(tmp) / "server.log")
            environments = requests.get(
                f"{base}/api/v1/environments/",
                headers={"Authorization": f"Token {token}"},
                timeout=10,
            )
            assert environments.status_code == 200, environments.text
            yield {"base": base, "server_key": imported["server_side_key"]}
        finally:
            server.terminate()
            try:
                server.wait(timeout=10)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()
            log.close()


def wait_until_served(server, base, log_path):
    """Waits until the imported environment is served over OFREP (the projection has run)."""
    deadline = time.monotonic() + 30
    last = None
    while time.monotonic() < deadline:
        if server.poll() is not None:
            pytest.fail(f"flaglog serve exited with {server.returncode}:\n{log_path.read_text()}")
        try:
            last = requests.post(
                f"{base}/ofrep/v1/evaluate/flags",
                json={"context": {}},
                headers={"Authorization": f"Bearer {CLIENT_KEY}"},
                timeout=5,
            )
            if last.status_code == 200:
                return
        except requests.ConnectionError:
            pass
        time.sleep(0.05)
    pytest.fail(f"flaglog never served the environment (last answer: {last and last.text})")


@pytest.fixture(scope="module")
def client(flaglog):
    provider = OFREPProvider(
        flaglog["base"],
        headers_factory=lambda: {"Authorization": f"Bearer {CLIENT_KEY}"},
    )
    api.set_provider(provider, domain=DOMAIN)
    yield api.get_client(domain=DOMAIN)
    api.clear_providers()


USER = EvaluationContext(targeting_key="user-1", attributes={"plan": "free"})
PRO_USER = EvaluationContext(targeting_key="user-2", attributes={"plan": "pro"})


def test_a_toggle_resolves_as_a_boolean(client):
    details = client.get_boolean_details("dark_mode", False, USER)
    assert details.value is True
    assert details.error_code is None
    assert details.reason == Reason.STATIC
    assert details.variant == "enabled"
    assert details.flag_metadata == {"enabled": True, "featureId": 1}


def test_a_string_flag_follows_segment_targeting(client):
    pro = client.get_string_details("welcome", "fallback", PRO_USER)
    assert (pro.value, pro.reason, pro.error_code) == (
        "welcome, pro",
        Reason.TARGETING_MATCH,
        None,
    )
    free = client.get_string_details("welcome", "fallback", USER)
    assert (free.value, free.reason, free.error_code) == ("generic", Reason.DEFAULT, None)


def test_a_json_value_resolves_as_an_object(client):
    details = client.get_object_details("layout", {}, USER)
    assert details.error_code is None
    assert details.value == LAYOUT


def test_a_number_resolves_as_an_integer(client):
    assert client.get_integer_value("max_items", 0, USER) == 42


def test_a_disabled_flag_leaves_the_code_default(client):
    details = client.get_string_details("retired", "code default", USER)
    assert details.value == "code default"
    assert details.reason == Reason.DISABLED
    assert details.error_code is None


def test_an_unknown_flag_yields_the_default_with_flag_not_found(client):
    details = client.get_boolean_details("no_such_flag", True, USER)
    assert details.value is True
    assert details.error_code == ErrorCode.FLAG_NOT_FOUND
    assert details.reason == Reason.ERROR


def test_a_server_side_key_works_and_a_wrong_key_yields_the_default(flaglog):
    api.set_provider(
        OFREPProvider(
            flaglog["base"],
            headers_factory=lambda: {"Authorization": f"Bearer {flaglog['server_key']}"},
        ),
        domain="server-key",
    )
    api.set_provider(
        OFREPProvider(
            flaglog["base"], headers_factory=lambda: {"Authorization": "Bearer wrong"}
        ),
        domain="wrong-key",
    )
    assert api.get_client(domain="server-key").get_integer_value("max_items", 0, USER) == 42
    wrong = api.get_client(domain="wrong-key").get_integer_details("max_items", 7, USER)
    assert wrong.value == 7
    assert wrong.error_code == ErrorCode.GENERAL
