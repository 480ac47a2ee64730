"""The command line, ``python -m nsr_study COMMAND`` (nsr_study/__main__.py): a missing or
unknown command is refused with the list of commands; each command's own arguments follow it.
That its grading workers skip the job's imports: tests/test_train.py."""

import subprocess
import sys

import pytest


@pytest.mark.parametrize("argv, said", [([], "no command given"), (["trian"], "unknown command 'trian'")])
def test_a_missing_or_unknown_command_is_refused_naming_the_commands(argv, said):
    res = subprocess.run([sys.executable, "-m", "nsr_study", *argv], capture_output=True, text=True, timeout=60)
    assert res.returncode == 2
    assert res.stderr.strip() == f"usage: python -m nsr_study {{train,evaluate,summary,plan,power}} [ARGS]: {said}"


def test_a_command_takes_its_own_arguments():
    res = subprocess.run([sys.executable, "-m", "nsr_study", "summary", "--help"], capture_output=True, text=True,
                         timeout=60)
    assert res.returncode == 0 and res.stdout.startswith("usage: python -m nsr_study summary [-h] --config CONFIG")
