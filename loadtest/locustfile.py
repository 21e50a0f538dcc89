"""Suanli load test (``make load``): realistic users against a running app, loopback only.

- ``Buyer`` (portal, logged in with a demo login): the market page and its depth chart, the catalogue, the
  invoices list and an invoice.
- ``Provider`` (metering agent): signed batches of 50 one-minute usage records of its lease; one batch in ten is
  resent whole (an agent unsure whether its last batch arrived: every record comes back ``duplicate``).
- ``ApiClient`` (a buyer's trading program): places a bid with an ``Idempotency-Key`` (a low limit, so that it
  rests), sometimes retries the same request (same key: the same bid back), lists its open bids, cancels it.

The credentials come from ``loadtest/prepare.py`` (``LOAD_FIXTURE``, JSON). Run it through ``make load``
(loadtest/run.py), which starts everything and prints the figures.
"""

from __future__ import annotations

import itertools
import json
import os
import random
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

from locust import HttpUser, between, task

from metering import signing

FIXTURE = json.loads(Path(os.environ.get("LOAD_FIXTURE", ".data/load/fixture.json")).read_text())
METERING_PATH = "/api/v1/metering/records"
_buyer_turn = itertools.count()
_client_turn = itertools.count()
rng = random.Random()  # noqa: S311  (a load mix, not secrets)


class Buyer(HttpUser):
    weight = 4
    wait_time = between(1, 3)

    def on_start(self) -> None:
        login = FIXTURE["buyers"][next(_buyer_turn) % len(FIXTURE["buyers"])]
        self.invoices = login["invoices"]
        self.client.get("/accounts/login/", name="/accounts/login/")
        token = self.client.cookies.get("csrftoken", "")
        response = self.client.post(
            "/accounts/login/",
            data={"username": login["email"], "password": login["password"], "csrfmiddlewaretoken": token},
            headers={"Referer": f"{self.host}/accounts/login/"},
            name="/accounts/login/ (POST)",
            allow_redirects=False,
        )
        if response.status_code != 302:
            response.failure(f"login refused: {response.status_code}")

    @task(5)
    def market(self) -> None:
        self.client.get("/market/", name="/market/")

    @task(2)
    def market_depth(self) -> None:
        self.client.get("/market/depth/", name="/market/depth/", headers={"HX-Request": "true"})

    @task(2)
    def catalog(self) -> None:
        self.client.get("/catalog/", name="/catalog/")

    @task(3)
    def invoices(self) -> None:
        self.client.get("/billing/invoices/", name="/billing/invoices/")

    @task(2)
    def invoice(self) -> None:
        if self.invoices:
            self.client.get(f"/billing/invoices/{rng.choice(self.invoices)}/", name="/billing/invoices/[id]/")


class Provider(HttpUser):
    weight = 1
    wait_time = between(1, 2)

    def on_start(self) -> None:
        spec = FIXTURE["providers"][0]
        self.api_key = spec["api_key"]
        self.private_key = signing.load_private_key(spec["private_key_pem"].encode())
        self.lease_id = spec["lease_id"]
        lease_start = datetime.fromisoformat(spec["lease_start"])
        month_start = datetime.now(tz=UTC).replace(day=1, hour=0, minute=0, second=0, microsecond=0)
        self.earliest = max(lease_start, month_start + timedelta(hours=2))
        self.last_body: bytes | None = None

    def _send(self, body: bytes, name: str) -> None:
        headers = signing.signed_headers(self.private_key, int(time.time()), "POST", METERING_PATH, body)
        headers |= {"Authorization": f"Api-Key {self.api_key}", "Content-Type": "application/json"}
        with self.client.post(METERING_PATH, data=body, headers=headers, name=name, catch_response=True) as response:
            if response.status_code != 200:
                response.failure(f"{response.status_code}: {response.text[:200]}")
                return
            answer = response.json()
            if answer["rejected"] or answer["conflict"]:
                response.failure(f"rejected {answer['rejected']}, conflicts {answer['conflict']}")

    @task(9)
    def report_usage(self) -> None:
        latest = datetime.now(tz=UTC) - timedelta(minutes=2)
        span = max(60, int((latest - self.earliest).total_seconds()) - 60)
        records = []
        for _ in range(50):
            begin = self.earliest + timedelta(seconds=rng.randrange(span))
            records.append(
                {
                    "record_id": f"load-{uuid.uuid4().hex}",
                    "lease_id": self.lease_id,
                    "window_start": begin.isoformat(),
                    "window_end": (begin + timedelta(minutes=1)).isoformat(),
                    "accelerator_seconds": 8 * 60,
                    "avg_utilization_pct": rng.randint(40, 100),
                    "energy_wh": rng.randint(80, 120),
                }
            )
        self.last_body = json.dumps({"records": records}).encode()
        self._send(self.last_body, METERING_PATH)

    @task(1)
    def resend_last_batch(self) -> None:
        if self.last_body is not None:
            self._send(self.last_body, f"{METERING_PATH} (resent)")


class ApiClient(HttpUser):
    weight = 2
    wait_time = between(1, 3)

    def on_start(self) -> None:
        keys = FIXTURE["api_keys"]
        self.headers = {"Authorization": f"Api-Key {keys[next(_client_turn) % len(keys)]}"}

    @task
    def bid_and_cancel(self) -> None:
        start = (datetime.now(tz=UTC) + timedelta(days=2)).replace(minute=0, second=0, microsecond=0)
        bid = {
            "accelerators": rng.randint(1, 8),
            "hours": 4,
            "earliest_start": start.isoformat(),
            "latest_end": (start + timedelta(hours=24)).isoformat(),
            "limit_price": "0.10",  # below every ask: the bid rests
        }
        key = {"Idempotency-Key": uuid.uuid4().hex}
        with self.client.post(
            "/api/v1/market/bids", json=bid, headers=self.headers | key, name="/api/v1/market/bids", catch_response=True
        ) as response:
            if response.status_code != 201:
                response.failure(f"{response.status_code}: {response.text[:200]}")
                return
            bid_id = response.json()["id"]
        if rng.random() < 0.2:  # the client did not see the answer and retries with the same key
            with self.client.post(
                "/api/v1/market/bids",
                json=bid,
                headers=self.headers | key,
                name="/api/v1/market/bids (retried)",
                catch_response=True,
            ) as again:
                if again.status_code != 201 or again.json()["id"] != bid_id:
                    again.failure(f"the retry did not replay the bid: {again.status_code} {again.text[:200]}")
        self.client.get("/api/v1/market/bids?status=open", headers=self.headers, name="/api/v1/market/bids?status=open")
        self.client.post(
            f"/api/v1/market/bids/{bid_id}/cancel",
            headers=self.headers | {"Idempotency-Key": uuid.uuid4().hex},
            name="/api/v1/market/bids/[id]/cancel",
        )
