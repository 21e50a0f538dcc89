"""The agent's pieces without a server: sources, record building, spool, retries with backoff."""

from __future__ import annotations

import json
import random
import urllib.error
from datetime import UTC, datetime, timedelta

import pytest

from metering import agent

T0 = datetime(2026, 11, 1, tzinfo=UTC)


def test_lease_map_parsing():
    assert agent.parse_lease_map("abc:0-3").devices == (0, 1, 2, 3)
    assert agent.parse_lease_map("abc:5,1,2-3").devices == (1, 2, 3, 5)
    with pytest.raises(Exception, match="LEASE_ID"):
        agent.parse_lease_map("abc")


def test_simulator_is_deterministic_and_honours_availability():
    a = agent.SimulatorSource(utilization_pct=60, seed="x")
    b = agent.SimulatorSource(utilization_pct=60, seed="x")
    end = T0 + timedelta(hours=1)
    assert [a.measure(T0, end, d) for d in range(8)] == [b.measure(T0, end, d) for d in range(8)]
    usage = a.measure(T0, end, 0)
    assert usage.seconds == 3600
    assert 50 <= usage.utilization_pct <= 70
    down = agent.SimulatorSource(availability=0.0)
    assert down.measure(T0, end, 0).seconds == 0


def test_record_ids_come_from_lease_and_window():
    lease = agent.LeaseMap("L1", (0, 1))
    source = agent.SimulatorSource()
    end = T0 + timedelta(minutes=15)
    one = agent.build_record(lease, T0, end, [source.measure(T0, end, d) for d in lease.devices])
    two = agent.build_record(lease, T0, end, [source.measure(T0, end, d) for d in lease.devices])
    assert one == two
    assert one["accelerator_seconds"] == 2 * 900
    assert one["window_start"] == "2026-11-01T00:00:00Z"
    assert agent.record_id_for("L1", T0, end) != agent.record_id_for("L2", T0, end)
    assert agent.record_id_for("L1", T0, end) != agent.record_id_for("L1", end, end + timedelta(minutes=15))


def test_energy_is_omitted_when_a_device_has_no_measure():
    lease = agent.LeaseMap("L1", (0, 1))
    usage = [agent.DeviceUsage(3600, 50, 350.0), agent.DeviceUsage(3600, 50, None)]
    record = agent.build_record(lease, T0, T0 + timedelta(hours=1), usage)
    assert "energy_wh" not in record
    assert record["avg_utilization_pct"] == 50


DCGM_TEXT = """# HELP DCGM_FI_DEV_GPU_UTIL GPU utilization (in %).
# TYPE DCGM_FI_DEV_GPU_UTIL gauge
DCGM_FI_DEV_GPU_UTIL{gpu="0",UUID="GPU-a",device="nvidia0",modelName="NVIDIA H100 80GB HBM3",Hostname="h"} 87
DCGM_FI_DEV_GPU_UTIL{gpu="1",UUID="GPU-b",device="nvidia1",modelName="NVIDIA H100 80GB HBM3",Hostname="h"} 12
DCGM_FI_DEV_POWER_USAGE{gpu="0",UUID="GPU-a",device="nvidia0"} 612.5
DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION{gpu="0",UUID="GPU-a",device="nvidia0"} 123456789
DCGM_FI_DEV_FB_USED{gpu="0",UUID="GPU-a",device="nvidia0"} 1000
"""


def test_dcgm_text_is_parsed_per_gpu():
    parsed = agent.parse_dcgm_metrics(DCGM_TEXT)
    assert parsed[0] == (87.0, 123456789.0, 612.5)
    assert parsed[1] == (12.0, None, None)


def test_sampled_source_integrates_a_window():
    class Fake(agent.SampledSource):
        def __init__(self):
            super().__init__(interval=60)
            self.counter = 0.0

        def read(self):
            self.counter += 700 * 60 * 1000  # 700 W for a minute, in mJ
            return {0: (80.0, self.counter, 700.0)}

    source = Fake()
    for minute in range(60):
        source.observe((T0 + timedelta(minutes=minute)).timestamp())
    usage = source.measure(T0, T0 + timedelta(hours=1), 0)
    assert usage.seconds == 3600
    assert usage.utilization_pct == 80
    assert usage.energy_wh == pytest.approx(700, rel=0.01)
    assert source.measure(T0, T0 + timedelta(hours=1), 1).seconds == 0  # a device that never answered


class FakeSender(agent.Sender):
    def __init__(self, spool, answers):
        super().__init__("http://x", "k", spool.root / "none", spool, sleep=self.nap, rng=random.Random(1))
        self.answers = list(answers)
        self.naps: list[float] = []
        self.posted: list[list[str]] = []

    def nap(self, seconds):
        self.naps.append(seconds)

    def post(self, records):
        self.posted.append([r["record_id"] for r in records])
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise agent.TransientError(str(answer))
        if callable(answer):
            return 200, {"results": [answer(r) for r in records]}
        return answer


def _records(n):
    return [{"record_id": f"r{i}", "lease_id": "L"} for i in range(n)]


def test_network_errors_back_off_with_jitter_then_the_spool_empties(tmp_path):
    spool = agent.Spool(tmp_path)
    spool.add(_records(3), batch_size=10)
    accepted = lambda r: {"record_id": r["record_id"], "status": "accepted"}  # noqa: E731
    sender = FakeSender(spool, [urllib.error.URLError("down"), (503, None), OSError("reset"), accepted])
    assert sender.drain() == {"accepted": 3}
    assert len(sender.naps) == 3
    assert 0.5 <= sender.naps[0] <= 1
    assert 1 <= sender.naps[1] <= 2
    assert 2 <= sender.naps[2] <= 4
    assert spool.files() == []


def test_results_shrink_the_spool_and_refusals_are_dead_lettered(tmp_path):
    spool = agent.Spool(tmp_path)
    spool.add(_records(4), batch_size=10)
    verdicts = {
        "r0": {"status": "accepted"},
        "r1": {"status": "duplicate"},
        "r2": {"status": "conflict", "code": "conflict", "message": "other content"},
        "r3": {"status": "rejected", "code": "outside_lease", "message": "outside"},
    }
    sender = FakeSender(spool, [lambda r: {"record_id": r["record_id"], **verdicts[r["record_id"]]}])
    sender.drain()
    assert spool.files() == []
    dead = [json.loads(line) for line in spool.dead_letter.read_text().splitlines()]
    assert [(d["record"]["record_id"], d["code"]) for d in dead] == [("r2", "conflict"), ("r3", "outside_lease")]


def test_unanswered_records_stay_spooled(tmp_path):
    spool = agent.Spool(tmp_path)
    spool.add(_records(3), batch_size=10)
    sender = FakeSender(spool, [(200, {"results": [{"record_id": "r0", "status": "accepted"}]})])
    sender.drain()
    [left] = spool.files()
    assert [r["record_id"] for r in spool.load(left)] == ["r1", "r2"]


def test_a_refused_request_is_dead_lettered_whole(tmp_path):
    spool = agent.Spool(tmp_path)
    spool.add(_records(2), batch_size=10)
    sender = FakeSender(spool, [(400, {"errors": [{"code": "invalid_batch"}]})])
    assert sender.drain() == {"refused": 2}
    assert len(spool.dead_letter.read_text().splitlines()) == 2
    assert spool.files() == []


def test_spool_files_are_whole_or_absent(tmp_path):
    spool = agent.Spool(tmp_path)
    (spool.pending / ".half.json.tmp").write_text('{"records": [')  # a crash mid-write
    spool = agent.Spool(tmp_path)
    assert spool.files() == []
    spool.add(_records(5), batch_size=2)
    assert [len(spool.load(p)) for p in spool.files()] == [2, 2, 1]
