"""Flagsmith's own Python SDK (PyPI flagsmith 6.3.0) against a live flaglog, unchanged.

The oracle is the same SDK evaluating the original document offline (flag engine 11.1.1): for
every identity of Flagsmith's conformance documents, the SDK in remote mode (flaglog evaluates,
client key) and in local-evaluation mode (the SDK evaluates the document flaglog serves,
server-side key) must return exactly what it returns offline: every flag's enabled and value,
with the value's type. And with realtime updates, a change made through the admin API must reach
the SDK's local evaluation through the event stream, not through polling.
"""

import copy
import json
import time

import pytest
import requests
from flagsmith import Flagsmith
from flagsmith.offline_handlers import BaseOfflineHandler

from conftest import reference_dir

SEEDS = range(1, 9)
# How long a realtime change may take to reach the SDK.
REALTIME_SECONDS = 10


class DocumentHandler(BaseOfflineHandler):
    def __init__(self, document):
        self.document = document

    def get_environment(self):
        return self.document


def snapshot(flags):
    """name -> (enabled, value's type, value): the type too, since 1 == 1.0 == True in Python."""
    return {
        flag.feature_name: (flag.enabled, type(flag.value).__name__, flag.value)
        for flag in flags.all_flags()
    }


def differences(actual, expected):
    lines = []
    for name in sorted(set(actual) | set(expected)):
        if actual.get(name) != expected.get(name):
            lines.append(f"{name}: got {actual.get(name)}, want {expected.get(name)}")
    return lines


def assert_same(actual, expected, what):
    wrong = differences(actual, expected)
    assert not wrong, f"{what}: {len(wrong)} flag(s) differ:\n  " + "\n  ".join(wrong)


class Case:
    """A document, the identities to evaluate (identifier, traits) and the SDK's offline
    answers for it."""

    def __init__(self, name, document, identities):
        self.name = name
        self.document = document
        self.identities = identities
        offline = Flagsmith(offline_mode=True, offline_handler=DocumentHandler(document))
        self.environment = snapshot(offline.get_environment_flags())
        self.expected = {
            identifier: snapshot(offline.get_identity_flags(identifier, traits))
            for identifier, traits in identities
        }
        # A comparison of nothing proves nothing.
        assert self.environment and all(self.expected.values()), name


def load(path):
    return json.loads((reference_dir() / "conformance" / path).read_text())


@pytest.fixture(scope="session")
def legacy():
    """legacy-document.json, with the `name` today's SDKs need added, and its responses."""
    data = load("legacy-document.json")
    document = copy.deepcopy(data["environment"])
    document.setdefault("name", "legacy")
    identities = [
        (
            entry["identity"]["identifier"],
            {t["trait_key"]: t["trait_value"] for t in entry["identity"]["identity_traits"]},
        )
        for entry in data["identities_and_responses"]
    ]
    assert len(identities) == 101
    case = Case("legacy", document, identities)
    case.responses = {
        entry["identity"]["identifier"]: entry["response"]
        for entry in data["identities_and_responses"]
    }
    return case


@pytest.fixture(scope="session")
def seeds():
    cases = {}
    for n in SEEDS:
        data = load(f"documents/seed-{n}.json")
        identities = [(i["identifier"], i["traits"] or {}) for i in data["identities"]]
        case = Case(f"seed-{n}", data["environment_document"], identities)
        # The harness itself: offline, the SDK agrees with the engine's recorded results.
        for identity in data["identities"]:
            recorded = {
                name: (flag["enabled"], type(flag["value"]).__name__, flag["value"])
                for name, flag in identity["result"]["flags"].items()
            }
            assert_same(
                case.expected[identity["identifier"]],
                recorded,
                f"seed-{n} offline {identity['identifier']}",
            )
        cases[n] = case
    return cases


@pytest.fixture(scope="session")
def imported(flaglog_server):
    """Imports a case's document once per server; returns the import's answer."""
    done = {}

    def get(case):
        if case.name not in done:
            done[case.name] = flaglog_server.import_document(case.document)
            assert done[case.name]["client_key"] == case.document["api_key"]
        return done[case.name]

    return get


def remote_sdk(server, keys):
    return Flagsmith(environment_key=keys["client_key"], api_url=server.api_url)


def local_sdk(server, keys, **options):
    options.setdefault("environment_refresh_interval_seconds", 3600)
    return Flagsmith(
        environment_key=keys["server_side_key"],
        api_url=server.api_url,
        enable_local_evaluation=True,
        **options,
    )


def check_case(sdk, case, mode):
    assert_same(snapshot(sdk.get_environment_flags()), case.environment, f"{case.name} {mode}")
    for identifier, traits in case.identities:
        assert_same(
            snapshot(sdk.get_identity_flags(identifier, traits)),
            case.expected[identifier],
            f"{case.name} {mode} identity {identifier!r}",
        )


def test_legacy_document_remote_evaluation_matches_offline(flaglog_server, imported, legacy):
    check_case(remote_sdk(flaglog_server, imported(legacy)), legacy, "remote")


def test_legacy_document_local_evaluation_matches_offline(flaglog_server, imported, legacy):
    check_case(local_sdk(flaglog_server, imported(legacy)), legacy, "local")


def test_legacy_recorded_responses_hold_except_mv_feature(flaglog_server, imported, legacy):
    # mv_feature's recorded variants were hashed on old internal ids; see the reference README.
    sdk = remote_sdk(flaglog_server, imported(legacy))
    for identifier, traits in legacy.identities:
        served = snapshot(sdk.get_identity_flags(identifier, traits))
        recorded = {
            flag["feature"]["name"]: (
                flag["enabled"],
                type(flag["feature_state_value"]).__name__,
                flag["feature_state_value"],
            )
            for flag in legacy.responses[identifier]["flags"]
        }
        served.pop("mv_feature")
        recorded.pop("mv_feature")
        assert_same(served, recorded, f"legacy recorded response of {identifier!r}")


@pytest.mark.parametrize("mode", ["remote", "local"])
@pytest.mark.parametrize("n", SEEDS)
def test_seed_document_evaluation_matches_offline(flaglog_server, imported, seeds, n, mode):
    case = seeds[n]
    keys = imported(case)
    sdk = remote_sdk(flaglog_server, keys) if mode == "remote" else local_sdk(flaglog_server, keys)
    check_case(sdk, case, mode)


def test_realtime_updates_reach_local_evaluation_without_polling(flaglog_server, seeds):
    document = copy.deepcopy(seeds[1].document)
    document["api_key"] = f"realtime-{flaglog_server.backend}"
    keys = flaglog_server.import_document(document)
    client_key = keys["client_key"]
    sdk = local_sdk(
        flaglog_server,
        keys,
        enable_realtime_updates=True,
        realtime_api_url=f"{flaglog_server.base}/",
    )
    try:
        # Realtime replaces polling: only the stream can explain what follows.
        assert not hasattr(sdk, "environment_data_polling_manager_thread")
        assert sdk.event_stream_thread.stream_url == (
            f"{flaglog_server.base}/sse/environments/{client_key}/stream"
        )
        flags = flaglog_server.admin("GET", f"/api/v1/environments/{client_key}/featurestates/")
        assert flags.status_code == 200, flags.text
        state = next(s for s in flags.json() if s["feature"]["type"] == "STANDARD")
        feature = state["feature"]

        lags = []
        for round in range(1, 11):
            before = sdk.get_environment_flags().get_flag(feature["name"])
            enabled, value = not before.enabled, f"realtime {round}"
            started = time.monotonic()
            changed = flaglog_server.admin(
                "PUT",
                f"/api/v1/environments/{client_key}/featurestates/{feature['id']}/",
                {"enabled": enabled, "feature_state_value": value},
            )
            assert changed.status_code == 200, changed.text
            while True:
                flag = sdk.get_environment_flags().get_flag(feature["name"])
                if (flag.enabled, flag.value) == (enabled, value):
                    break
                if time.monotonic() - started >= REALTIME_SECONDS:
                    served = requests.get(
                        f"{flaglog_server.api_url}environment-document/",
                        headers={"X-Environment-Key": keys["server_side_key"]},
                        timeout=10,
                    ).json()
                    pytest.fail(
                        f"round {round}: the SDK still evaluates {feature['name']} as "
                        f"({flag.enabled}, {flag.value!r}) {REALTIME_SECONDS} s after the change; "
                        f"it holds a document of {sdk._environment_updated_at.isoformat()}, "
                        f"flaglog now serves one of {served['updated_at']}"
                    )
                time.sleep(0.02)
            lags.append(time.monotonic() - started)
        print(
            f"{flaglog_server.backend}: admin change -> SDK local evaluation in "
            + ", ".join(f"{lag * 1000:.0f} ms" for lag in lags)
        )
    finally:
        sdk.event_stream_thread.stop()
