import pytest

from hearth.engine.sampling_params import SamplingParams
from hearth.errors import InvalidParameterError, UserInputError


@pytest.mark.parametrize(
    ("kwargs", "param"),
    [
        ({"max_tokens": 0}, "max_tokens"),
        ({"max_tokens": -3}, "max_tokens"),
        ({"temperature": -0.1}, "temperature"),
        ({"top_p": 0.0}, "top_p"),
        ({"top_p": 1.5}, "top_p"),
        ({"n": 0}, "n"),
        ({"top_k": -2}, "top_k"),
        ({"min_p": 2.0}, "min_p"),
        ({"repetition_penalty": 0.0}, "repetition_penalty"),
        ({"presence_penalty": 3.0}, "presence_penalty"),
        ({"frequency_penalty": -2.5}, "frequency_penalty"),
        ({"logprobs": -1}, "logprobs"),
        ({"prompt_logprobs": -1}, "prompt_logprobs"),
        ({"prompt_logprobs_start": 3}, "prompt_logprobs_start"),
        ({"prompt_logprobs": 0, "prompt_logprobs_start": 0}, "prompt_logprobs_start"),
        ({"logprob_token_ids": [3]}, "logprob_token_ids"),
        ({"logprobs": 0, "logprob_token_ids": [3, -1]}, "logprob_token_ids"),
        ({"stop": ["ok", ""]}, "stop"),
        ({"logit_bias": {5: 200.0}}, "logit_bias"),
        # out-of-range values that once overflowed inside a step and failed its batch
        ({"top_k": 2**63}, "top_k"),
        ({"top_k": 1.5}, "top_k"),
        ({"n": 10**6}, "n"),
        ({"max_tokens": 2**63}, "max_tokens"),
        ({"seed": 2**64}, "seed"),
        ({"seed": -(2**63) - 1}, "seed"),
        ({"logprobs": 10**9}, "logprobs"),
        ({"prompt_logprobs": 21}, "prompt_logprobs"),
        ({"temperature": float("nan")}, "temperature"),
        ({"temperature": float("inf")}, "temperature"),
        ({"top_p": float("nan")}, "top_p"),
        ({"min_p": float("nan")}, "min_p"),
        ({"repetition_penalty": float("nan")}, "repetition_penalty"),
        ({"repetition_penalty": float("inf")}, "repetition_penalty"),
        ({"presence_penalty": float("nan")}, "presence_penalty"),
        ({"logit_bias": {5: float("nan")}}, "logit_bias"),
        ({"logit_bias": {i: 1.0 for i in range(1025)}}, "logit_bias"),
        ({"logit_bias": {2**63: 1.0}}, "logit_bias"),
        ({"stop_token_ids": [2**63]}, "stop_token_ids"),
        ({"stop_token_ids": list(range(1025))}, "stop_token_ids"),
        ({"stop": [f"s{i}" for i in range(65)]}, "stop"),
    ],
)
def test_bad_values_name_the_parameter(kwargs: dict, param: str) -> None:
    with pytest.raises(InvalidParameterError) as info:
        SamplingParams(**kwargs)
    assert info.value.param == param
    assert param in str(info.value)
    assert isinstance(info.value, UserInputError)


def test_normalises_stop_and_ids() -> None:
    p = SamplingParams(stop="\n\n", stop_token_ids=[3, 4], logit_bias={"7": 1})  # type: ignore[arg-type, dict-item]
    assert p.stop == ("\n\n",)
    assert p.stop_token_ids == (3, 4)
    assert p.logit_bias == {7: 1.0}
    assert SamplingParams(stop=None).stop == ()  # type: ignore[arg-type]
    assert SamplingParams(temperature=0).greedy
    assert not SamplingParams(top_k=-1).uses_top_k


def test_edges_of_the_ranges_are_accepted() -> None:
    SamplingParams(top_k=2**31 - 1, seed=2**64 - 1, n=128, logprobs=20, max_tokens=2**31 - 1)
    SamplingParams(top_k=-1, seed=-(2**63), logit_bias={i: 1.0 for i in range(1024)})


@pytest.mark.parametrize(
    ("kw", "field"),
    [
        ({"typical_p": 0.0}, "typical_p"),
        ({"typical_p": 1.5}, "typical_p"),
        ({"typical_p": float("nan")}, "typical_p"),
        ({"repeat_last_n": -2}, "repeat_last_n"),
        ({"repeat_last_n": 1.5}, "repeat_last_n"),
        ({"repeat_last_n": True}, "repeat_last_n"),
    ],
)
def test_typical_p_and_window_are_checked(kw: dict[str, object], field: str) -> None:
    with pytest.raises(InvalidParameterError, match=field):
        SamplingParams(**kw)  # type: ignore[arg-type]
