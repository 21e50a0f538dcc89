"""suanli-probe: the CPU (NumPy) path with tiny sizes, the printed figures, and submission to a live server."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest

from marketplace import probe
from marketplace.models import Attestation
from tests.marketplace.factories import make_pool, make_site


def test_numpy_probe_measures_positive_figures():
    result = probe.probe_numpy(n=128, bw_mb=8, repeats=2)
    assert result.backend == "numpy"
    assert result.dtype == "float32"
    assert isinstance(result.tflops, Decimal)
    assert isinstance(result.bw_tbps, Decimal)
    assert result.tflops >= 0
    assert result.bw_tbps >= 0
    assert "gemm dtype=float32 n=128" in result.raw_output
    assert "copy bytes=" in result.raw_output
    assert result.payload()["measured_tflops"] == str(result.tflops)


def test_cli_prints_the_figures(capsys):
    assert probe.main(["--backend", "numpy", "--size", "128", "--bw-mb", "8", "--repeats", "1"]) == 0
    out = capsys.readouterr().out
    assert "dense GEMM:" in out
    assert "TFLOPS" in out
    assert "memory bandwidth:" in out
    assert "SCU" in out


def test_cli_json(capsys):
    assert probe.main(["--backend", "numpy", "--size", "64", "--bw-mb", "1", "--repeats", "1", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["backend"] == "numpy"
    assert "measured_tflops" in data


def test_cli_needs_all_submission_arguments():
    with pytest.raises(SystemExit):
        probe.main(["--url", "http://x/"])


def test_api_base():
    assert probe.api_base("http://h:8000") == "http://h:8000/api/v1/"
    assert probe.api_base("https://s.example/api/v1") == "https://s.example/api/v1/"


@pytest.mark.django_db(transaction=True)
def test_probe_submits_to_a_live_server_and_the_pool_is_verified(live_server, reference_data, make_org, capsys):
    from accounts.models import ApiScope, OrganizationAPIKey

    provider = make_org("provider")
    pool = make_pool(make_site(provider))
    _key, raw = OrganizationAPIKey.objects.create_key(
        name="probe", organization=provider, scopes=[ApiScope.SUPPLY_WRITE]
    )
    # Large enough for a non-zero figure at three decimals on any CPU.
    argv = ["--backend", "numpy", "--size", "384", "--bw-mb", "32", "--repeats", "2"]
    code = probe.main([*argv, "--url", live_server.url, "--api-key", raw, "--pool", str(pool.public_id)])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "submitted: attestation" in out
    assert "status=accepted" in out
    attestation = Attestation.objects.get()
    assert attestation.source == "api"
    assert "suanli-probe" in attestation.tool
    assert "gemm" in attestation.raw_output
    pool.refresh_from_db()
    assert pool.verified
    assert pool.normalised().scu.basis == "attested"


@pytest.mark.django_db(transaction=True)
def test_probe_reports_refusals(live_server, reference_data, make_org, capsys):
    from accounts.models import OrganizationAPIKey

    provider = make_org("provider")
    pool = make_pool(make_site(provider))
    _key, raw = OrganizationAPIKey.objects.create_key(name="probe", organization=provider, scopes=[])
    result = probe.ProbeResult("numpy", "cpu", "float32", 64, Decimal("0.1"), Decimal("0.01"), ["x"])
    submission = probe.submit(result, url=live_server.url, api_key=raw, pool=str(pool.public_id))
    assert submission.status == 403
    assert submission.body["errors"]
    assert not Attestation.objects.exists()
