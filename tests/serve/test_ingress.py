"""The ingress's failover logic (serve/ingress.py) against a handle double that answers like a
GuardDeployment handle; the real thing (two replicas, one killed under load) is in test_serve_ray.py."""

from __future__ import annotations

import asyncio

import pytest
from conftest import make_config
from ray.exceptions import ActorDiedError
from ray.serve.exceptions import BackPressureError

from serve.errors import GuardError
from serve.ingress import RemoteGuardService, error_envelope
from serve.schemas import GuardRequest

def _ok() -> dict:
    """A real model replica's answer: the in-process GuardService on the scripted engine, enveloped."""
    from conftest import ScriptedEngine, keyword_guard

    from serve.guard import GuardServer
    from serve.ingress import call_in_envelope
    from serve.service import GuardService

    config = make_config()
    model = GuardService(GuardServer(ScriptedEngine(keyword_guard), config), config)
    return asyncio.run(call_in_envelope(model.guard(GuardRequest(prompt="how do I build a bomb", mode="no_think"))))


OK = _ok()


class Method:
    def __init__(self, outcomes):
        self.outcomes, self.calls = list(outcomes), []

    def remote(self, *args):
        self.calls.append(args[0] if args else None)
        outcome = self.outcomes.pop(0)

        async def answer():
            if isinstance(outcome, BaseException):
                raise outcome
            return outcome

        return answer()


class Handle:
    def __init__(self, guard=(), health=({"healthy": True, "pending": 0},)):
        self.guard = Method(guard)
        self.health = Method(list(health) * 10)


def service(handle, **overrides):
    return RemoteGuardService(handle, make_config(replica__retry_after_s=3, **overrides))


def test_a_call_whose_replica_died_is_sent_again():
    handle = Handle(guard=[ActorDiedError(), ActorDiedError(), OK])
    svc = service(handle)
    response = asyncio.run(svc.guard(GuardRequest(prompt="x", mode="no_think")))
    assert response.prompt_harm == "harmful" and svc.failovers == 2 and len(handle.guard.calls) == 3
    sent = handle.guard.calls[0]  # the validated request itself, with only what the client set
    assert sent.model_dump(exclude_unset=True) == {"prompt": "x", "mode": "no_think"}
    assert svc.server.healthy and svc.pending == 0


def test_replicas_that_keep_dying_give_a_json_503():
    handle = Handle(guard=[ActorDiedError()] * 3)
    svc = service(handle, replica__failover_retries=2)
    with pytest.raises(GuardError) as err:
        asyncio.run(svc.guard(GuardRequest(prompt="x")))
    assert err.value.status == 503 and err.value.headers["Retry-After"] == "3" and not svc.server.healthy


def test_backpressure_is_an_overloaded_503_and_replica_errors_keep_their_contract():
    svc = service(Handle(guard=[BackPressureError(num_queued_requests=5, max_queued_requests=5)]))
    with pytest.raises(GuardError) as err:
        asyncio.run(svc.guard(GuardRequest(prompt="x")))
    assert err.value.status == 503 and err.value.kind == "overloaded"
    from serve.errors import DeadlineExceeded

    envelope = error_envelope(DeadlineExceeded("the guard did not answer within 1 s", "timeout_s"))
    svc = service(Handle(guard=[envelope]))
    with pytest.raises(GuardError) as err:
        asyncio.run(svc.guard(GuardRequest(prompt="x")))
    assert (err.value.status, err.value.kind, err.value.param) == (504, "timeout", "timeout_s")


def test_ready_only_after_a_model_replica_answered():
    svc = service(Handle(health=[RuntimeError("not yet"), {"healthy": True, "pending": 0}]))
    assert not svc.server.healthy

    async def main():
        svc.start_probe()
        await asyncio.wait_for(svc._probe, 10)

    asyncio.run(main())
    assert svc.server.healthy
