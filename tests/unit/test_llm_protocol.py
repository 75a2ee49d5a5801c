"""Request validation and the mapping of requests to generation parameters (serving.llm.protocol)."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from serving.llm.model import GenerationParams
from serving.llm.protocol import ChatRequest, GenerateRequest, TGIParameters


def test_tgi_defaults_are_greedy_with_the_server_default_length() -> None:
    params = GenerateRequest(inputs="hi").parameters.generation_params(default_max_new_tokens=100)

    assert params.max_new_tokens == 100
    assert not params.sampling
    assert params.stop == ()


def test_tgi_unknown_fields_are_ignored_like_tgi() -> None:
    request = GenerateRequest.model_validate({"inputs": "hi", "parameters": {"future_option": 1}})
    assert request.parameters.max_new_tokens is None


@pytest.mark.parametrize(
    ("parameters", "message"),
    [
        ({"max_new_tokens": 0}, "greater than 0"),
        ({"temperature": 0}, "greater than 0"),
        ({"top_p": 1.5}, "less than or equal to 1"),
        ({"stop": [""]}, "must not be empty"),
        ({"best_of": 3}, "best_of > 1"),
        ({"grammar": {"type": "json", "value": {}}}, "grammar"),
        ({"watermark": True}, "watermark"),
        ({"top_n_tokens": 5}, "top_n_tokens"),
    ],
)
def test_tgi_bad_parameters_are_refused(parameters: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        TGIParameters.model_validate(parameters)


def test_tgi_decoder_input_details_need_details() -> None:
    plain = TGIParameters(decoder_input_details=True).generation_params(10)
    detailed = TGIParameters(decoder_input_details=True, details=True).generation_params(10)

    assert not plain.prefill_logprobs
    assert detailed.prefill_logprobs


def test_chat_is_greedy_unless_temperature_is_positive() -> None:
    messages = [{"role": "user", "content": "hi"}]
    greedy = ChatRequest.model_validate({"messages": messages}).generation_params(100)
    zero = ChatRequest.model_validate({"messages": messages, "temperature": 0}).generation_params(100)
    warm = ChatRequest.model_validate({"messages": messages, "temperature": 0.7}).generation_params(100)

    assert not greedy.sampling
    assert not zero.sampling
    assert warm.sampling and warm.temperature == 0.7


def test_chat_limits_and_stops() -> None:
    request = ChatRequest.model_validate(
        {
            "messages": [{"role": "user", "content": "hi"}],
            "max_tokens": 50,
            "max_completion_tokens": 7,
            "stop": "\n",
        }
    )
    params = request.generation_params(100)

    assert params.max_new_tokens == 7  # the newer OpenAI name wins
    assert params.stop == ("\n",)


def test_chat_text_parts_are_joined_and_other_parts_refused() -> None:
    parts = [{"type": "text", "text": "Hello "}, {"type": "text", "text": "there"}]
    request = ChatRequest.model_validate({"messages": [{"role": "user", "content": parts}]})

    assert request.messages[0].template_dict() == {"role": "user", "content": "Hello there"}
    with pytest.raises(ValidationError, match="only text content parts"):
        ChatRequest.model_validate(
            {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]}
        )


@pytest.mark.parametrize(
    "extra",
    [
        {"n": 2},
        {"logprobs": True},
        {"tools": [{"type": "function"}]},
        {"response_format": {"type": "json_object"}},
    ],
)
def test_chat_unsupported_features_are_refused(extra: dict[str, Any]) -> None:
    with pytest.raises(ValidationError, match="not supported"):
        ChatRequest.model_validate({"messages": [{"role": "user", "content": "hi"}], **extra})


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"max_new_tokens": 0}, "max_new_tokens"),
        ({"temperature": 0.0}, "temperature"),
        ({"top_p": 0.0}, "top_p"),
        ({"stop": ("",)}, "stop"),
    ],
)
def test_generation_params_check_their_ranges(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        GenerationParams(**kwargs)


@pytest.mark.parametrize(
    ("kwargs", "sampling"),
    [
        ({}, False),
        ({"do_sample": True}, True),
        ({"temperature": 1.0}, False),  # TGI: temperature 1 alone changes nothing
        ({"temperature": 0.5}, True),
        ({"top_k": 10}, True),
        ({"top_p": 1.0}, False),
        ({"top_p": 0.9}, True),
        ({"repetition_penalty": 1.2}, False),
    ],
)
def test_sampling_follows_tgi(kwargs: dict[str, Any], sampling: bool) -> None:
    assert GenerationParams(**kwargs).sampling is sampling
