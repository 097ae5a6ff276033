"""`hearth export`: a tuned model's adapter in the formats other runtimes load. `peft`:
adapter_config.json + adapter_model.safetensors, loadable by `PeftModel.from_pretrained` on
the transformers model of the same base (the files are the stored adapter's; the base is
named by store name and sha256). `gguf-lora`: llama.cpp's adapter GGUF (gguf_lora.py). `gguf` / `safetensors`: the
adapter merged into the base (merge.py), in the base's own format.
Knows nothing of the terminal."""

from __future__ import annotations

import re
import shutil
from collections.abc import Callable
from pathlib import Path

from hearth.config import Settings, load_settings
from hearth.errors import UnsupportedModelError, UserInputError
from hearth.licenses import get_facts
from hearth.store import Store
from hearth.store.adapters import locate_adapter_model
from hearth.tune.adapter_files import ADAPTER_CONFIG, ADAPTER_WEIGHTS, load_adapter
from hearth.tune.gguf_lora import GGUF_ARCHES, write_gguf_lora
from hearth.tune.merge import write_merged
from hearth.weights.loader import load_weights

__all__ = ["FORMATS", "export", "name_problem", "notice_file", "required_name_prefix"]

FORMATS = ("peft", "gguf-lora", "gguf", "safetensors")


def export(
    name: str, fmt: str, output: Path, settings: Settings | None = None,
    warn: Callable[[str], None] | None = None,
) -> list[Path]:  # fmt: skip
    """Write the tuned model `name` in `fmt` under `output` (a new or empty folder), with the
    license files its base's license requires; `warn` hears where the license asks for a
    name the export does not have (the folder's name is what travels)."""
    if fmt not in FORMATS:
        raise UnsupportedModelError(f"--format {fmt}: hearth exports {', '.join(FORMATS)}")
    where = locate_adapter_model(Store(settings or load_settings()), name)
    if output.exists() and (not output.is_dir() or any(output.iterdir())):
        raise UserInputError(f"--output {output} exists and is not an empty folder; give a new one")
    license_id = where.record.license_id
    problem = name_problem(license_id, output.resolve().name)
    if problem is not None and warn is not None:
        warn(f"--output {output.name}: {problem}")
    output.mkdir(parents=True, exist_ok=True)
    notice = [write_license_notice(output, where.base, where.base_digest, license_id)]
    required = notice_file(output, license_id)
    if required is not None:
        notice.append(required)
    if fmt == "gguf-lora":
        return [_gguf_lora(where.base_path, where.adapter_dir, where.base, output), *notice]
    if fmt in ("gguf", "safetensors"):
        # merged: written in the base's own format (no GGUF <-> safetensors conversion)
        wanted = "gguf" if fmt == "gguf" else "hf"
        if where.base_format != wanted:
            other = "gguf" if where.base_format == "gguf" else "safetensors"
            raise UnsupportedModelError(
                f"--format {fmt}: the base of {name} is {where.base_format}, and hearth writes a "
                f"merged model in the base's format; use --format {other} (or peft / gguf-lora)"
            )
        path = write_merged(
            where.base_path, where.base_format, load_adapter(where.adapter_dir), output, name
        )
        return [path, *notice]
    written = []
    for file in (ADAPTER_CONFIG, ADAPTER_WEIGHTS):
        target = output / file
        shutil.copyfile(where.adapter_dir / file, target)  # the blob, through its link
        written.append(target)
    return [*written, *notice]


def license_obligations(license_id: str | None) -> str:
    """One line: what the base's license asks of a derivative (tune and export say it)."""
    facts = get_facts(license_id or "unknown")
    return f"the base's license ({facts.name}) asks of derivatives: {facts.derivative_obligations}"


# what a license's facts say a derivative must be called and which Notice text it ships
# (licenses.toml quotes the clauses: Llama 3.x "a name beginning with "Llama"", Llama 3
# "begins with "Llama 3"", Gemma's and Llama's "Notice" file texts)
_NAME_PREFIX = re.compile(r'name (?:that )?begin(?:s|ning) with "([^"]+)"')
_NOTICE_TEXT = re.compile(r'"Notice"(?: text)? file: "([^"]+)"')


def required_name_prefix(license_id: str | None) -> str | None:
    """The text a distributed derivative's name must begin with, if the license says so."""
    found = _NAME_PREFIX.search(get_facts(license_id or "unknown").derivative_obligations)
    return found.group(1) if found else None


def name_problem(license_id: str | None, name: str) -> str | None:
    """A sentence when `name` does not begin with what the base's license requires of a
    derivative's name (compared without case, spaces or punctuation: "llama-3.1-notes"
    begins with "Llama"), else None."""
    prefix = required_name_prefix(license_id)
    if prefix is None:
        return None

    def squash(text: str) -> str:
        return re.sub(r"[^a-z0-9]", "", text.lower())

    if squash(name).startswith(squash(prefix)):
        return None
    facts = get_facts(license_id or "unknown")
    return (
        f"the base's license ({facts.name}) requires a distributed derivative's name to begin "
        f'with "{prefix}"; choose a name that does before you share it'
    )


def notice_file(output: Path, license_id: str | None) -> Path | None:
    """NOTICE with the text the base's license requires derivatives to ship (Gemma, Llama),
    or None where it requires none."""
    found = _NOTICE_TEXT.search(get_facts(license_id or "unknown").attribution)
    if found is None:
        return None
    path = output / "NOTICE"
    path.write_text(found.group(1) + "\n")
    return path


def write_license_notice(output: Path, base: str, base_digest: str, license_id: str | None) -> Path:
    """LICENSE-NOTICE.md: the license the export inherits from its base and its duties."""
    facts = get_facts(license_id or "unknown")
    path = output / "LICENSE-NOTICE.md"
    path.write_text(
        f"# License of this derivative\n\nDerived from `{base}` ({base_digest}) by fine-tuning "
        f"with hearth. The base's license applies: **{facts.name}** ({facts.source_url}).\n\n"
        f"- Derivatives: {facts.derivative_obligations}\n- Attribution: {facts.attribution}\n"
        f"- Redistribution: {facts.redistribution}\n\n{facts.summary} This summary is not legal "
        "advice; the license text governs.\n"
    )
    return path


def _gguf_lora(base_path: Path, adapter_dir: Path, base: str, output: Path) -> Path:
    config = load_weights(base_path).config
    arch = GGUF_ARCHES.get(config.architecture)
    if arch is None:
        raise UnsupportedModelError(
            f"no llama.cpp architecture for {config.architecture}; export --format peft instead"
        )
    target = output / f"{base.replace(':', '-')}-lora.gguf"
    write_gguf_lora(
        load_adapter(adapter_dir), arch, config.num_hidden_layers, config.num_attention_heads,
        config.num_key_value_heads, target,
    )  # fmt: skip
    return target
