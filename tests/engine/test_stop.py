from hearth.engine.stop import StopStringBuffer


def _run(stop: tuple[str, ...], deltas: list[str]) -> tuple[list[str], str | None, str]:
    buf = StopStringBuffer(stop)
    emitted: list[str] = []
    for d in deltas:
        out, matched = buf.feed(d)
        emitted.append(out)
        if matched:
            return emitted, matched, ""
    return emitted, None, buf.flush()


def test_stop_spanning_deltas_stops_exactly_and_never_retracts() -> None:
    emitted, matched, rest = _run(("END",), ["Hello E", "N", "D more"])
    assert matched == "END"
    assert emitted == ["Hello ", "", ""]
    assert "".join(emitted) == "Hello "
    assert rest == ""


def test_false_alarm_is_released() -> None:
    emitted, matched, rest = _run(("END",), ["a E", "Nx", "y"])
    assert matched is None
    assert emitted == ["a ", "ENx", "y"]
    assert rest == ""


def test_held_text_flushed_at_end() -> None:
    emitted, matched, rest = _run(("\n\n",), ["line\n"])
    assert matched is None and emitted == ["line"] and rest == "\n"


def test_earliest_of_several_stops_wins() -> None:
    emitted, matched, _ = _run(("cd", "b"), ["abcd"])
    assert matched == "b" and emitted == ["a"]


def test_no_stop_strings_passes_through() -> None:
    buf = StopStringBuffer(())
    assert buf.feed("abc") == ("abc", None)
