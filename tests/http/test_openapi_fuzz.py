"""Property-based testing of every documented operation with Schemathesis and every one of its
checks, against a real hypercorn serving the app on PostgreSQL and Redis: no 5xx, every status,
body, header and content type the documented one, schema-valid requests accepted and invalid
ones refused. `make fuzz` runs it longer (tests/http/fuzz.py runs it against any server)."""

from __future__ import annotations

import os

from tests.http import fuzz

EXAMPLES = int(os.environ.get("TASKAPI_FUZZ_EXAMPLES", "25"))


def test_every_operation_conforms_to_the_document(served_api):
    tokens = fuzz.tokens_for(served_api, "fuzzer", "fuzz-password")
    seed = int(os.environ.get("TASKAPI_FUZZ_SEED", fuzz.SEED))
    failed = fuzz.run(served_api, tokens, EXAMPLES, seed)
    assert not failed, "\n".join(failed)
