"""`hearth create -f Modelfile` and `hearth show --modelfile` through the CLI, and the created
model's layers in use: its PARAMETERs are the generation defaults, its SYSTEM and MESSAGEs
are in the prompt, an ADAPTER that is not a readable PEFT adapter fails with a clear message."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cli_runner import Cli


def test_create_show_modelfile_and_run(
    cli: Cli,
    smollm2_gguf: Path,
    hearth_home: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("COLUMNS", "200")
    assert cli("import", str(smollm2_gguf), "--name", "smol")[0] == 0
    modelfile = tmp_path / "Modelfile"
    modelfile.write_text(
        "FROM smol\nSYSTEM You answer in French.\nPARAMETER temperature 0.05\n"
        "PARAMETER num_predict 12\nPARAMETER stop Paris\nMESSAGE user Hello\n"
        "MESSAGE assistant Bonjour\nLICENSE my terms\n"
    )
    code, out, err = cli("create", "french", "-f", str(modelfile))
    assert code == 0, err
    assert out.startswith("created french:latest")
    code, shown, _ = cli("show", "french", "--modelfile")
    assert code == 0 and "FROM smol" in shown and "PARAMETER stop Paris" in shown
    (tmp_path / "Again").write_text(shown)
    code, out, _ = cli("--json", "create", "again", "-f", str(tmp_path / "Again"))
    assert code == 0
    code, card, _ = cli("show", "french", "--json")
    assert json.loads(out)["digest"] == json.loads(card)["digest"]

    from hearth.engine.llm import LLM

    llm = LLM("french", max_model_len=256)
    assert llm.defaults.temperature == 0.05 and llm.defaults.sources["temperature"] == "modelfile"
    assert llm.defaults.max_tokens == 12 and llm.defaults.stop == ("Paris",)
    prompt = llm.tokenizer.apply_chat_template([{"role": "user", "content": "Hi"}])
    assert prompt.index("You answer in French.") < prompt.index("Bonjour") < prompt.index("Hi")

    code, _, err = cli("create", "bad", "-f", str(tmp_path / "missing"))
    assert code == 2 and "cannot read the Modelfile" in err
    modelfile.write_text("FROM smol\nPARAMETER temperature warm\n")
    code, _, err = cli("create", "bad", "-f", str(modelfile))
    assert code == 2 and "line 2: parameter temperature must be a number" in err

    # an ADAPTER is stored and shown; run reads it (here: not a real adapter, one clear line)
    lora = tmp_path / "lora"
    lora.mkdir()
    (lora / "adapter_config.json").write_text("{}")
    (lora / "adapter_model.safetensors").write_bytes(b"x")
    modelfile.write_text("FROM smol\nADAPTER ./lora\n")
    code, _, err = cli("create", "tuned", "-f", str(modelfile))
    assert code == 0, err
    code, shown, _ = cli("show", "tuned", "--modelfile")
    assert "ADAPTER ./lora" in shown
    code, _, err = cli("run", "tuned", "hello")
    assert code != 0 and "the adapter in" in err and "cannot be read" in err
    assert "Traceback" not in err


def test_sampling_parameters_of_a_modelfile_apply(
    cli: Cli, smollm2_gguf: Path, hearth_home: Path, tmp_path: Path
) -> None:
    """seed, typical_p and the repetition window are applied at generation, not only stored:
    a seeded model at temperature 1 says the same twice, and a request's seed still wins."""
    assert cli("import", str(smollm2_gguf), "--name", "smol")[0] == 0
    modelfile = tmp_path / "Modelfile"
    modelfile.write_text(
        "FROM smol\nPARAMETER temperature 1.0\nPARAMETER seed 3\nPARAMETER typical_p 0.95\n"
        "PARAMETER repeat_penalty 1.3\nPARAMETER repeat_last_n 16\nPARAMETER num_predict 12\n"
    )
    code, _, err = cli("create", "seeded", "-f", str(modelfile))
    assert code == 0, err

    from hearth.engine.llm import LLM

    llm = LLM("seeded", max_model_len=256)
    params = llm.default_sampling_params()
    assert (params.seed, params.typical_p, params.repeat_last_n) == (3, 0.95, 16)
    prompt = "Tell me a story about a dragon."
    first, again = (llm.generate(prompt)[0].outputs[0].text for _ in range(2))
    assert first == again and first
    others = {
        llm.generate(prompt, llm.default_sampling_params(seed=s))[0].outputs[0].text
        for s in (11, 12, 13)
    }
    assert others != {first}  # other seeds draw other text


def test_modelfile_draft_is_stored_shown_and_drafts(
    cli: Cli, smollm2_gguf: Path, hearth_home: Path, tmp_path: Path
) -> None:
    """DRAFT (Ollama's draft model): stored with the model, printed back by show
    --modelfile (recreating it gives the same digest), and `run` drafts with it."""
    assert cli("import", str(smollm2_gguf), "--name", "smol")[0] == 0
    modelfile = tmp_path / "Modelfile"
    modelfile.write_text("FROM smol\nDRAFT smol\n")
    code, _, err = cli("create", "drafted", "-f", str(modelfile))
    assert code == 0, err
    code, shown, _ = cli("show", "drafted", "--modelfile")
    assert code == 0 and "DRAFT smol\n" in shown
    (tmp_path / "Again").write_text(shown)
    code, out, _ = cli("--json", "create", "again", "-f", str(tmp_path / "Again"))
    code, card, _ = cli("show", "drafted", "--json")
    assert json.loads(out)["digest"] == json.loads(card)["digest"]
    greedy = ("--max-tokens", "12", "--temperature", "0")
    code, answer, err = cli("run", "drafted", "Say hello.", *greedy, "--verbose")
    assert code == 0, err
    assert "drafted tokens accepted" in err  # the stored draft model drafted under auto
    code, plain, err = cli("run", "smol", "Say hello.", *greedy, "--speculative", "off")
    assert code == 0 and plain == answer
    code, _, err = cli("run", "drafted", "hi", "--speculative", "self", "--draft", "smol")
    assert code == 2 and "--draft smol drafts with --speculative draft" in err


@pytest.mark.slow  # loads SmolLM2 and the Gemma 3 tokenizer
def test_a_draft_with_another_vocabulary_is_a_usage_error(
    cli: Cli, smollm2_gguf: Path, gemma3_gguf: Path, hearth_home: Path, tmp_path: Path
) -> None:
    assert cli("import", str(smollm2_gguf), "--name", "smol")[0] == 0
    code, _, err = cli("run", "smol", "hi", "--draft", str(gemma3_gguf))
    assert code == 2, err
    assert f"the draft model {gemma3_gguf} cannot draft for smol" in err
    assert "Traceback" not in err


@pytest.mark.slow  # loads SmolLM2 three times (minutes); GGUF adapters in CI: test_lora_serve
def test_a_gguf_adapter_runs_as_its_peft_folder(
    cli: Cli, smollm2_gguf: Path, hearth_home: Path, tmp_path: Path
) -> None:
    """ADAPTER x.gguf (hearth's gguf-lora export of a PEFT adapter) gives the text that
    `run --lora` of the PEFT folder gives; a GGUF that is not a LoRA is one line, exit 2."""
    from peft_adapters import gguf_lora_of, smollm2_adapter

    assert cli("import", str(smollm2_gguf), "--name", "smol")[0] == 0
    folder = smollm2_adapter(tmp_path / "pirate", 0)
    gguf_lora_of(folder, tmp_path / "pirate.gguf", 30, 9, 3)
    modelfile = tmp_path / "Modelfile"
    modelfile.write_text("FROM smol\nADAPTER ./pirate.gguf\n")
    code, _, err = cli("create", "pirate", "-f", str(modelfile))
    assert code == 0, err
    ask = ("What is the capital of France?", "--temperature", "0", "--max-tokens", "8")
    code, from_gguf, err = cli("run", "pirate", *ask)
    assert code == 0, err
    code, from_peft, err = cli("run", "smol", "--lora", str(folder), *ask)
    assert code == 0, err
    assert from_gguf == from_peft  # (that the adapter changes the answer: test_lora_serve)
    code, _, err = cli("run", "smol", "--lora", str(smollm2_gguf), *ask)
    assert code == 2 and "is a model, not an adapter" in err and "Traceback" not in err
