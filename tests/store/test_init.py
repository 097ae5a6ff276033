from __future__ import annotations

import hearth.store


def test_public_api_is_exported() -> None:
    for name in hearth.store.__all__:
        assert getattr(hearth.store, name) is not None
    public = {n for n in dir(hearth.store) if not n.startswith("_")}
    expected = {"Store", "ModelRecord", "ModelLocation", "ModelName", "VerifyReport"}
    assert expected <= set(hearth.store.__all__) <= public
