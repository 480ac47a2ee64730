"""Error bars: sd over seeds, or the standard error over problems with one seed."""

import pandas as pd
import pytest

from nsr_study.figures import _mean_err


def test_one_seed_uses_its_standard_error_several_seeds_their_sd():
    one = pd.DataFrame({"pass_at_1": [0.4], "pass_at_1_se": [0.05]})
    assert _mean_err(one, "pass_at_1") == (pytest.approx(0.4), pytest.approx(0.05))
    two = pd.DataFrame({"pass_at_1": [0.4, 0.6], "pass_at_1_se": [0.05, 0.05]})
    assert _mean_err(two, "pass_at_1") == (pytest.approx(0.5), pytest.approx(0.1414, abs=1e-4))
    assert _mean_err(pd.DataFrame({"x": [0.3]}), "x") == (pytest.approx(0.3), 0.0)
