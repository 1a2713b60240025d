#!/usr/bin/env python3
"""Generates Flagsmith environment documents for scripts/bench-sdk, in the shape of the
conformance documents (shared/reference/flagsmith/conformance/documents/seed-*.json).

Each document has FEATURES features (about a third MULTIVARIATE, with 2-3 options), SEGMENTS
segments whose rules test the ten traits identities.lua sends (with several conditions each,
over most operators, so evaluation does real work and identities fall in different segments),
a few segment overrides per segment, and a few identity overrides. The same seed gives the same
documents; document i has the client key bench<seed>x<i>.

Usage: gen_documents.py OUT_DIR [COUNT] [FEATURES] [SEGMENTS] [SEED]
Writes OUT_DIR/env-<i>.json for i in 0..COUNT.
"""

import json
import os
import random
import sys
import uuid

# The traits identities.lua sends, with values the conditions below can match.
CONDITIONS = [
    ("plan", "EQUAL", lambda r: r.choice(["free", "pro", "enterprise"])),
    ("plan", "NOT_EQUAL", lambda r: r.choice(["free", "pro"])),
    ("plan", "IN", lambda r: r.choice(["pro,enterprise", "free,pro"])),
    ("age", "GREATER_THAN", lambda r: str(r.randint(18, 60))),
    ("age", "LESS_THAN_INCLUSIVE", lambda r: str(r.randint(30, 80))),
    ("country", "EQUAL", lambda r: r.choice(["fr", "de", "us", "gb", "jp"])),
    ("country", "IN", lambda r: r.choice(["fr,de,es", "us,ca", "gb,ie,jp"])),
    ("email", "CONTAINS", lambda r: r.choice(["@example.com", "@corp.example"])),
    ("email", "REGEX", lambda r: r.choice([r".*@example\.com$", r"^user-1.*"])),
    ("orders", "MODULO", lambda r: r.choice(["2|0", "3|1", "5|0"])),
    ("orders", "GREATER_THAN_INCLUSIVE", lambda r: str(r.randint(1, 40))),
    ("beta", "EQUAL", lambda r: r.choice(["true", "false"])),
    ("score", "LESS_THAN", lambda r: str(round(r.uniform(0, 1), 2))),
    ("device", "NOT_CONTAINS", lambda r: r.choice(["ios", "android"])),
    ("signup_days", "GREATER_THAN", lambda r: str(r.randint(10, 300))),
    ("language", "IS_SET", lambda r: None),
    ("referrer", "IS_NOT_SET", lambda r: None),
    (None, "PERCENTAGE_SPLIT", lambda r: str(r.randint(10, 90))),
]

VALUES = ["on", "off", "blue", 7, 12.5, True, False, None, "", '{"limit": 10}']
OPTION_VALUES = ["red", "green", "blue", "v0", "v1", "v2", 3, 42, True]


class Ids:
    """Increasing ids for feature states and multivariate values, as a database would give."""

    def __init__(self, start):
        self.next = start

    def __call__(self):
        self.next += 1
        return self.next


def uid(rng):
    return str(uuid.UUID(int=rng.getrandbits(128)))


def allocations(rng, n):
    """n allocations whose sum is at most 100."""
    cuts = sorted(rng.randint(0, 100) for _ in range(n))
    parts = [b - a for a, b in zip([0] + cuts, cuts)]
    return [float(p) for p in parts]


def feature_state(rng, ids, feature, options, segment_priority=None):
    mv = []
    if feature["type"] == "MULTIVARIATE":
        for option, pct in zip(options, allocations(rng, len(options))):
            mv.append({
                "id": ids(),
                "multivariate_feature_option": option,
                "percentage_allocation": pct,
            })
    return {
        "django_id": ids(),
        "enabled": rng.random() < 0.6,
        "feature": feature,
        "feature_segment": None if segment_priority is None else {"priority": segment_priority},
        "feature_state_value": rng.choice(VALUES),
        "featurestate_uuid": uid(rng),
        "multivariate_feature_state_values": mv,
    }


def condition(rng):
    prop, op, value = rng.choice(CONDITIONS)
    c = {"operator": op, "property_": prop, "value": value(rng)}
    if prop is None:
        c["property_"] = ""
    return c


def document(seed, index, n_features, n_segments):
    rng = random.Random(f"{seed}-{index}")
    ids = Ids(100_000)
    api_key = f"bench{seed}x{index}"
    features, options = [], {}
    for i in range(n_features):
        kind = "MULTIVARIATE" if i % 3 == 0 else "STANDARD"
        feature = {"id": 1001 + i, "name": f"feature_{i:03d}", "type": kind}
        features.append(feature)
        if kind == "MULTIVARIATE":
            options[feature["id"]] = [
                {"id": 500_000 + i * 10 + k, "value": rng.choice(OPTION_VALUES)}
                for k in range(rng.randint(2, 3))
            ]
    feature_states = [feature_state(rng, ids, f, options.get(f["id"], [])) for f in features]

    segments = []
    for s in range(n_segments):
        # An ALL rule over 2-3 conditions and a nested ANY over 2: 4-5 conditions per segment.
        inner = {"type": "ANY", "rules": [], "conditions": [condition(rng) for _ in range(2)]}
        rule = {
            "type": "ALL",
            "rules": [inner],
            "conditions": [condition(rng) for _ in range(rng.randint(2, 3))],
        }
        overridden = rng.sample(features, 5)
        segments.append({
            "id": 9000 + s,
            "name": f"segment_{s:02d}",
            "rules": [rule],
            "feature_states": [
                feature_state(rng, ids, f, options.get(f["id"], []), segment_priority=s)
                for f in overridden
            ],
        })

    identity_overrides = []
    for k in range(5):
        overridden = rng.sample([f for f in features if f["type"] == "STANDARD"], 2)
        identity_overrides.append({
            "environment_api_key": api_key,
            "identifier": f"override_user_{k}",
            "identity_features": [feature_state(rng, ids, f, []) for f in overridden],
            "identity_traits": [],
            "identity_uuid": uid(rng),
        })

    return {
        "api_key": api_key,
        "id": 4000 + index,
        "name": f"bench environment {index}",
        "updated_at": "2025-01-01T00:00:00Z",
        "feature_states": feature_states,
        "identity_overrides": identity_overrides,
        "project": {
            "hide_disabled_flags": False,
            "id": 70 + index,
            "name": f"bench project {index}",
            "organisation": {
                "feature_analytics": False,
                "id": 1,
                "name": "bench",
                "persist_trait_data": True,
                "stop_serving_flags": False,
            },
            "segments": segments,
        },
    }


def main():
    args = sys.argv[1:]
    if not args:
        sys.exit(__doc__)
    out_dir = args[0]
    count, n_features, n_segments, seed = (
        int(a) for a in (args[1:] + ["1", "200", "20", "1"][len(args) - 1:])
    )
    os.makedirs(out_dir, exist_ok=True)
    for i in range(count):
        with open(os.path.join(out_dir, f"env-{i}.json"), "w") as f:
            json.dump(document(seed, i, n_features, n_segments), f, separators=(",", ":"))


if __name__ == "__main__":
    main()
