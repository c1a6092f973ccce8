"""OpenAPI-driven fuzzing (schemathesis) of the HTTP app in-process, against the scripted engine: whatever
the schema allows gets an answer that matches the schema, whatever it forbids gets a documented 4xx, and
nothing is a 5xx. Bounded example counts and a fixed seed keep it a few seconds and deterministic."""

from __future__ import annotations

import schemathesis  # a dev dependency (pyproject's dev extra, installed by `make venv`)
from hypothesis import HealthCheck, settings
from schemathesis.config import SchemathesisConfig

from serve.api import create_api
from serve.guard import GuardServer
from serve.service import GuardService

from conftest import ScriptedEngine, keyword_guard, make_config

APP = create_api(GuardService(GuardServer(ScriptedEngine(keyword_guard), make_config()), make_config()))
# 413 is a rejection too (the server's configured size limits, documented in README's error contract);
# 504 is the answer to a request's own `timeout_s` (a fuzzer sends 5e-324 s), not a server failure; any
# other 5xx fails. The coverage phase's boundary values (a million-character string in each of 10,001
# items) are left out.
CONFIG = SchemathesisConfig.from_dict({
    "checks": {"negative_data_rejection": {"expected-statuses": ["400", "401", "404", "405", "413", "415", "422"]},
               "not_a_server_error": {"expected-statuses": ["2xx", "3xx", "4xx", "504"]}},
    "phases": {"coverage": {"enabled": False}},
})
SCHEMA = schemathesis.openapi.from_asgi("/openapi.json", APP, config=CONFIG)


@SCHEMA.parametrize()
@settings(max_examples=60, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
def test_every_operation_conforms_to_its_schema(case):
    case.call_and_validate()
