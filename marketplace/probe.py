"""suanli-probe: measure an accelerator's dense GEMM TFLOPS and memory bandwidth, print them, submit them.

    python -m marketplace.probe                        # measure and print
    python -m marketplace.probe --url https://suanli.example/api/v1/ --api-key KEY --pool POOL_ID

With PyTorch installed and an accelerator visible (CUDA/ROCm, Ascend via torch_npu, MUSA, XPU, MPS), it runs
an FP16 (or BF16) matrix multiplication and a device-to-device copy on it. Otherwise it measures the CPU with
NumPy (FP32 GEMM: NumPy has no fast half-precision GEMM), which is what a laptop without an accelerator can
attest. The figures are per accelerator. Submission posts to ``pools/<pool>/attestations`` of the Suanli API
with the raw output attached, an ``Idempotency-Key`` so that a retry never submits twice, and exits non-zero
with the API's field errors when the platform refuses the figures.

Standalone on purpose: the standard library plus NumPy or PyTorch, no Django, so it runs on any GPU node.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

VERSION = "1.0"
TFLOPS_PLACES = Decimal("0.001")
TBPS_PLACES = Decimal("0.0001")


@dataclass
class ProbeResult:
    backend: str  # "torch" or "numpy"
    device: str
    dtype: str
    gemm_n: int
    tflops: Decimal  # dense GEMM, per accelerator
    bw_tbps: Decimal  # memory copy bandwidth, per accelerator
    log: list[str] = field(default_factory=list)

    @property
    def raw_output(self) -> str:
        return "\n".join(self.log)

    @property
    def tool(self) -> str:
        return f"suanli-probe {VERSION} ({self.backend}, {self.dtype}, n={self.gemm_n})"

    def payload(self) -> dict[str, Any]:
        return {
            "measured_tflops": str(self.tflops),
            "measured_bw_tbps": str(self.bw_tbps),
            "tool": self.tool,
            "raw_output": self.raw_output,
        }


def _best_seconds(run: Callable[[], object], repeats: int, sync: Callable[[], object] = lambda: None) -> float:
    run()  # warm-up: allocations, kernel selection, caches
    sync()
    best = float("inf")
    for _ in range(max(1, repeats)):
        start = time.perf_counter()
        run()
        sync()
        best = min(best, time.perf_counter() - start)
    return max(best, 1e-9)


def _quantize(value: float, places: Decimal) -> Decimal:
    return Decimal(repr(value)).quantize(places, rounding=ROUND_HALF_UP)


def probe_numpy(*, n: int = 1024, bw_mb: int = 256, repeats: int = 5) -> ProbeResult:
    import numpy as np

    log = [
        f"suanli-probe {VERSION}",
        f"backend=numpy {np.__version__} device=cpu ({platform.processor() or platform.machine()})",
    ]
    rng = np.random.default_rng(0)
    a = rng.random((n, n), dtype=np.float32)
    b = rng.random((n, n), dtype=np.float32)
    out = np.empty((n, n), dtype=np.float32)
    seconds = _best_seconds(lambda: np.matmul(a, b, out=out), repeats)
    flops = 2.0 * n**3 / seconds
    log.append(f"gemm dtype=float32 n={n} best={seconds:.6f}s -> {flops / 1e12:.6f} TFLOPS")

    count = max(1, bw_mb * 1024 * 1024 // 4)
    src = np.ones(count, dtype=np.float32)
    dst = np.empty_like(src)
    seconds = _best_seconds(lambda: np.copyto(dst, src), repeats)
    moved = 2.0 * src.nbytes  # read + write
    log.append(f"copy bytes={src.nbytes} best={seconds:.6f}s -> {moved / seconds / 1e12:.6f} TB/s")
    return ProbeResult(
        backend="numpy",
        device="cpu",
        dtype="float32",
        gemm_n=n,
        tflops=_quantize(flops / 1e12, TFLOPS_PLACES),
        bw_tbps=_quantize(moved / seconds / 1e12, TBPS_PLACES),
        log=log,
    )


def _torch_device(torch: Any) -> str | None:
    if torch.cuda.is_available():  # NVIDIA CUDA and AMD ROCm (HIP) builds; Hygon DTK too
        return "cuda"
    for name in ("npu", "musa", "xpu", "mlu"):  # Ascend (torch_npu), Moore Threads, Intel, Cambricon
        backend = getattr(torch, name, None)
        if backend is not None and getattr(backend, "is_available", lambda: False)():
            return name
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return "mps"
    return None


def probe_torch(*, n: int = 8192, bw_mb: int = 1024, repeats: int = 10, device: str | None = None) -> ProbeResult:
    import torch

    device = device or _torch_device(torch)
    if device is None:
        raise RuntimeError("PyTorch sees no accelerator")
    module = getattr(torch, device, None)
    sync = getattr(module, "synchronize", None) or (lambda: None)
    dtype = torch.float16
    name = device
    if device == "cuda":
        name = torch.cuda.get_device_name(0)
    log = [f"suanli-probe {VERSION}", f"backend=torch {torch.__version__} device={device} ({name})"]
    a = torch.randn((n, n), device=device, dtype=dtype)
    b = torch.randn((n, n), device=device, dtype=dtype)
    seconds = _best_seconds(lambda: torch.matmul(a, b), repeats, sync)
    flops = 2.0 * n**3 / seconds
    log.append(f"gemm dtype=float16 n={n} best={seconds:.6f}s -> {flops / 1e12:.3f} TFLOPS")
    count = max(1, bw_mb * 1024 * 1024 // 2)
    src = torch.ones(count, device=device, dtype=dtype)
    dst = torch.empty_like(src)
    seconds = _best_seconds(lambda: dst.copy_(src), repeats, sync)
    moved = 2.0 * src.numel() * src.element_size()
    log.append(
        f"copy bytes={src.numel() * src.element_size()} best={seconds:.6f}s -> {moved / seconds / 1e12:.4f} TB/s"
    )
    return ProbeResult(
        backend="torch",
        device=name,
        dtype="float16",
        gemm_n=n,
        tflops=_quantize(flops / 1e12, TFLOPS_PLACES),
        bw_tbps=_quantize(moved / seconds / 1e12, TBPS_PLACES),
        log=log,
    )


def run_probe(
    *, backend: str = "auto", n: int | None = None, bw_mb: int | None = None, repeats: int | None = None
) -> ProbeResult:
    """PyTorch on an accelerator when possible (``auto``), NumPy on the CPU otherwise."""
    if backend in ("auto", "torch"):
        try:
            import torch

            if _torch_device(torch) is not None:
                return probe_torch(n=n or 8192, bw_mb=bw_mb or 1024, repeats=repeats or 10)
            if backend == "torch":
                raise SystemExit("suanli-probe: PyTorch sees no accelerator")
        except ImportError:
            if backend == "torch":
                raise SystemExit("suanli-probe: PyTorch is not installed") from None
    return probe_numpy(n=n or 1024, bw_mb=bw_mb or 256, repeats=repeats or 5)


def api_base(url: str) -> str:
    """Accepts the API base (…/api/v1/) or the site's root URL."""
    url = url.rstrip("/") + "/"
    return url if "/api/" in url else url + "api/v1/"


@dataclass
class Submission:
    status: int
    body: dict[str, Any]


def submit(
    result: ProbeResult,
    *,
    url: str,
    api_key: str,
    pool: str,
    request_review: bool = False,
    opener: Callable[..., Any] = urllib.request.urlopen,
    timeout: float = 30,
) -> Submission:
    payload = result.payload() | {"request_review": request_review}
    request = urllib.request.Request(  # noqa: S310 - the user gives the URL of their Suanli server
        f"{api_base(url)}pools/{pool}/attestations",
        data=json.dumps(payload).encode(),
        method="POST",
        headers={
            "Authorization": f"Api-Key {api_key}",
            "Content-Type": "application/json",
            "Accept": "application/json",
            "Idempotency-Key": f"suanli-probe-{uuid.uuid4()}",
            "User-Agent": f"suanli-probe/{VERSION}",
        },
    )
    try:
        with opener(request, timeout=timeout) as response:
            return Submission(response.status, json.loads(response.read() or b"{}"))
    except urllib.error.HTTPError as exc:
        try:
            body = json.loads(exc.read() or b"{}")
        except ValueError:
            body = {"errors": [{"field": None, "code": "http_error", "message": str(exc)}]}
        return Submission(exc.code, body)


def _print(text: str = "") -> None:
    sys.stdout.write(text + "\n")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="suanli-probe", description=__doc__.split("\n\n")[0])
    parser.add_argument("--backend", choices=["auto", "torch", "numpy"], default="auto")
    parser.add_argument(
        "--size", type=int, help="GEMM matrix size n (n x n); default 8192 on an accelerator, 1024 on CPU"
    )
    parser.add_argument("--bw-mb", type=int, help="size of the copied buffer in MiB")
    parser.add_argument("--repeats", type=int, help="timed repetitions (the best one counts)")
    parser.add_argument("--url", help="Suanli API base, e.g. https://suanli.example/api/v1/")
    parser.add_argument("--api-key", default=os.environ.get("SUANLI_API_KEY"), help="or SUANLI_API_KEY")
    parser.add_argument("--pool", help="the pool ID to attest")
    parser.add_argument("--request-review", action="store_true", help="send figures above 1.5x the datasheet to staff")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    args = parser.parse_args(argv)

    submitting = bool(args.url or args.pool)
    if submitting and not (args.url and args.pool and args.api_key):
        parser.error("submitting needs --url, --pool and --api-key (or SUANLI_API_KEY)")

    result = run_probe(backend=args.backend, n=args.size, bw_mb=args.bw_mb, repeats=args.repeats)
    if args.json:
        _print(json.dumps(result.payload() | {"backend": result.backend, "device": result.device}, indent=2))
    else:
        _print(result.raw_output)
        _print()
        _print(f"dense GEMM:       {result.tflops} TFLOPS ({result.dtype}, {result.device})")
        _print(f"memory bandwidth: {result.bw_tbps} TB/s")
        _print(f"standard units:   {result.tflops.scaleb(-3)} SCU, {result.bw_tbps} BWU per accelerator-hour")
    if not submitting:
        return 0

    submission = submit(result, url=args.url, api_key=args.api_key, pool=args.pool, request_review=args.request_review)
    if submission.status == 201:
        body = submission.body
        _print(f"submitted: attestation {body.get('id')} status={body.get('status')}")
        return 0
    _print(f"refused (HTTP {submission.status}):")
    for error in submission.body.get("errors", []):
        _print(f"  {error.get('field') or '-'}: {error.get('message')} [{error.get('code')}]")
    return 1


if __name__ == "__main__":
    raise SystemExit(main())
