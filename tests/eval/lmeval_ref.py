"""lm-evaluation-harness as the reference for prompt-format tests: its own task YAML
templates rendered with its own `apply_template`, its own few-shot samplers and its
plain-text turn layout (user + target delimiter + assistant + few-shot delimiter). lm-eval
is in the `test` extra: these tests fail, never skip, when it is missing."""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any


def lm_eval_tasks_dir() -> Path:
    import lm_eval

    return Path(lm_eval.__file__).parent / "tasks"


def yaml_config(relpath: str) -> dict[str, Any]:
    """A task YAML of the installed lm-eval, `!function` tags kept as their names and
    `include`s merged (the including file wins)."""
    import yaml

    class Loader(yaml.SafeLoader):
        pass

    Loader.add_constructor("!function", lambda loader, node: loader.construct_scalar(node))
    path = lm_eval_tasks_dir() / relpath
    config = yaml.load(path.read_text(), Loader=Loader)
    if "include" in config:
        base = yaml_config(str(Path(relpath).parent / config.pop("include")))
        config = {**base, **config}
    return dict(config)


def render(template: str, doc: dict[str, Any]) -> Any:
    from lm_eval.utils import apply_template

    text = apply_template(template, doc)
    return text


def render_list(template: str, doc: dict[str, Any]) -> list[str]:
    return list(ast.literal_eval(render(template, doc)))


def sampler(pool: list[dict[str, Any]], seed: int = 1234, first_n: bool = False) -> Any:
    from lm_eval.api import samplers

    cls = samplers.FirstNSampler if first_n else samplers.ContextSampler
    return cls(pool, rnd=None).set_rnd(seed)


def plain_context(shots: list[tuple[str, str]], question: str, description: str = "") -> str:
    """lm-eval's plain-text prompt: system(description) + per shot user(q, " ") +
    assistant(a, "\\n\\n"), then user(question, "")."""
    from lm_eval.api.utils import Message

    messages = [Message("system", description)] if description else []
    for q, a in shots:
        messages += [Message("user", q, " "), Message("assistant", a, "\n\n")]
    messages.append(Message("user", question, ""))
    return "".join(m.to_text() for m in messages)
