"""The book's exercises: every solution passes its check, and every check rejects a wrong answer."""

import numpy as np
import pytest
import torch

from vmivae.teaching import exercise_solutions as solutions
from vmivae.teaching.exercises import EXERCISES, check, verdict

WRONG = {  # a plausible mistake for each exercise
    "gaussian_kl": lambda mu, logvar: 0.5 * (mu**2 + logvar.exp() - logvar),  # forgot the -1
    "gaussian_cross_entropy": lambda mean, log_std, z: (0.5 * ((z - mean) / log_std.exp()) ** 2).sum(1).mean(),  # dropped log std and log 2pi
    "gumbel_softmax": lambda logits, tau: torch.softmax(logits / tau, -1),  # no noise: always the same sample
    "aggregate_entropy": lambda logits: -(torch.softmax(logits, -1) * torch.log_softmax(logits, -1)).sum(-1).mean(),  # mean of entropies
    "mi_from_confusion": lambda prior, confusion: float(-(prior * np.log(prior)).sum()),  # H(c), not I(c; c')
    "welch_interval": lambda a, b: (a.mean() - b.mean() - 0.1, a.mean() - b.mean() + 0.1),
}


@pytest.mark.parametrize("name", sorted(EXERCISES))
def test_the_solution_passes_and_a_wrong_answer_fails(name):
    right, message = verdict(name, getattr(solutions, name))
    assert right is True, message
    wrong, message = verdict(name, WRONG[name])
    assert wrong is False and "not yet right" in message


def test_the_mean_of_entropies_gets_a_pointed_hint():
    assert "entropy of their mean" in verdict("aggregate_entropy", WRONG["aggregate_entropy"])[1]


def test_an_unsolved_or_crashing_exercise_never_stops_the_notebook(capsys):
    def unsolved(logits, tau):
        raise NotImplementedError

    check("gumbel_softmax", unsolved)
    assert "not attempted yet" in capsys.readouterr().out
    check("gumbel_softmax", lambda logits, tau: logits.foo)
    assert "raised AttributeError" in capsys.readouterr().out
