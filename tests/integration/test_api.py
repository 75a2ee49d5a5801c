"""The RAG API end to end on the real stack: PostgreSQL row -> CDC -> pipeline -> Qdrant -> answer.

One all-in-one instance per module (embedded Qdrant allows one process per folder): the API with
the feature pipeline in a thread (a fresh group starting at the CDC topic's end) and the real
local LLM behind the TGI protocol.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import psycopg
import pytest

from tests.utils.api import running_api
from tests.utils.net import free_port

pytestmark = [pytest.mark.stack, pytest.mark.slow]

TENANT = f"api{uuid.uuid4().hex[:6]}"
OTHER = f"oth{uuid.uuid4().hex[:6]}"
KEYS = {"key-a": TENANT, "key-b": OTHER}


@pytest.fixture(scope="module")
def api(stack: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    with running_api(
        stack,
        tmp_path_factory.mktemp("api"),
        "api",
        api_keys=KEYS,
        max_new_tokens=24,
        max_new_tokens_limit=24,
    ) as api:
        yield api


def upsert_row(dsn: str, tenant: str, doc_id: str, title: str, body: str) -> int:
    with psycopg.connect(dsn, autocommit=True) as conn:
        return int(
            conn.execute(
                "INSERT INTO documents (id, tenant, title, body) VALUES (%s, %s, %s, %s) ON CONFLICT (tenant, id) "
                "DO UPDATE SET title = EXCLUDED.title, body = EXCLUDED.body RETURNING version",
                (doc_id, tenant, title, body),
            ).fetchone()[0]
        )


def delete_row(dsn: str, tenant: str, doc_id: str) -> int:
    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute(
            "DELETE FROM documents WHERE tenant = %s AND id = %s RETURNING version", (tenant, doc_id)
        ).fetchone()
        return int(row[0])


def parse_sse(lines: list[str]) -> list[tuple[str, dict[str, Any]]]:
    events, event = [], ""
    for line in lines:
        if line.startswith("event: "):
            event = line[7:]
        elif line.startswith("data: "):
            events.append((event, json.loads(line[6:])))
    return events


def answer_stream(url: str, key: str, body: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    with httpx.stream("POST", f"{url}/v1/answer", json=body, headers={"X-API-Key": key}, timeout=300) as resp:
        assert resp.status_code == 200, resp.read()
        assert resp.headers["content-type"].startswith("text/event-stream")
        return parse_sse(list(resp.iter_lines()))


def test_insert_update_delete_are_answered_from_exactly(api: dict[str, Any]) -> None:
    url, dsn = api["url"], api["dsn"]
    doc = "volcano"
    v1 = upsert_row(
        dsn,
        TENANT,
        doc,
        "Mount Kelud",
        "Mount Kelud is a stratovolcano in East Java, Indonesia. Its crater lake was drained by tunnels.",
    )
    fresh = {"doc_id": doc, "min_version": v1, "timeout_s": 60}
    body = {"query": "Which volcano in East Java had its crater lake drained?", "k": 3, "freshness": fresh}
    events = answer_stream(url, "key-a", body)
    kinds = [k for k, _ in events]
    assert kinds.count("token") >= 1 and kinds[-2:] == ["citations", "done"]
    citations = events[-2][1]["citations"]
    assert [(c["doc_id"], c["version"]) for c in citations][:1] == [(doc, v1)]
    streamed = "".join(d["text"] for k, d in events if k == "token")

    # stream=false returns the same answer (greedy decoding) as one body.
    whole = httpx.post(
        f"{url}/v1/answer", json={**body, "stream": False}, headers={"X-API-Key": "key-a"}, timeout=300
    )
    assert whole.status_code == 200
    assert whole.json()["answer"] == streamed
    assert whole.json()["citations"][0]["doc_id"] == doc

    v2 = upsert_row(
        dsn, TENANT, doc, "Mount Kelud", "Mount Kelud erupted in 2014; ash closed seven airports."
    )
    search = httpx.post(
        f"{url}/v1/search",
        json={
            "query": "Kelud eruption airports",
            "k": 3,
            "freshness": {"doc_id": doc, "min_version": v2, "timeout_s": 60},
        },
        headers={"X-API-Key": "key-a"},
        timeout=120,
    ).json()
    assert search["results"] and {r["version"] for r in search["results"] if r["doc_id"] == doc} == {v2}
    assert "airports" in search["results"][0]["text"]

    v3 = delete_row(dsn, TENANT, doc)
    assert v3 == v2
    after = httpx.post(
        f"{url}/v1/answer",
        json={
            "query": "Kelud eruption airports",
            "stream": False,
            "freshness": {"doc_id": doc, "min_version": v3, "deleted": True, "timeout_s": 60},
        },
        headers={"X-API-Key": "key-a"},
        timeout=300,
    ).json()
    assert all(c["doc_id"] != doc for c in after["citations"])
    state = httpx.get(f"{url}/v1/documents/{doc}", headers={"X-API-Key": "key-a"}, timeout=30).json()
    assert state["deleted"] is True and state["chunk_count"] == 0 and state["indexed_version"] == v3


def test_nothing_relevant_means_dont_know(api: dict[str, Any]) -> None:
    resp = httpx.post(
        f"{api['url']}/v1/answer",
        json={"query": "qwxz plorf zzyzx", "stream": False},
        headers={"X-API-Key": "key-b"},
        timeout=120,
    )
    assert resp.status_code == 200
    assert resp.json()["dont_know"] is True and resp.json()["citations"] == []
    assert "don't know" in resp.json()["answer"]


@pytest.mark.parametrize("stream", [True, False])
def test_generator_down_is_a_503_on_answer_while_search_keeps_working(
    api: dict[str, Any], stream: bool
) -> None:
    from serving.generation.client import Generator

    tag = uuid.uuid4().hex[:8]
    doc = f"gendown-{tag}"
    # Its own island per run: both parametrisations index the same kind of row, and the same text
    # twice would tie in the ranking.
    version = upsert_row(
        api["dsn"], TENANT, doc, "Ferries", f"The ferry to Vashon{tag} leaves every forty minutes."
    )
    fresh = {"doc_id": doc, "min_version": version, "timeout_s": 60}
    state = api["state"]
    running = state.generator
    state.generator = Generator(f"http://127.0.0.1:{free_port()}")  # nothing listens there
    try:
        body = {
            "query": f"How often does the ferry to Vashon{tag} leave?",
            "stream": stream,
            "freshness": fresh,
        }
        answer = httpx.post(f"{api['url']}/v1/answer", json=body, headers={"X-API-Key": "key-a"}, timeout=120)
        search = httpx.post(
            f"{api['url']}/v1/search",
            json={"query": body["query"], "freshness": fresh, "k": 3},
            headers={"X-API-Key": "key-a"},
            timeout=120,
        )
    finally:
        state.generator = running

    assert answer.status_code == 503, answer.text
    assert "generator" in answer.json()["detail"] and "unavailable" in answer.json()["detail"]
    assert search.status_code == 200, search.text
    assert search.json()["results"][0]["doc_id"] == doc


def test_tenancy_and_auth(api: dict[str, Any]) -> None:
    url, dsn = api["url"], api["dsn"]
    v = upsert_row(dsn, TENANT, "secret", "Internal memo", "The launch code word is marmalade.")
    fresh = {"doc_id": "secret", "min_version": v, "timeout_s": 60}
    mine = httpx.post(
        f"{url}/v1/search",
        json={"query": "launch code word", "freshness": fresh},
        headers={"X-API-Key": "key-a"},
        timeout=120,
    ).json()
    assert any(r["doc_id"] == "secret" for r in mine["results"])
    theirs = httpx.post(
        f"{url}/v1/search",
        json={"query": "launch code word marmalade", "k": 50},
        headers={"X-API-Key": "key-b"},
        timeout=120,
    )
    assert theirs.status_code == 200 and all(r["doc_id"] != "secret" for r in theirs.json()["results"])
    other_state = httpx.get(f"{url}/v1/documents/secret", headers={"X-API-Key": "key-b"}, timeout=30).json()
    assert other_state["indexed_version"] is None
    assert httpx.post(f"{url}/v1/search", json={"query": "x"}, timeout=30).status_code == 401
    bad = httpx.post(f"{url}/v1/search", json={"query": "x"}, headers={"X-API-Key": "nope"}, timeout=30)
    assert bad.status_code == 401 and "unknown API key" in bad.json()["detail"]


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        ({}, "query"),
        ({"query": ""}, "query"),
        ({"query": "   "}, "blank"),
        ({"query": "x", "k": 0}, "k"),
        ({"query": "x", "k": 500}, "k"),
        ({"query": "x", "hybrid_weight": 2}, "hybrid_weight"),
        ({"query": "x", "fusion": "sum"}, "fusion"),
        ({"query": "x", "tenant": "other"}, "tenant"),
        ({"query": "x", "freshness": {"doc_id": "d"}}, "min_version"),
        ({"query": "x", "freshness": {"timeout_s": 5}}, "freshness"),
        ({"query": "x", "filters": {"a": {"nested": 1}}}, "filters"),
        ({"query": "x", "filters": {"a.b[0]": "v"}}, "filters"),
        # Found by the OpenAPI fuzz test: Qdrant's integers are 64-bit; this was a 500.
        ({"query": "x", "filters": {"year": [2**63]}}, "filters"),
        ({"query": "x", "filters": {"year": -(2**63) - 1}}, "filters"),
    ],
)
def test_invalid_requests_get_4xx_saying_what_is_wrong(api: dict[str, Any], body: dict, needle: str) -> None:
    resp = httpx.post(f"{api['url']}/v1/search", json=body, headers={"X-API-Key": "key-a"}, timeout=30)
    assert resp.status_code == 422
    assert needle in resp.json()["detail"]


def test_freshness_timeout_is_a_504_not_stale_data(api: dict[str, Any]) -> None:
    body = {
        "query": "anything",
        "freshness": {"doc_id": "never-written", "min_version": 10**12, "timeout_s": 1},
    }
    resp = httpx.post(f"{api['url']}/v1/search", json=body, headers={"X-API-Key": "key-a"}, timeout=30)
    assert resp.status_code == 504
    assert "did not catch up" in resp.json()["detail"]


def test_health_readiness_metrics_and_openapi(api: dict[str, Any]) -> None:
    url = api["url"]
    assert httpx.get(f"{url}/healthz", timeout=10).json() == {"status": "ok"}
    ready = httpx.get(f"{url}/readyz", timeout=30).json()
    assert ready["checks"] == {"kafka": True, "qdrant": True, "embedder": True, "generator": True}, ready
    metrics = httpx.get(f"{url}/metrics", timeout=10).text
    assert "streamrag_api_stage_seconds" in metrics
    lag = httpx.get(f"{url}/v1/lag", params={"group": "streamrag-pipeline"}, timeout=60)
    assert lag.status_code == 200 and "groups" in lag.json()
    assert httpx.get(f"{url}/v1/freshness", timeout=60).status_code in (200, 503)
    dashboard = httpx.get(f"{url}/dashboard", timeout=10)
    assert dashboard.status_code == 200 and ("<canvas" in dashboard.text or "<svg" in dashboard.text)
    spec = httpx.get(f"{url}/openapi.json", timeout=10).json()
    assert {"/v1/search", "/v1/answer", "/v1/documents/{doc_id}", "/healthz", "/readyz"} <= set(spec["paths"])


def test_openapi_fuzz_finds_no_server_error(api: dict[str, Any]) -> None:
    """Property-based fuzzing of every operation in the OpenAPI spec finds no 5xx."""
    import schemathesis
    from hypothesis import HealthCheck, given, settings

    schema = schemathesis.openapi.from_url(f"{api['url']}/openapi.json")
    failures: list[str] = []
    tried: dict[str, int] = {}

    def fuzzer(operation: Any) -> Any:
        label = f"{operation.method.upper()} {operation.path}"

        @settings(
            max_examples=12 if operation.path == "/v1/answer" else 40,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        @given(case=operation.as_strategy())
        def fuzz(case: Any) -> None:
            case.headers = {**(case.headers or {}), "X-API-Key": "key-a"}
            response = case.call(base_url=api["url"], timeout=120)
            tried[label] = tried.get(label, 0) + 1
            documented_timeout = response.status_code == 504 and "did not catch up" in response.text
            if response.status_code >= 500 and not documented_timeout:
                failures.append(f"{label} -> {response.status_code}: {response.text[:300]}")

        return fuzz

    for result in schema.get_all_operations():
        operation = result.ok()
        if operation.path == "/readyz":
            continue  # 503 is its documented answer while a dependency is down
        fuzzer(operation)()
    assert failures == []
    assert {"POST /v1/search", "POST /v1/answer", "GET /v1/documents/{doc_id}"} <= set(tried), tried


def test_ask_cli_streams_an_answer_with_sources(api: dict[str, Any]) -> None:
    import subprocess
    import sys

    v = upsert_row(
        api["dsn"], TENANT, "ask-cli", "Bread", "Sourdough bread rises because wild yeast ferments the dough."
    )
    httpx.post(f"{api['url']}/v1/search", json={"query": "x", "freshness": {"doc_id": "ask-cli", "min_version": v,
               "timeout_s": 60}}, headers={"X-API-Key": "key-a"}, timeout=120).raise_for_status()  # fmt: skip
    cmd = [sys.executable, "-m", "streamrag", "ask", "Why does sourdough bread rise?", "--url", api["url"],
           "--api-key", "key-a", "-k", "2"]  # fmt: skip
    streamed = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert streamed.returncode == 0, streamed.stderr
    assert "ask-cli" in streamed.stdout  # the citation line
    whole = subprocess.run([*cmd, "--no-stream", "--json"], capture_output=True, text=True, timeout=300)
    assert whole.returncode == 0, whole.stderr
    assert json.loads(whole.stdout)["citations"][0]["doc_id"] == "ask-cli"
    bad = subprocess.run([*cmd[:-4], "--api-key", "wrong"], capture_output=True, text=True, timeout=120)
    assert bad.returncode != 0 and "401" in bad.stderr and "Traceback" not in bad.stderr
