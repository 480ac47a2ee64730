"""The paper's prompt (docs/training.md) as the config's default, with an explicit system message."""

from conftest import study_config
import pytest

from nsr_study.prompts import fitting, messages


def test_default_prompt_is_the_papers_with_explicit_system_message():
    prompt = study_config()["prompt"]
    assert messages("Find $\\{x\\}$ if $x=2$.", prompt) == [
        {"role": "system", "content": "You are a helpful assistant."},
        {"role": "user", "content": "Find $\\{x\\}$ if $x=2$.\nPlease reason step by step, and put your final "
                                    "answer within \\boxed{}."},
    ]


def test_null_system_message_leaves_it_out():
    assert messages("1+1", {"system": None, "user": "Q: {problem}"}) == [{"role": "user", "content": "Q: 1+1"}]


def test_fitting_keeps_prompts_up_to_the_limit_and_refuses_an_empty_split():
    ids = [[1, 2], [1, 2, 3], [1], []]
    assert fitting(ids, 2, "train") == [0, 2, 3] and fitting(ids, 3, "train") == [0, 1, 2, 3]
    with pytest.raises(ValueError, match=r"every val prompt is longer than train.max_prompt_tokens = 1 \(the "
                                         r"shortest has 2 tokens\)"):
        fitting([[1, 2], [1, 2, 3]], 1, "val")
