import pytest

from nsr_study.answers import last_boxed


@pytest.mark.parametrize(
    "text, expected",
    [
        ("so $\\boxed{5}$.", "5"),
        ("first \\boxed{1} then \\boxed{2}", "2"),  # the last one wins
        ("$\\boxed{\\frac{1}{2}}$", "\\frac{1}{2}"),  # nested braces kept whole
        ("\\boxed{ \\{1, 2\\} }", "\\{1, 2\\}"),  # escaped set braces are still braces
        ("\\fbox{7}", "7"),
        ("\\boxed {17}.$$", "17"),  # MATH train row 252
        ("$\\boxed 2$.", "2"),  # MATH train row 888
        ("\\boxed{}", ""),  # empty: the caller drops it
        ("no answer here", None),
        ("\\boxed{\\frac{1}{2}", None),  # unclosed: a truncated generation
        ("\\boxedx{3}", None),  # another macro, not \boxed
        ("\\boxed{a} and \\fbox{b}", "b"),
    ],
)
def test_last_boxed(text, expected):
    assert last_boxed(text) == expected


def test_deep_nesting_is_linear():
    depth = 10_000
    text = "\\boxed{" + "{" * depth + "1" + "}" * depth + "}"
    assert last_boxed(text) == "{" * depth + "1" + "}" * depth
