"""The chat REPL driven as a real terminal program (pexpect): /show parameters says what
applies and where it came from, /show license, /save and /load, an unknown /command says so,
arrow-up recalls the last line (readline), a conversation that outgrows the context keeps
going (oldest exchanges dropped with a note), and an answer cut by the limit says so. Also
`hearth run` on a base model (Gemma 3 270M, no chat template) stops by itself."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pexpect

TIMEOUT = 240
UP = "\x1b[A"


def _spawn(gguf: Path, home: Path, *extra: str) -> pexpect.spawn:
    env = {**os.environ, "HEARTH_HOME": str(home), "HEARTH_NUM_THREADS": "1", "NO_COLOR": "1",
           "TERM": "xterm"}  # a real terminal type: readline handles the arrow keys
    return pexpect.spawn(
        sys.executable,
        ["-m", "hearth", "run", str(gguf), "--quant", "none", *extra],
        env=env, encoding="utf-8", timeout=TIMEOUT, dimensions=(40, 200),
    )


def test_commands_history_save_and_load(smollm2_gguf: Path, tmp_path: Path) -> None:
    child = _spawn(smollm2_gguf, tmp_path / "home", "--temperature", "0", "--ctx", "1024")
    try:
        child.expect_exact(">>> ")
        child.sendline("/show parameters")
        child.expect(r"temperature\s+0\s+\(user\)")
        child.expect(r"repeat_penalty\s+1\s+\(ollama\)")
        child.expect(r"num_predict\s+1024\s+\(hearth\)")
        child.expect_exact(">>> ")
        child.sendline("/show license")
        child.expect("apache-2.0")
        child.expect_exact(">>> ")
        child.sendline("/frobnicate")
        child.expect_exact("Unknown command '/frobnicate'. Type /? for help")
        child.expect_exact(">>> ")
        child.sendline("What is the capital of France?")
        child.expect("Paris")
        child.expect_exact(">>> ")
        child.sendline("/save trip")
        child.expect("Saved conversation as 'trip'")
        child.expect_exact(">>> ")
        child.sendline("/clear")
        child.expect_exact(">>> ")
        child.sendline("/load trip")
        child.expect_exact("Loaded conversation 'trip' (1 exchanges)")
        child.expect_exact(">>> ")
        child.sendline("/load nope")
        child.expect_exact("no saved conversation 'nope'; saved: trip")
        child.expect_exact(">>> ")
        child.send(UP + "\r")  # arrow-up recalls "/load nope"
        child.expect_exact("no saved conversation 'nope'")
        child.expect_exact(">>> ")
        child.sendline("/bye")
        child.expect(pexpect.EOF)
    finally:
        child.close(force=True)
    # the line history outlives the session (Ollama's ~/.ollama/history)
    assert "/load nope" in (tmp_path / "home" / "history").read_text()
    saved = (tmp_path / "home" / "conversations" / "trip.json").read_text()
    assert "Paris" in saved and '"temperature": "0"' in saved


def test_conversation_outgrowing_the_context_keeps_going(
    smollm2_gguf: Path, tmp_path: Path
) -> None:
    """--ctx 160: each answer is cut at 40 tokens ("[stopped: length]"); the third question
    drops the oldest exchange with a note instead of failing (as it did before)."""
    child = _spawn(smollm2_gguf, tmp_path / "home", "--temperature", "0", "--ctx", "160",
                   "--max-tokens", "40")
    try:
        child.expect_exact(">>> ")
        child.sendline("Write a long story about a dragon.")
        child.expect_exact("[stopped: length]")
        child.expect_exact(">>> ")
        child.sendline("Write a long story about a knight.")
        child.expect_exact("[stopped: length]")
        child.expect_exact(">>> ")
        # system + two cut exchanges + this question leave less than the answer's room
        child.sendline("What is the capital of France?")
        index = child.expect([r"note: the conversation outgrew the 160-token context; "
                              r"dropped the oldest 1 exchange", "error:"])
        assert index == 0, child.before
        child.expect_exact(">>> ")
        child.sendline("/bye")
        child.expect(pexpect.EOF)
    finally:
        child.close(force=True)


def test_base_model_stops_by_itself(gemma3_gguf: Path, tmp_path: Path) -> None:
    """Issue 30's runaway: Gemma 3 270M has no chat template; its completion-style defaults
    stop at a blank line or 256 tokens, and no control token reaches the text."""
    proc = subprocess.run(
        [sys.executable, "-m", "hearth", "run", str(gemma3_gguf), "Why is the sky blue?",
         "--verbose", "--seed", "0"],
        capture_output=True, text=True, timeout=600,
        env={**os.environ, "HEARTH_HOME": str(tmp_path / "home"), "HEARTH_NUM_THREADS": "1"},
    )
    assert proc.returncode == 0, proc.stderr
    assert "up to 256 tokens, stopping at a blank line" in proc.stderr
    match = re.search(r"output tokens: (\d+)", proc.stderr)
    assert match and int(match.group(1)) <= 256, proc.stderr
    assert "<start_of_image>" not in proc.stdout and "\n\n" not in proc.stdout.strip()
