"""zh-hans is the default language: every user-facing string must have a Chinese translation."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from babel.messages.pofile import read_po

ROOT = Path(__file__).resolve().parent.parent
CATALOG = ROOT / "locale" / "zh_Hans" / "LC_MESSAGES" / "django.po"


def _untranslated(path: Path) -> list[str]:
    with path.open("rb") as handle:
        catalog = read_po(handle)
    return [
        str(message.id)
        for message in catalog
        if message.id
        and (message.fuzzy or not message.string or (isinstance(message.string, tuple) and not all(message.string)))
    ]


def test_the_chinese_catalogue_is_complete():
    missing = _untranslated(CATALOG)
    assert not missing, f"translate these in {CATALOG.relative_to(ROOT)}: {missing[:20]}"


SOURCES = [
    "manage.py",
    "config",
    "core",
    "accounts",
    "marketplace",
    "metering",
    "vouchers",
    "green",
    "billing",
    "templates",
    "locale",
]


@pytest.mark.skipif(shutil.which("xgettext") is None, reason="GNU gettext (xgettext) is not installed")
def test_the_catalogue_has_every_string_of_the_code(tmp_path):
    """makemessages, run on a copy of the sources, finds no string the committed catalogue lacks."""
    for name in SOURCES:
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, tmp_path / name, ignore=shutil.ignore_patterns("__pycache__", "*.mo"))
        else:
            shutil.copy(source, tmp_path / name)
    subprocess.run(
        [sys.executable, "manage.py", "makemessages", "-l", "zh_Hans", "--no-obsolete"],
        cwd=tmp_path,
        check=True,
        capture_output=True,
        env=os.environ.copy(),
    )
    missing = _untranslated(tmp_path / "locale" / "zh_Hans" / "LC_MESSAGES" / "django.po")
    assert not missing, f"new strings without a Chinese translation (run makemessages and translate): {missing[:20]}"
