"""The README stays true: every setting is documented under its environment variable."""

from __future__ import annotations

from pathlib import Path

from parvis.settings import Settings

README = Path(__file__).resolve().parents[2] / "README.md"


def test_every_setting_is_documented_in_the_readme() -> None:
    text = README.read_text()
    missing = [f"PARVIS_{name.upper()}" for name in Settings.model_fields if f"`PARVIS_{name.upper()}`" not in text]
    assert missing == []


def test_the_readme_names_the_two_commands() -> None:
    text = README.read_text()
    assert "make run" in text
    assert "make test" in text
