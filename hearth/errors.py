"""hearth's one error tree. Every layer raises these; `cli` maps them to exit codes and
`serve` maps them to HTTP statuses, each in one place. Messages say how to fix the problem.

    HearthError
    ├── UserInputError            bad argument, name, parameter or file from the user
    │   ├── InvalidNameError      a model name that breaks the naming rule
    │   ├── InvalidParameterError a sampling / request parameter out of range (has .param)
    │   ├── ContextLengthError    prompt longer than the model's context (has both numbers)
    │   ├── UnsupportedModelError architecture / config field / format we cannot honour
    │   ├── GrammarError          schema / regex / grammar that cannot be enforced
    │   └── ConflictError         the request clashes with stored state (a second vote)
    ├── NotFoundError
    │   └── ModelNotFoundError    a name not in the store (says how to pull it)
    ├── StoreError                the store or a source failed (I/O, hash mismatch, pip)
    │   ├── CorruptModelError     a file that is not what it claims (truncated GGUF, ...)
    │   └── SourceError           a pull source failed (pypi, hub, path)
    ├── PolicyError               license policy forbids the use (has .clause, .remedy)
    ├── AuthError                 missing / bad API key
    ├── CapacityError             queue full, KV budget too small (has .retry_after)
    └── OptionalDependencyError   an extra is not installed (says which pip command)
"""

from __future__ import annotations


class HearthError(Exception):
    """Base of every error hearth raises on purpose."""

    exit_code: int = 1


class UserInputError(HearthError):
    exit_code = 2


class InvalidNameError(UserInputError):
    pass


class InvalidParameterError(UserInputError):
    def __init__(self, param: str, message: str) -> None:
        super().__init__(message)
        self.param = param


class ContextLengthError(UserInputError):
    def __init__(self, num_tokens: int, max_tokens: int, message: str | None = None) -> None:
        super().__init__(
            message
            or f"the prompt is {num_tokens} tokens but the model's context is {max_tokens} tokens; "
            "shorten the prompt or raise the context (--ctx / num_ctx) if the model allows it"
        )
        self.num_tokens = num_tokens
        self.max_tokens = max_tokens


class UnsupportedModelError(UserInputError):
    pass


class GrammarError(UserInputError):
    pass


class ConflictError(UserInputError):
    pass


class NotFoundError(HearthError):
    pass


class ModelNotFoundError(NotFoundError):
    def __init__(self, name: str, message: str | None = None) -> None:
        super().__init__(
            message
            or f"model '{name}' not found; `hearth list` shows local models, "
            f"`hearth pull {name}` fetches it"
        )
        self.name = name


class StoreError(HearthError):
    pass


class CorruptModelError(StoreError):
    pass


class SourceError(StoreError):
    pass


class PolicyError(HearthError):
    exit_code = 3

    def __init__(self, message: str, clause: str = "", remedy: str = "") -> None:
        super().__init__(message)
        self.clause = clause
        self.remedy = remedy


class AuthError(HearthError):
    pass


class CapacityError(HearthError):
    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class OptionalDependencyError(HearthError):
    pass
