#!/usr/bin/env python3
"""The parts of scripts/bench-sdk that are a conversation rather than a load: importing many
documents, asking for every environment's flags once, and timing how long an admin change takes
to reach the SDK endpoint. One keep-alive connection, standard library only.

Usage:
  sdk_client.py import BASE_URL TOKEN COUNT FEATURES SEGMENTS SEED
                                                  imports COUNT documents from gen_documents.py
                                                  (made in memory); prints one client key a line
  sdk_client.py touch BASE_URL KEYS_FILE          GET /api/v1/flags/ once per key (each must be 200)
  sdk_client.py identify BASE_URL KEYS_FILE       POST /api/v1/identities/ (a transient identity
                                                  with traits) once per key (each must be 200)
  sdk_client.py lag BASE_URL TOKEN KEY TRIALS     toggles a feature TRIALS times; prints
                                                  "LAG <median ms> <max ms> <median ms> <max ms>
                                                  <timeouts>": from the PUT's answer, then from
                                                  its sending, to the first /flags/ showing it
"""

import http.client
import json
import statistics
import sys
import time
import urllib.parse

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
import gen_documents  # noqa: E402 (beside this file)


class Client:
    def __init__(self, base_url):
        url = urllib.parse.urlsplit(base_url)
        self.conn = http.client.HTTPConnection(url.hostname, url.port, timeout=30)

    def request(self, method, path, body=None, headers=None):
        self.conn.request(method, path, body=body, headers=headers or {})
        response = self.conn.getresponse()
        return response.status, response.getheader("ETag"), response.read()


def die(message):
    sys.exit(f"sdk_client: {message}")


def import_documents(base_url, token, count, features, segments, seed):
    client = Client(base_url)
    headers = {"Authorization": f"Token {token}", "Content-Type": "application/json"}
    for i in range(int(count)):
        document = gen_documents.document(int(seed), i, int(features), int(segments))
        status, _, body = client.request(
            "POST",
            "/api/v1/environment-document/import/",
            json.dumps(document, separators=(",", ":")),
            headers,
        )
        if status != 201:
            die(f"import of document {i}: {status} {body[:300]!r}")
        print(json.loads(body)["client_key"])


def touch(base_url, keys_file):
    client = Client(base_url)
    with open(keys_file) as f:
        keys = [line.strip() for line in f if line.strip()]
    for key in keys:
        # 401 until the projection has caught up with the environment's import.
        deadline = time.monotonic() + 60
        while True:
            status, _, body = client.request(
                "GET", "/api/v1/flags/", headers={"X-Environment-Key": key}
            )
            if status == 200:
                break
            if status != 401 or time.monotonic() > deadline:
                die(f"flags of {key}: {status} {body[:300]!r}")
            time.sleep(0.01)


def identify(base_url, keys_file):
    client = Client(base_url)
    with open(keys_file) as f:
        keys = [line.strip() for line in f if line.strip()]
    body = json.dumps({
        "identifier": "memory-probe",
        "transient": True,
        "traits": [
            {"trait_key": "plan", "trait_value": "pro"},
            {"trait_key": "age", "trait_value": 30},
            {"trait_key": "country", "trait_value": "de"},
        ],
    })
    headers = {"Content-Type": "application/json"}
    for key in keys:
        status, _, reply = client.request(
            "POST", "/api/v1/identities/", body, {**headers, "X-Environment-Key": key}
        )
        if status != 200:
            die(f"identities of {key}: {status} {reply[:300]!r}")


def lag(base_url, token, key, trials):
    client = Client(base_url)
    sdk = {"X-Environment-Key": key}
    admin = {"Authorization": f"Token {token}", "Content-Type": "application/json"}

    def flags():
        status, etag, body = client.request("GET", "/api/v1/flags/", headers=sdk)
        if status != 200:
            die(f"flags: {status} {body[:300]!r}")
        return etag, json.loads(body)

    etag, listed = flags()
    flag = next(f for f in listed if f["feature"]["type"] == "STANDARD")
    feature_id, value = flag["feature"]["id"], flag["feature_state_value"]
    enabled = flag["enabled"]

    def shown(flags_list):
        return next(f["enabled"] for f in flags_list if f["feature"]["id"] == feature_id)

    after_answer, after_send, timeouts = [], [], 0
    for _ in range(int(trials)):
        enabled = not enabled
        body = json.dumps({"enabled": enabled, "feature_state_value": value})
        sent = time.perf_counter()
        status, _, answer = client.request(
            "PUT", f"/api/v1/environments/{key}/featurestates/{feature_id}/", body, admin
        )
        answered = time.perf_counter()
        if status != 200:
            die(f"PUT featurestate: {status} {answer[:300]!r}")
        # Polls about every millisecond; If-None-Match keeps an unchanged answer to a 304.
        while True:
            status, new_etag, body = client.request(
                "GET", "/api/v1/flags/", headers={**sdk, "If-None-Match": etag}
            )
            now = time.perf_counter()
            if status == 200:
                etag = new_etag
                if shown(json.loads(body)) == enabled:
                    after_answer.append((now - answered) * 1000)
                    after_send.append((now - sent) * 1000)
                    break
            elif status != 304:
                die(f"flags: {status} {body[:300]!r}")
            if now - answered > 5:
                timeouts += 1
                break
            time.sleep(0.001)
    if not after_answer:
        die("no change ever became visible")
    print(
        "LAG %.2f %.2f %.2f %.2f %d"
        % (
            statistics.median(after_answer),
            max(after_answer),
            statistics.median(after_send),
            max(after_send),
            timeouts,
        )
    )


def main():
    commands = {
        "import": (import_documents, 6),
        "touch": (touch, 2),
        "identify": (identify, 2),
        "lag": (lag, 4),
    }
    args = sys.argv[1:]
    if not args or args[0] not in commands or len(args) - 1 != commands[args[0]][1]:
        sys.exit(__doc__)
    commands[args[0]][0](*args[1:])


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        sys.exit(130)
