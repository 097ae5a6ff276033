"""Which text-splitting regexes a byte-level BPE vocabulary from a GGUF file was trained with.

A GGUF stores `tokenizer.ggml.pre`, a short name for the pre-tokenizer of the model's original
`tokenizer.json`. llama.cpp keeps the table from that name to one or more regexes applied in
turn (each one splits the pieces the previous one left, keeping matches and the text between
them); this module is the same table, written for the `tokenizers` library, where each regex
becomes `Split(Regex(r), "isolated")` ahead of a `ByteLevel` step that does no splitting of its
own. Merges learned after splitting digits one by one, for instance, only reproduce the model's
ids if the digits are split the same way here.

Knows nothing of files: it maps a name to `tokenizers` components.
"""

from __future__ import annotations

from dataclasses import dataclass

from tokenizers import Regex, pre_tokenizers

__all__ = ["BpeSplit", "bpe_split_for"]

# The regexes, named after the tokenizer that introduced them. Case-insensitive contractions
# are written `(?i:...)` as in the models' own tokenizer.json files (Oniguruma supports it).
_GPT2 = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)"
_LLAMA3 = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"
    r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
_QWEN2 = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}"
    r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
_TEKKEN = (
    r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+"
    r"|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*"
    r"|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
_GPT4O = (
    r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?"
    r"|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?"
    r"|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
_DEEPSEEK3 = (
    r"""[!"#$%&'()*+,\-./:;<=>?@\[\\\]^_`{|}~][A-Za-z]+|[^\r\n\p{L}\p{P}\p{S}]?[\p{L}\p{M}]+"""
    r"| ?[\p{P}\p{S}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)


def _char_class(spec: str) -> str:
    """A regex character class from code points ("0041-005A 00B5 ...").

    Written as numbers because several of these characters (Ω U+2126, K U+212A, ι U+1FBE...)
    are replaced by their canonical equivalents wherever text gets normalized, which would turn
    a range like U+1FD6-U+1FDB into an empty one."""
    parts = []
    for item in spec.split():
        first, _, last = item.partition("-")
        parts.append(chr(int(first, 16)) + (f"-{chr(int(last, 16))}" if last else ""))
    return "[" + "".join(parts) + "]"


# Cased letters as DeepSeek LLM's tokenizer lists them (Latin, Greek, Cyrillic, Armenian,
# Georgian, Cherokee, letterlike symbols, fullwidth, Deseret, Osage, ...).
_DEEPSEEK_LETTERS = """
    0041-005A 0061-007A 00B5 00C0-00D6 00D8-00F6 00F8-01BA 01BC-01BF 01C4-0293 0295-02AF
    0370-0373 0376-0377 037B-037D 037F 0386 0388-038A 038C 038E-03A1 03A3-03F5 03F7-0481
    048A-052F 0531-0556 10A0-10C5 13A0-13F5 13F8-13FD 1C90-1CBA 1CBD-1CBF 1D00-1D2B 1D6B-1D77
    1D79-1D9A 1E00-1F15 1F18-1F1D 1F20-1F45 1F48-1F4D 1F50-1F57 1F59 1F5B 1F5D 1F5F-1F7D
    1F80-1FB4 1FB6-1FBC 1FBE 1FC2-1FC4 1FC6-1FCC 1FD0-1FD3 1FD6-1FDB 1FE0-1FEC 1FF2-1FF4
    1FF6-1FFC 2102 2107 210A-2113 2115 2119-211D 2124 2126 2128 212A-212D 212F-2134 2139
    213C-213F 2145-2149 214E 2183-2184 2C00-2C7B 2C7E-2CE4 2CEB-2CEE 2CF2-2CF3 A640-A66D
    A680-A69B A722-A76F A771-A787 A78B-A78E AB70-ABBF FB00-FB06 FB13-FB17 FF21-FF3A FF41-FF5A
    10400-1044F 104B0-104D3 104D8-104FB 10C80-10CB2 10CC0-10CF2 118A0-118DF 1E900-1E943
"""
# ASCII punctuation, fullwidth punctuation, curly quotes, ideographic space and full stops
_DEEPSEEK_PUNCT = "0021-002F 003A-007E FF01-FF0F FF1A-FF5E 2018-201F 3000-3002"
_CJK = _char_class("4E00-9FA5 0800-4E00 AC00-D7FF") + "+"
# a word: anything but whitespace, "(", "|", ")" and . , ! ? … 。 ， 、 । ۔ ،
_BLOOM = r" ?[^(\s|.,!?" + "\u2026\u3002\uff0c\u3001\u0964\u06d4\u060c" + ")]+"

_SPLITS: dict[str, tuple[str, ...]] = {
    "gpt2": (_GPT2,),
    "llama3": (_LLAMA3,),
    "qwen2": (_QWEN2,),
    "tekken": (_TEKKEN,),
    "gpt4o": (_GPT4O,),
    "starcoder": (r"\p{N}", _GPT2),  # digits one by one, then GPT-2
    "falcon": (r"[\p{P}\$\+<=>\^~\|`]+", _GPT2, r"[0-9][0-9][0-9]"),
    "deepseek-llm": (
        r"[\r\n]",
        r"\s?" + _char_class(_DEEPSEEK_LETTERS) + "+",
        r"\s?" + _char_class(_DEEPSEEK_PUNCT) + "+",
        r"\s+$",
        _CJK,
        r"\p{N}+",
    ),
    "deepseek-coder": (r"[\r\n]", r"\s?\p{L}+", r"\s?\p{P}+", _CJK, r"\p{N}"),
    "deepseek-v3": (r"\p{N}{1,3}", _char_class("4E00-9FA5 3040-309F 30A0-30FF") + "+", _DEEPSEEK3),
    "bloom": (_BLOOM,),
    "viking": (_BLOOM, r"\p{N}"),
    # llama.cpp's fallback for a BPE vocabulary whose pre-tokenizer it does not know
    "default": (r"[\p{P}\$\+<=>\^~\|]+", _GPT2, r"\p{N}+", r"[0-9][0-9][0-9]"),
}

# `tokenizer.ggml.pre` value -> (regex family, ignore_merges). ignore_merges: the original
# tokenizer looks a whole piece up in the vocabulary before merging (Llama 3, Tekken); these
# are also the vocabularies llama.cpp adds BOS to when the file does not say.
_PRE_NAMES: dict[str, tuple[str, bool]] = {
    **dict.fromkeys(
        ("llama3", "llama-v3", "llama-bpe", "falcon3", "falcon-h1", "pixtral", "midm-2.0", "lfm2"),
        ("llama3", True),
    ),
    **dict.fromkeys(("dbrx", "smaug-bpe", "chatglm-bpe", "glm4"), ("llama3", False)),
    **dict.fromkeys(
        ("qwen2", "deepseek-r1-qwen", "kormo", "megrez", "stablelm2", "hunyuan", "grok-2"),
        ("qwen2", False),
    ),
    **dict.fromkeys(
        (
            "gpt-2",
            "phi-2",
            "jina-es",
            "jina-de",
            "gigachat",
            "jina-v1-en",
            "jina-v2-es",
            "jina-v2-de",
            "jina-v2-code",
            "roberta-bpe",
            "a.x-4.0",
            "mellum",
            "mpt",
            "olmo",
            "jais",
            "exaone4",
            "trillion",
            "granite-docling",
        ),
        ("gpt2", False),
    ),
    **dict.fromkeys(
        ("starcoder", "refact", "command-r", "smollm", "codeshell", "exaone", "minerva-7b"),
        ("starcoder", False),
    ),
    **dict.fromkeys(("gpt-4o", "llama4", "minimax-m2"), ("gpt4o", False)),
    "tekken": ("tekken", True),
    "falcon": ("falcon", False),
    "deepseek-llm": ("deepseek-llm", False),
    "deepseek-coder": ("deepseek-coder", False),
    "deepseek-v3": ("deepseek-v3", False),
    **dict.fromkeys(("bloom", "poro-chat", "gpt3-finnish"), ("bloom", False)),
    "viking": ("viking", False),
    "default": ("default", False),
}


@dataclass(frozen=True)
class BpeSplit:
    """How to pre-tokenize for one `tokenizer.ggml.pre` value."""

    name: str  # the value as the file spells it
    regexes: tuple[str, ...]
    ignore_merges: bool
    known: bool  # False: the name is not in the table and llama.cpp's default is used

    @property
    def add_bos_default(self) -> bool:
        """Whether BOS is added when the file has no `tokenizer.ggml.add_bos_token`."""
        return self.ignore_merges

    def pre_tokenizer(self) -> pre_tokenizers.PreTokenizer:
        """Split by each regex in turn, then map bytes to the byte-level alphabet."""
        steps: list[pre_tokenizers.PreTokenizer] = [
            pre_tokenizers.Split(Regex(r), behavior="isolated") for r in self.regexes
        ]
        steps.append(pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False))
        return pre_tokenizers.Sequence(steps)


def bpe_split_for(pre: str | None) -> BpeSplit:
    """The splitting rule for a GGUF `tokenizer.ggml.pre` value (None or "" → llama.cpp's default)."""
    name = (pre or "default").lower()
    family, ignore_merges = _PRE_NAMES.get(name, ("default", False))
    return BpeSplit(name, _SPLITS[family], ignore_merges, known=name in _PRE_NAMES)
