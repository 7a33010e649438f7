"""The book's exercises: every solution passes its check, and every check rejects a wrong answer."""

import numpy as np
import pytest
import torch

from vmivae.teaching import exercise_solutions as solutions
from vmivae.teaching.exercises import EXERCISES, check, loop_verdict, verdict

WRONG = {  # a plausible mistake for each exercise
    "gaussian_kl": lambda mu, logvar: 0.5 * (mu**2 + logvar.exp() - logvar),  # forgot the -1
    "gaussian_cross_entropy": lambda mean, log_std, z: (0.5 * ((z - mean) / log_std.exp()) ** 2).sum(1).mean(),  # dropped log std and log 2pi
    "gumbel_softmax": lambda logits, tau, u: torch.softmax(logits / tau, -1),  # no noise: always the same sample
    "aggregate_entropy": lambda logits: -(torch.softmax(logits, -1) * torch.log_softmax(logits, -1)).sum(-1).mean(),  # mean of entropies
    "mi_from_confusion": lambda prior, confusion: float(-(prior * np.log(prior)).sum()),  # H(c), not I(c; c')
    "sign_flip_p": lambda d: float(np.mean(d <= 0)),  # the share of negative seeds, not a test
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
    def unsolved(logits, tau, u):
        raise NotImplementedError

    check("gumbel_softmax", unsolved)
    assert "not attempted yet" in capsys.readouterr().out
    check("gumbel_softmax", lambda logits, tau, u: logits.foo)
    assert "raised AttributeError" in capsys.readouterr().out


def test_uniform_noise_that_is_not_made_gumbel_is_caught():
    """softmax((logits + u) / tau) with u uniform, not -log(-log u): the argmax no longer follows softmax(logits)."""
    right, message = verdict("gumbel_softmax", lambda logits, tau, u: torch.softmax((logits + u) / tau, -1))
    assert right is False and "is the noise Gumbel?" in message


def _losses_of(kl, steps=6):
    """Losses of a tiny model trained with ``kl`` in its loss: a stand-in for a chapter's loop."""
    torch.manual_seed(0)
    net = torch.nn.Linear(4, 4)
    opt = torch.optim.Adam(net.parameters(), lr=0.05)
    losses = []
    for _ in range(steps):
        h = net(torch.randn(16, 4))
        loss = kl(h[:, :2], h[:, 2:]).sum(1).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


def test_in_the_loop_a_right_answer_reproduces_the_run_and_a_wrong_one_says_where_it_parts():
    reference = _losses_of(solutions.gaussian_kl)
    right, message = loop_verdict("gaussian_kl", lambda: _losses_of(lambda mu, lv: 0.5 * (mu * mu + torch.exp(lv) - 1 - lv)), reference)
    assert right is True and "reproduce the chapter's run" in message
    wrong, message = loop_verdict("gaussian_kl", lambda: _losses_of(WRONG["gaussian_kl"]), reference)
    assert wrong is False and "parts from the chapter's at step 0" in message
    slightly_off = [v * (1 + 3e-3) for v in reference]  # rounding that grew over a few steps: still right
    assert loop_verdict("gaussian_kl", lambda: slightly_off, reference)[0] is True


def test_in_the_loop_an_unsolved_or_crashing_exercise_never_stops_the_notebook():
    def unsolved(mu, logvar):
        raise NotImplementedError

    assert loop_verdict("gaussian_kl", lambda: _losses_of(unsolved), [1.0])[0] is None
    diverged = loop_verdict("gaussian_kl", lambda: [float("nan")], [1.0])
    assert diverged[0] is False and "not yet right" in diverged[1]
    crashed = loop_verdict("gaussian_kl", lambda: _losses_of(lambda mu, logvar: mu.foo), [1.0])
    assert crashed[0] is False and "raised AttributeError" in crashed[1]
