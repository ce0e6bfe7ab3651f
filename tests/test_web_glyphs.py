"""The page's templates use no character that Debian's default fonts (DejaVu) cannot draw."""

from __future__ import annotations

from pathlib import Path

import pytest

TEMPLATES = Path(__file__).resolve().parent.parent / "instaflyd" / "web" / "templates"

# Seen as an empty box on a Debian box's browser: the circled letters of Unicode's "Enclosed
# Alphanumerics" block (ⓘ and its kin).
MISSING_GLYPHS = [chr(c) for c in range(0x24B6, 0x24EA)]


@pytest.mark.parametrize("template", sorted(TEMPLATES.glob("*.html")), ids=lambda p: p.name)
def test_no_template_uses_a_glyph_the_fonts_lack(template: Path) -> None:
    text = template.read_text(encoding="utf-8")
    assert [c for c in MISSING_GLYPHS if c in text] == []
