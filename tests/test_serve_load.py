"""A bounded load test of `skitflow serve` on 127.0.0.1 (the mix is benchmarks/serve_load.py):
200 concurrent clients, valid and invalid requests, slow clients, and a KFP test server that
answers 503 or stalls. Nothing crashes, nothing is duplicated, every answer comes in time."""

import pytest

from benchmarks.serve_load import environment, load

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore::FutureWarning")]


def test_two_hundred_concurrent_clients_with_kubeflow_faults() -> None:
    kfp_timeout = 3.0
    with environment(kfp_timeout) as (kfp, service):
        report = load(service.url, service.token, kfp, requests_total=400, concurrency=200,
                      kfp_timeout=kfp_timeout)
        assert requests_health(service.url) == 200  # still up afterwards
    print(report.text())
    assert report.failures == [], report.failures[:5]  # no 500, no dropped connection
    assert report.over_bound == [], report.over_bound[:5]
    assert report.duplicates == 0
    statuses = {(o.kind, o.status) for o in report.outcomes}
    assert ("run", 201) in statuses and ("run", 200) in statuses  # started, then replayed
    assert {("invalid", 400), ("unauthorised", 401), ("oversized", 413),
            ("slow", 200)} <= statuses
    assert any(o.kind == "run" and o.status in (502, 504) for o in report.outcomes)
    answered = {o.run_id for o in report.outcomes if o.run_id}
    with kfp.state.lock:
        assert answered <= set(kfp.state.runs)  # every run id answered exists on Kubeflow


def requests_health(url: str) -> int:
    import requests

    return requests.get(f"{url}/health", timeout=5).status_code
