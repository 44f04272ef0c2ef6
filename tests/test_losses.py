import math

import pytest
import torch
import torch.nn.functional as F

from explorer.losses import (IGNORE_INDEX, dpo_margin, helpful_loss, hinge_penalty, lm_loss, preference_loss,
                             safe_loss, sequence_logps, total_loss)


def naive_sequence_logps(logits, labels):
    out = []
    for b in range(logits.shape[0]):
        s = 0.0
        for t in range(logits.shape[1] - 1):
            y = labels[b, t + 1].item()
            if y != IGNORE_INDEX:
                s += torch.log_softmax(logits[b, t].double(), -1)[y].item()
        out.append(s)
    return torch.tensor(out, dtype=torch.float64)


def test_sequence_logps_matches_naive_loop():
    torch.manual_seed(0)
    logits = torch.randn(3, 7, 11)
    labels = torch.randint(0, 11, (3, 7))
    labels[:, :3] = IGNORE_INDEX
    labels[1, 5:] = IGNORE_INDEX
    assert torch.allclose(sequence_logps(logits, labels).double(), naive_sequence_logps(logits, labels), atol=1e-5)


def test_lm_loss_hand_value():
    # uniform logits over 4 tokens: NLL of any token is ln 4
    logits = torch.zeros(1, 3, 4)
    labels = torch.tensor([[IGNORE_INDEX, 2, 1]])
    assert math.isclose(lm_loss(logits, labels).item(), math.log(4), rel_tol=1e-6)


def test_dpo_hand_value():
    # Δ = (−1 − −2) − (−3 − −2) = 1 − (−1) = 2; β = 0.5 → −log σ(1) = log(1 + e^−1)
    c, r, rc, rr = (torch.tensor([v]) for v in (-1.0, -3.0, -2.0, -2.0))
    assert dpo_margin(c, r, rc, rr).item() == 2.0
    assert math.isclose(preference_loss(c, r, rc, rr, 0.5).item(), math.log(1 + math.exp(-1)), rel_tol=1e-6)
    # the hinge is sharp: zero once βΔ ≥ 1, linear below
    assert preference_loss(c, r, rc, rr, 0.5, preference="hinge").item() == 0.0
    assert math.isclose(hinge_penalty(torch.tensor([1.0]), 0.5).item(), 0.5)


def test_preference_loss_matches_naive_formula():
    torch.manual_seed(1)
    c, r, rc, rr = (torch.randn(6) for _ in range(4))
    beta = 0.1
    naive = torch.stack([-F.logsigmoid(beta * ((c[i] - rc[i]) - (r[i] - rr[i]))) for i in range(6)]).mean()
    assert torch.allclose(helpful_loss(c, r, rc, rr, beta), naive)


def test_safe_loss_is_severity_weighted():
    c = torch.tensor([0.0, 0.0]); r = torch.tensor([0.0, 0.0])
    rc = torch.tensor([0.0, 0.0]); rr = torch.tensor([-10.0, 10.0])  # Δ = −10 (bad pair) and +10 (good pair)
    per = -F.logsigmoid(0.1 * torch.tensor([-10.0, 10.0]))
    w = torch.tensor([1.0, 0.25])
    got = safe_loss(c, r, rc, rr, 0.1, severity=w)
    assert torch.allclose(got, (per * w).sum() / w.sum())
    assert not torch.allclose(got, per.mean())  # weighting matters


def test_zero_lambdas_give_lm_loss():
    lm, h, s = torch.tensor(1.7), torch.tensor(0.4), torch.tensor(0.9)
    t = total_loss(lm, h, s, lambda_helpful=0.0, lambda_safe=0.0)
    assert t.total.item() == lm.item()
    t2 = total_loss(lm, h, s, lambda_helpful=2.0, lambda_safe=0.5)
    assert math.isclose(t2.total.item(), 1.7 + 2.0 * 0.4 + 0.5 * 0.9, rel_tol=1e-6)
    assert set(t2.as_floats()) == {"total", "lm", "helpful", "safe"}


@pytest.mark.parametrize("preference", ["dpo", "hinge"])
def test_gradient_pushes_chosen_up(preference):
    c = torch.tensor([-2.0], requires_grad=True); r = torch.tensor([-2.0], requires_grad=True)
    loss = preference_loss(c, r, torch.tensor([-2.0]), torch.tensor([-2.0]), 0.1, preference=preference)
    loss.backward()
    assert c.grad.item() < 0 < r.grad.item()
