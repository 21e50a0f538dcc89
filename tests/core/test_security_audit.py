"""`make security`'s dependency audit (devtools/security_audit.py): strict, and loud when it could not look."""

from __future__ import annotations

import json
import subprocess

import pytest

from devtools import security_audit


def fake_pip_audit(monkeypatch, report_for):
    """pip-audit answering ``report_for(service)``: a dict (its JSON report) or a str (it crashed with that)."""

    def run(command, **kwargs):
        service = command[command.index("--vulnerability-service") + 1]
        report = report_for(service)
        if isinstance(report, str):
            return subprocess.CompletedProcess(command, 1, stdout="", stderr=f"Traceback ...\n{report}\n")
        return subprocess.CompletedProcess(command, 0, stdout=json.dumps(report), stderr="")

    monkeypatch.setattr(security_audit.subprocess, "run", run)


SKIPPED = {"dependencies": [{"name": "django", "skip_reason": "Dependency not found on PyPI"}]}
CLEAN = {"dependencies": [{"name": "django", "version": "5.2.19", "vulns": []}]}
VULNERABLE = {
    "dependencies": [
        {"name": "django", "version": "5.2.19", "vulns": [{"id": "PYSEC-2099-1", "fix_versions": ["5.2.20"]}]}
    ]
}


def test_an_unreachable_database_fails_loudly(monkeypatch, capsys):
    monkeypatch.delenv("SUANLI_AUDIT_OFFLINE", raising=False)
    fake_pip_audit(monkeypatch, lambda service: SKIPPED if service == "pypi" else "ConnectionError: api.osv.dev")
    assert security_audit.main() == 1
    err = capsys.readouterr().err
    assert "vulnerability database unreachable: audit NOT performed" in err
    assert "ConnectionError" in err


def test_ci_may_continue_but_still_says_so(monkeypatch, capsys):
    monkeypatch.setenv("SUANLI_AUDIT_OFFLINE", "warn")
    fake_pip_audit(monkeypatch, lambda service: SKIPPED)
    assert security_audit.main() == 0
    err = capsys.readouterr().err
    assert "audit NOT performed" in err
    assert "continuing WITHOUT a dependency audit" in err


@pytest.mark.parametrize("offline", ["warn", "fail"])
def test_a_known_vulnerability_fails_whatever_the_offline_setting(monkeypatch, capsys, offline):
    monkeypatch.setenv("SUANLI_AUDIT_OFFLINE", offline)
    fake_pip_audit(monkeypatch, lambda service: VULNERABLE)
    assert security_audit.main() == 1
    assert "VULNERABLE django 5.2.19: PYSEC-2099-1 (fixed in 5.2.20)" in capsys.readouterr().err


def test_strict_a_package_that_could_not_be_audited_fails(monkeypatch, capsys):
    partly = {"dependencies": [*CLEAN["dependencies"], {"name": "private-pkg", "skip_reason": "not on PyPI"}]}
    fake_pip_audit(monkeypatch, lambda service: partly)
    assert security_audit.main() == 1
    assert "NOT AUDITED private-pkg" in capsys.readouterr().err


def test_osv_is_asked_when_pypi_cannot_answer(monkeypatch, capsys):
    fake_pip_audit(monkeypatch, lambda service: CLEAN if service == "osv" else SKIPPED)
    assert security_audit.main() == 0
    out = capsys.readouterr().out
    assert "pip-audit (osv)" in out
    assert "no known vulnerabilities" in out
