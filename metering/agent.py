"""suanli-agent: the provider's metering agent.

    python -m metering.agent keygen   --key agent.key
    python -m metering.agent register --key agent.key --url https://suanli.example.com --api-key KEY --name rack-12
    python -m metering.agent run      --key agent.key --url https://suanli.example.com --api-key KEY \
        --lease 6b1f...:0-3 --lease 93c2...:4-7 --source nvml --spool /var/lib/suanli-agent

``keygen`` writes an Ed25519 private key (mode 0600) and prints its public half; ``register`` uploads the public
half with the organisation's API key (scope metering:write). Every later report is signed with the private key
(see metering/signing.py). Standard library HTTP only, so the agent installs anywhere the project does.

``run`` maps accelerators to leases (``LEASE_ID:0-3`` = devices 0 to 3), reads them from a source (``simulator``,
deterministic; ``nvml`` through pynvml; ``dcgm``, a dcgm-exporter's Prometheus text), and turns each closed
window (hour-aligned, ``--window-minutes`` dividing 60) into one record per lease whose ``record_id`` is derived
from the lease and the window, so a replay is a harmless ``duplicate``. Records reach a disk spool (fsync) before
anything is sent; a spooled batch file shrinks only when the server answered for its records: ``accepted`` and
``duplicate`` are done, ``conflict`` and ``rejected`` go to ``dead-letter.jsonl`` with the reason. Network errors
and 5xx back off exponentially with jitter. Killed at any point and started again, the agent resends what is
left in the spool: nothing is lost and the server's record ids make sure nothing counts twice.
``--from 2026-11-01T00:00:00Z --windows 24`` backfills past windows (the simulator can measure the past).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import random
import re
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

from metering import signing


def keygen(key_path: Path) -> str:
    if key_path.exists():
        raise SystemExit(f"{key_path} exists; refusing to overwrite a key (delete it first if you mean it)")
    key_path.parent.mkdir(parents=True, exist_ok=True)
    pem = signing.generate_private_key_pem()
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(pem)
    return public_key_of(key_path)


def public_key_of(key_path: Path) -> str:
    return signing.public_key_text(signing.public_raw_of(signing.load_private_key(key_path.read_bytes())))


def request_json(
    method: str,
    base_url: str,
    path: str,
    api_key: str,
    payload: Any = None,
    key_path: Path | None = None,
    idempotency_key: str | None = None,
    timeout: float = 30,
) -> tuple[int, Any]:
    """One API call, signed when a key is given. Returns (status, decoded JSON or None)."""
    body = b"" if payload is None else json.dumps(payload, separators=(",", ":")).encode()
    headers = {"Authorization": f"Api-Key {api_key}", "Accept": "application/json"}
    if payload is not None:
        headers["Content-Type"] = "application/json"
    if idempotency_key:
        headers["Idempotency-Key"] = idempotency_key
    if key_path is not None:
        private_key = signing.load_private_key(key_path.read_bytes())
        headers.update(signing.signed_headers(private_key, int(time.time()), method, path, body))
    if not base_url.startswith(("https://", "http://")):
        raise SystemExit(f"--url must be http(s)://, not {base_url!r}")
    url = base_url.rstrip("/") + path
    request = urllib.request.Request(url, data=body or None, method=method, headers=headers)  # noqa: S310 - checked
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 - scheme checked above  # nosec B310
            raw = response.read()
            return response.status, json.loads(raw) if raw else None
    except urllib.error.HTTPError as error:
        raw = error.read()
        try:
            return error.code, json.loads(raw) if raw else None
        except ValueError:
            return error.code, raw.decode(errors="replace")


def register(key_path: Path, base_url: str, api_key: str, name: str) -> tuple[int, Any]:
    payload = {"name": name, "public_key": public_key_of(key_path)}
    # A retried registration (same name and key) replays the first answer.
    idem = "register-" + str(uuid.uuid5(uuid.NAMESPACE_URL, json.dumps(payload, sort_keys=True)))
    status, body = request_json(
        "POST", base_url, "/api/v1/metering/signing-keys", api_key, payload, idempotency_key=idem
    )
    if status == 409 and isinstance(body, dict) and _error_code(body) == "duplicate_public_key":
        return 200, {"detail": "this public key is registered already", "public_key": payload["public_key"]}
    return status, body


def _error_code(body: dict[str, Any]) -> str | None:
    errors = body.get("errors") or [{}]
    return errors[0].get("code")


# --- run: sources -------------------------------------------------------------------------------------

RECORD_NAMESPACE = uuid.UUID("6f1c7f0e-5a57-4d1f-9a39-0b9e3a0c5e11")
INGEST_PATH = "/api/v1/metering/records"


@dataclass(frozen=True)
class LeaseMap:
    lease_id: str
    devices: tuple[int, ...]


def parse_lease_map(text: str) -> LeaseMap:
    """``LEASE_ID:0-3`` or ``LEASE_ID:0,2,5`` (accelerator indices the lease holds)."""
    lease_id, sep, spec = text.partition(":")
    if not sep or not lease_id or not spec:
        raise argparse.ArgumentTypeError(f"--lease {text!r}: write LEASE_ID:0-3 or LEASE_ID:0,1")
    devices: set[int] = set()
    try:
        for part in spec.split(","):
            low, dash, high = part.partition("-")
            devices.update(range(int(low), int(high) + 1) if dash else [int(low)])
    except ValueError:
        raise argparse.ArgumentTypeError(f"--lease {text!r}: device indices are numbers") from None
    return LeaseMap(lease_id, tuple(sorted(devices)))


@dataclass(frozen=True)
class DeviceUsage:
    """One accelerator over one window: seconds it was up and serving the lease, utilisation, IT energy."""

    seconds: int
    utilization_pct: float | None
    energy_wh: float | None


class Source(Protocol):
    name: str

    def observe(self, now: float) -> None: ...

    def measure(self, start: datetime, end: datetime, device: int) -> DeviceUsage: ...


class SimulatorSource:
    """Deterministic fake accelerators: the same window always measures the same (replays are duplicates).

    Utilisation varies around ``utilization_pct`` by a hash of (seed, device, window); a device is down for a
    whole window with probability 1 - ``availability``; energy = TDP x utilisation x time.
    """

    name = "simulator"

    def __init__(
        self, *, utilization_pct: float = 70, availability: float = 1.0, tdp_w: int = 700, seed: str = "suanli"
    ):
        self.utilization_pct = utilization_pct
        self.availability = availability
        self.tdp_w = tdp_w
        self.seed = seed

    def observe(self, now: float) -> None:
        return None

    def _unit(self, *parts: object) -> float:
        digest = hashlib.sha256("|".join(str(p) for p in (self.seed, *parts)).encode()).digest()
        return int.from_bytes(digest[:8], "big") / 2**64

    def measure(self, start: datetime, end: datetime, device: int) -> DeviceUsage:
        seconds = int((end - start).total_seconds())
        if self._unit("down", device, start.isoformat()) >= self.availability:
            return DeviceUsage(0, None, 0.0)
        util = min(100.0, max(0.0, self.utilization_pct + (self._unit("util", device, start.isoformat()) - 0.5) * 20))
        util = round(util, 1)
        return DeviceUsage(seconds, util, self.tdp_w * util / 100 * seconds / 3600)


@dataclass
class Sample:
    at: float
    utilization_pct: float | None
    energy_mj: float | None  # a running counter (millijoules since boot)
    power_w: float | None


class SampledSource:
    """Base of the real sources: ``observe`` samples every device; ``measure`` integrates a window's samples.

    A device counts as up for ``interval`` seconds per sample it answered in the window (capped at the window).
    Energy is the counter's growth when the device has one, else mean power x time.
    """

    name = "sampled"

    def __init__(self, interval: float):
        self.interval = interval
        self.samples: dict[int, list[Sample]] = {}

    def read(self) -> dict[int, tuple[float | None, float | None, float | None]]:
        raise NotImplementedError

    def observe(self, now: float) -> None:
        for device, (util, energy_mj, power_w) in self.read().items():
            self.samples.setdefault(device, []).append(Sample(now, util, energy_mj, power_w))

    def measure(self, start: datetime, end: datetime, device: int) -> DeviceUsage:
        lo, hi = start.timestamp(), end.timestamp()
        window = [s for s in self.samples.get(device, []) if lo <= s.at < hi]
        # Forget what no later window needs.
        self.samples[device] = [s for s in self.samples.get(device, []) if s.at >= lo]
        if not window:
            return DeviceUsage(0, None, None)
        seconds = int(min(hi - lo, len(window) * self.interval))
        utils = [s.utilization_pct for s in window if s.utilization_pct is not None]
        util = round(sum(utils) / len(utils), 1) if utils else None
        counters = [s.energy_mj for s in window if s.energy_mj is not None]
        powers = [s.power_w for s in window if s.power_w is not None]
        energy: float | None = None
        if len(counters) >= 2:
            span = window[-1].at - window[0].at
            growth = max(0.0, counters[-1] - counters[0]) / 3_600_000  # mJ -> Wh
            energy = growth * (seconds / span) if span > 0 else growth
        elif powers:
            energy = sum(powers) / len(powers) * seconds / 3600
        return DeviceUsage(seconds, util, energy)


class NvmlSource(SampledSource):
    """NVIDIA accelerators through NVML (pip install nvidia-ml-py)."""

    name = "nvml"

    def __init__(self, interval: float):
        super().__init__(interval)
        import pynvml  # optional dependency: only on hosts with NVIDIA drivers

        self.nvml = pynvml
        pynvml.nvmlInit()
        self.handles = [pynvml.nvmlDeviceGetHandleByIndex(i) for i in range(pynvml.nvmlDeviceGetCount())]

    def read(self) -> dict[int, tuple[float | None, float | None, float | None]]:
        out: dict[int, tuple[float | None, float | None, float | None]] = {}
        for index, handle in enumerate(self.handles):
            try:
                util = float(self.nvml.nvmlDeviceGetUtilizationRates(handle).gpu)
            except self.nvml.NVMLError:
                continue  # the device does not answer: not up for this sample
            energy = power = None
            with contextlib.suppress(self.nvml.NVMLError):
                energy = float(self.nvml.nvmlDeviceGetTotalEnergyConsumption(handle))
            with contextlib.suppress(self.nvml.NVMLError):
                power = self.nvml.nvmlDeviceGetPowerUsage(handle) / 1000
            out[index] = (util, energy, power)
        return out


_PROM_LINE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{([^}]*)\})?\s+(\S+)")
_PROM_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def parse_dcgm_metrics(text: str) -> dict[int, tuple[float | None, float | None, float | None]]:
    """dcgm-exporter's Prometheus text -> {gpu index: (utilisation %, energy counter mJ, power W)}."""
    wanted = {"DCGM_FI_DEV_GPU_UTIL": 0, "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION": 1, "DCGM_FI_DEV_POWER_USAGE": 2}
    devices: dict[int, list[float | None]] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        match = _PROM_LINE.match(line)
        if not match or match.group(1) not in wanted:
            continue
        labels = dict(_PROM_LABEL.findall(match.group(3) or ""))
        try:
            gpu, value = int(labels.get("gpu", "")), float(match.group(4))
        except ValueError:
            continue
        devices.setdefault(gpu, [None, None, None])[wanted[match.group(1)]] = value
    return {gpu: (v[0], v[1], v[2]) for gpu, v in devices.items()}


class DcgmSource(SampledSource):
    """A dcgm-exporter's /metrics endpoint (default http://localhost:9400/metrics)."""

    name = "dcgm"

    def __init__(self, interval: float, url: str):
        super().__init__(interval)
        if not url.startswith(("http://", "https://")):
            raise SystemExit(f"--dcgm-url must be http(s)://, not {url!r}")
        self.url = url

    def read(self) -> dict[int, tuple[float | None, float | None, float | None]]:
        try:
            with urllib.request.urlopen(self.url, timeout=5) as response:  # noqa: S310 - scheme checked  # nosec B310
                return parse_dcgm_metrics(response.read().decode(errors="replace"))
        except (OSError, ValueError) as error:
            log("dcgm_unreachable", error=str(error))
            return {}


# --- run: records, spool, sender ----------------------------------------------------------------------


def log(event: str, **fields: Any) -> None:
    print(json.dumps({"event": event, **fields}, ensure_ascii=False, default=str), flush=True)


def _rfc3339(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def record_id_for(lease_id: str, start: datetime, end: datetime) -> str:
    return "agt-" + uuid.uuid5(RECORD_NAMESPACE, f"{lease_id}|{_rfc3339(start)}|{_rfc3339(end)}").hex


def build_record(lease: LeaseMap, start: datetime, end: datetime, usage: list[DeviceUsage]) -> dict[str, Any]:
    """One record per lease per window, from its accelerators' usage."""
    window_seconds = int((end - start).total_seconds())
    seconds = sum(min(u.seconds, window_seconds) for u in usage)
    record: dict[str, Any] = {
        "record_id": record_id_for(lease.lease_id, start, end),
        "lease_id": lease.lease_id,
        "window_start": _rfc3339(start),
        "window_end": _rfc3339(end),
        "accelerator_seconds": seconds,
    }
    weighted = [(u.utilization_pct, u.seconds) for u in usage if u.utilization_pct is not None and u.seconds]
    if weighted:
        total = sum(s for _u, s in weighted)
        record["avg_utilization_pct"] = round(sum(u * s for u, s in weighted) / total, 2)
    if usage and all(u.energy_wh is not None for u in usage):
        record["energy_wh"] = round(sum(u.energy_wh or 0.0 for u in usage))
    return record


def windows_between(start: datetime, end: datetime, minutes: int) -> Iterator[tuple[datetime, datetime]]:
    step = timedelta(minutes=minutes)
    cursor = start
    while cursor + step <= end:
        yield cursor, cursor + step
        cursor += step


def align_down(value: datetime, minutes: int) -> datetime:
    value = value.astimezone(UTC).replace(second=0, microsecond=0)
    return value.replace(minute=value.minute - value.minute % minutes)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_durably(path: Path, data: bytes) -> None:
    """Write a file so that it is either absent or whole after a crash: temp file, fsync, rename, fsync dir."""
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)


@dataclass
class Spool:
    """pending/<seq>.json: batches not yet answered; dead-letter.jsonl: records the server refused; state.json."""

    root: Path

    def __post_init__(self) -> None:
        self.pending.mkdir(parents=True, exist_ok=True)
        for stale in self.pending.glob(".*.tmp"):  # a write cut short by a crash: its batch was never complete
            stale.unlink()

    @property
    def pending(self) -> Path:
        return self.root / "pending"

    @property
    def dead_letter(self) -> Path:
        return self.root / "dead-letter.jsonl"

    def files(self) -> list[Path]:
        return sorted(self.pending.glob("*.json"))

    def add(self, records: list[dict[str, Any]], batch_size: int) -> int:
        written = 0
        for index in range(0, len(records), batch_size):
            chunk = records[index : index + batch_size]
            name = f"{time.time_ns():020d}-{os.getpid()}-{index // batch_size:04d}.json"
            _write_durably(self.pending / name, json.dumps({"records": chunk}, separators=(",", ":")).encode())
            written += len(chunk)
        return written

    def load(self, path: Path) -> list[dict[str, Any]]:
        return list(json.loads(path.read_bytes())["records"])

    def keep_only(self, path: Path, records: list[dict[str, Any]]) -> None:
        if records:
            _write_durably(path, json.dumps({"records": records}, separators=(",", ":")).encode())
        else:
            path.unlink()
            _fsync_dir(path.parent)

    def bury(self, entries: list[dict[str, Any]]) -> None:
        if not entries:
            return
        with open(self.dead_letter, "a", encoding="utf-8") as handle:
            for entry in entries:
                handle.write(json.dumps(entry, ensure_ascii=False, separators=(",", ":")) + "\n")
            handle.flush()
            os.fsync(handle.fileno())

    def state(self) -> dict[str, Any]:
        path = self.root / "state.json"
        return json.loads(path.read_bytes()) if path.exists() else {}

    def save_state(self, state: dict[str, Any]) -> None:
        _write_durably(self.root / "state.json", json.dumps(state, sort_keys=True).encode())


class TransientError(Exception):
    """Worth retrying: the network, a 5xx, 429, or a signature the server could not check yet (clock, key)."""


@dataclass
class Sender:
    base_url: str
    api_key: str
    key_path: Path
    spool: Spool
    backoff_base: float = 1.0
    backoff_max: float = 60.0
    timeout: float = 60.0
    sleep: Callable[[float], None] = time.sleep
    rng: random.Random = field(default_factory=random.Random)

    def backoff(self, attempt: int) -> float:
        """Exponential with jitter: uniformly between half and the whole of base x 2^attempt, capped."""
        ceiling = min(self.backoff_max, self.backoff_base * 2**attempt)
        return self.rng.uniform(ceiling / 2, ceiling)

    def post(self, records: list[dict[str, Any]]) -> tuple[int, Any]:
        try:
            return request_json(
                "POST",
                self.base_url,
                INGEST_PATH,
                self.api_key,
                {"records": records},
                key_path=self.key_path,
                timeout=self.timeout,
            )
        except (urllib.error.URLError, OSError, ValueError) as error:
            raise TransientError(str(error)) from error

    def send_file(self, path: Path) -> dict[str, int]:
        """Send one spooled batch until the server answers for it; shrink the spool by what it answered."""
        records = self.spool.load(path)
        attempt = 0
        while True:
            try:
                status, body = self.post(records)
                if status >= 500 or status in (401, 408, 429):
                    raise TransientError(f"HTTP {status}: {body}")
                break
            except TransientError as error:
                delay = self.backoff(attempt)
                log("send_retry", file=path.name, attempt=attempt + 1, delay_s=round(delay, 2), error=str(error)[:300])
                self.sleep(delay)
                attempt += 1
        now = _rfc3339(datetime.now(UTC))
        if status != 200 or not isinstance(body, dict) or not isinstance(body.get("results"), list):
            # The whole request is refused (400, 403, 413): it cannot succeed as it is. Keep it for a human.
            self.spool.bury(
                [{"record": r, "status": "refused", "http_status": status, "error": body, "at": now} for r in records]
            )
            self.spool.keep_only(path, [])
            log("batch_refused", file=path.name, http_status=status, error=body)
            return {"refused": len(records)}
        by_id = {r["record_id"]: r for r in records}
        answered: set[str] = set()
        dead: list[dict[str, Any]] = []
        counts: dict[str, int] = {}
        for result in body["results"]:
            record_id = result.get("record_id")
            if record_id not in by_id:
                continue
            answered.add(record_id)
            counts[result["status"]] = counts.get(result["status"], 0) + 1
            if result["status"] in ("conflict", "rejected"):
                dead.append({"record": by_id[record_id], **result, "at": now})
        self.spool.bury(dead)
        self.spool.keep_only(path, [r for r in records if r["record_id"] not in answered])
        log("batch_sent", file=path.name, **counts)
        return counts

    def drain(self) -> dict[str, int]:
        totals: dict[str, int] = {}
        for path in self.spool.files():
            for status, count in self.send_file(path).items():
                totals[status] = totals.get(status, 0) + count
        return totals


def make_source(args: argparse.Namespace) -> Source:
    if args.source == "simulator":
        return SimulatorSource(
            utilization_pct=args.sim_utilization,
            availability=args.sim_availability,
            tdp_w=args.sim_tdp_w,
            seed=args.sim_seed,
        )
    if args.source == "nvml":
        try:
            return NvmlSource(args.sample_seconds)
        except ImportError:
            raise SystemExit("--source nvml needs pynvml: pip install nvidia-ml-py") from None
    return DcgmSource(args.sample_seconds, args.dcgm_url)


def spool_window(
    spool: Spool, source: Source, leases: list[LeaseMap], start: datetime, end: datetime, batch_size: int
) -> int:
    records = [
        build_record(lease, start, end, [source.measure(start, end, d) for d in lease.devices]) for lease in leases
    ]
    return spool.add(records, batch_size)


def run(args: argparse.Namespace) -> int:
    minutes = args.window_minutes
    if minutes <= 0 or 60 % minutes:
        raise SystemExit("--window-minutes must divide 60 (1, 2, 3, 4, 5, 6, 10, 12, 15, 20, 30, 60)")
    spool = Spool(args.spool)
    source = make_source(args)
    sender = Sender(args.url, args.api_key, args.key, spool, args.backoff_base, args.backoff_max)
    leases: list[LeaseMap] = args.lease
    state = spool.state()
    # Windows before this instant are spooled already (a restart must not measure them twice).
    done_until = datetime.fromisoformat(state["spooled_until"]) if "spooled_until" in state else None
    pending = len(spool.files())
    if pending:
        log("spool_resend", files=pending)
    sender.drain()
    if args.once:
        return 0
    if args.start is not None:
        if source.name != "simulator":
            raise SystemExit("--from backfills past windows: only the simulator can measure the past")
        start = align_down(args.start, minutes)
        end = start + timedelta(minutes=minutes * args.windows)
        end = min(end, align_down(datetime.now(UTC), minutes))
        for w_start, w_end in windows_between(start, end, minutes):
            if done_until is not None and w_end <= done_until:
                continue
            spool_window(spool, source, leases, w_start, w_end, args.batch_size)
            spool.save_state({**state, "spooled_until": w_end.isoformat()})
        sender.drain()
        log("done", dead_letter=str(spool.dead_letter) if spool.dead_letter.exists() else None)
        return 0
    # Live: sample, and at every window boundary spool the window that just closed, then send.
    produced = 0
    window_start = align_down(datetime.now(UTC), minutes)
    while args.windows == 0 or produced < args.windows:
        window_end = window_start + timedelta(minutes=minutes)
        while (now := time.time()) < window_end.timestamp():
            source.observe(now)
            time.sleep(max(0.0, min(args.sample_seconds, window_end.timestamp() - time.time())))
        if done_until is None or window_end > done_until:
            spool_window(spool, source, leases, window_start, window_end, args.batch_size)
            spool.save_state({**state, "spooled_until": window_end.isoformat()})
        sender.drain()
        produced += 1
        window_start = window_end
    return 0


def _utc_arg(text: str) -> datetime:
    value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if value.tzinfo is None:
        raise argparse.ArgumentTypeError("give a UTC offset, e.g. 2026-11-01T00:00:00Z")
    return value.astimezone(UTC)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="suanli-agent", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p_keygen = sub.add_parser("keygen", help="create an Ed25519 key pair; print the public key")
    p_keygen.add_argument("--key", type=Path, required=True, help="where to write the private key")
    p_register = sub.add_parser("register", help="register the public key with the platform")
    p_register.add_argument("--key", type=Path, required=True)
    p_register.add_argument("--url", required=True, help="the platform's base URL")
    p_register.add_argument("--api-key", default=os.environ.get("SUANLI_API_KEY"), help="or $SUANLI_API_KEY")
    p_register.add_argument("--name", default=os.uname().nodename)
    p_run = sub.add_parser("run", help="measure leases' accelerators, spool, sign and send usage records")
    p_run.add_argument("--key", type=Path, required=True)
    p_run.add_argument("--url", required=True, help="the platform's base URL")
    p_run.add_argument("--api-key", default=os.environ.get("SUANLI_API_KEY"), help="or $SUANLI_API_KEY")
    p_run.add_argument("--lease", type=parse_lease_map, action="append", default=[], help="LEASE_ID:0-3 (repeat)")
    p_run.add_argument("--spool", type=Path, default=Path(os.environ.get("SUANLI_AGENT_SPOOL", "suanli-spool")))
    p_run.add_argument("--source", choices=["simulator", "nvml", "dcgm"], default="simulator")
    p_run.add_argument("--dcgm-url", default="http://localhost:9400/metrics")
    p_run.add_argument("--window-minutes", type=int, default=60)
    p_run.add_argument("--sample-seconds", type=float, default=10.0)
    p_run.add_argument("--from", dest="start", type=_utc_arg, help="backfill windows from here (simulator)")
    p_run.add_argument("--windows", type=int, default=0, help="stop after this many windows (0: run forever)")
    p_run.add_argument("--batch-size", type=int, default=1000)
    p_run.add_argument("--once", action="store_true", help="only resend the spool, then exit")
    p_run.add_argument("--backoff-base", type=float, default=1.0)
    p_run.add_argument("--backoff-max", type=float, default=60.0)
    p_run.add_argument("--sim-utilization", type=float, default=70.0)
    p_run.add_argument("--sim-availability", type=float, default=1.0)
    p_run.add_argument("--sim-tdp-w", type=int, default=700)
    p_run.add_argument("--sim-seed", default="suanli")
    args = parser.parse_args(argv)

    if args.command == "keygen":
        public = keygen(args.key)
        print(public)
        print(f"fingerprint {signing.fingerprint(signing.parse_public_key(public))}", file=sys.stderr)
        return 0
    if not args.api_key:
        parser.error("--api-key or $SUANLI_API_KEY is required")
    if args.command == "run":
        if not args.lease and not args.once:
            parser.error("map at least one lease to accelerators: --lease LEASE_ID:0-3")
        return run(args)
    status, body = register(args.key, args.url, args.api_key, args.name)
    print(json.dumps(body, ensure_ascii=False, indent=2))
    return 0 if status in (200, 201) else 1


if __name__ == "__main__":
    sys.exit(main())
