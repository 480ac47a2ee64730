"""The paper's prompt (GUIDE §3) as the config's default, with an explicit system message."""

from conftest import study_config
from nsr_study.prompts import messages


def test_default_prompt_is_the_papers_with_explicit_system_message():
    prompt = study_config()["prompt"]
    assert messages("Find $\\{x\\}$ if $x=2$.", prompt) == [
        {"role": "system", "content": "You are a helpful assistant."},
        {"role": "user", "content": "Find $\\{x\\}$ if $x=2$.\nPlease reason step by step, and put your final "
                                    "answer within \\boxed{}."},
    ]


def test_null_system_message_leaves_it_out():
    assert messages("1+1", {"system": None, "user": "Q: {problem}"}) == [{"role": "user", "content": "Q: 1+1"}]
