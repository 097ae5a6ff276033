"""License names as written (hearth.licenses.normalize) → one canonical id: folding,
aliases, placeholders that fall through to the name and the link, trailing "license"."""

from __future__ import annotations

import pytest

from hearth.licenses.normalize import fold, normalize_license


def test_fold() -> None:
    assert fold("  Apache License_2.0 ") == "apache-license-2.0"
    assert fold("Llama 3.1 / Community") == "llama-3.1-community"
    assert fold("(MIT)!") == "mit"


@pytest.mark.parametrize(
    ("raw", "name", "link", "want"),
    [
        ("Apache 2.0", None, None, "apache-2.0"),
        ("apache2", None, None, "apache-2.0"),
        ("llama3_1", None, None, "llama3.1"),
        ("Llama 3.1 Community License Agreement", None, None, "llama3.1"),
        ("The MIT License", None, None, "mit"),
        ("other", "Apache License 2.0", None, "apache-2.0"),  # placeholder: the name decides
        (None, None, "https://www.apache.org/licenses/LICENSE-2.0", "apache-2.0"),
        ("other", None, "https://llama.meta.com/llama3_1/license/", "llama3.1"),
        ("no such license", None, None, "unknown"),
        (None, None, None, "unknown"),
    ],
)
def test_normalize(raw: str | None, name: str | None, link: str | None, want: str) -> None:
    assert normalize_license(raw, name, link) == want
