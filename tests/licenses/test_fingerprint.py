"""LICENSE files recognised by their phrases (hearth.licenses.fingerprint), whatever the
markup, case and wrapping."""

from __future__ import annotations

from hearth.licenses.fingerprint import normalize_text, recognize_license_text

APACHE = """
                                 Apache License
                           Version 2.0, January 2004
                        http://www.apache.org/licenses/

   TERMS AND CONDITIONS FOR USE, REPRODUCTION, AND DISTRIBUTION
"""


def test_normalize_text_drops_markup_scripts_and_punctuation() -> None:
    page = "<html><body><script>var x = 'apache';</script><p>It&rsquo;s   <b>MIT</b>!</p></body></html>"
    assert normalize_text(page) == "it s mit"
    assert normalize_text("A  b\n\tC-d") == "a b c d"


def test_recognize_plain_and_html_copies() -> None:
    assert recognize_license_text(APACHE) == "apache-2.0"
    html_copy = "<html><body>" + APACHE.replace("\n", "<br>\n") + "</body></html>"
    assert recognize_license_text(html_copy) == "apache-2.0"
    assert recognize_license_text("just a readme") is None
