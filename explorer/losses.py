"""The composite loss, one pure function per term.

    L_total = L_LM + λ_helpful·L_helpful + λ_safe·L_safe

L_LM       masked next-token NLL on response tokens (keeps the model close to its own answers).
L_helpful  preference loss on (benign prompt, helpful answer ≻ refusal) pairs.
L_safe     preference loss on (harmful prompt, refusal ≻ compliant answer) pairs, each pair
           weighted by its spec category's severity.

Preference losses take the DPO margin (Rafailov et al. 2023, eq. 7)
    Δ = [log π(y_w|x) − log π_ref(y_w|x)] − [log π(y_l|x) − log π_ref(y_l|x)]
and apply either the gentle DPO loss −log σ(βΔ) or the sharp hinge max(0, 1 − βΔ)
(SLiC, Zhao et al. 2023): the first keeps pushing with a shrinking gradient, the second stops
once the margin reaches 1/β.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F

IGNORE_INDEX = -100  # label value for prompt and padding tokens: no loss there


def sequence_logps(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Sum of log π(token) over the response tokens of each sequence.

    logits: (B, T, V) for positions 0..T-1; labels: (B, T) with IGNORE_INDEX outside the response.
    Returns (B,).
    """
    logits = logits[:, :-1].float()  # (B, T-1, V): position t predicts token t+1
    targets = labels[:, 1:]  # (B, T-1)
    mask = targets != IGNORE_INDEX
    safe_targets = targets.masked_fill(~mask, 0)
    # log_softmax + gather, without materialising log-probs of the whole vocabulary twice
    token_logps = torch.gather(logits.log_softmax(-1), 2, safe_targets.unsqueeze(-1)).squeeze(-1)  # (B, T-1)
    return (token_logps * mask).sum(-1)


def lm_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """L_LM: mean NLL per response token. logits (B, T, V), labels (B, T) → scalar."""
    return F.cross_entropy(logits[:, :-1].float().reshape(-1, logits.shape[-1]), labels[:, 1:].reshape(-1),
                           ignore_index=IGNORE_INDEX)


def dpo_margin(chosen_logps: torch.Tensor, rejected_logps: torch.Tensor,
               ref_chosen_logps: torch.Tensor, ref_rejected_logps: torch.Tensor) -> torch.Tensor:
    """Δ, the policy-vs-reference log-ratio margin. All (B,) → (B,)."""
    chosen_logratios = chosen_logps - ref_chosen_logps
    rejected_logratios = rejected_logps - ref_rejected_logps
    return chosen_logratios - rejected_logratios


def dpo_penalty(margin: torch.Tensor, beta: float) -> torch.Tensor:
    return -F.logsigmoid(beta * margin)  # gentle: gradient β·σ(−βΔ) never quite vanishes


def hinge_penalty(margin: torch.Tensor, beta: float) -> torch.Tensor:
    return torch.relu(1 - beta * margin)  # sharp: constant gradient until βΔ ≥ 1, then none


PREFERENCE_PENALTIES: dict[str, Callable[[torch.Tensor, float], torch.Tensor]] = {
    "dpo": dpo_penalty,
    "hinge": hinge_penalty,
}


def preference_loss(chosen_logps, rejected_logps, ref_chosen_logps, ref_rejected_logps, beta: float,
                    preference: str = "dpo", weights: torch.Tensor | None = None) -> torch.Tensor:
    """Weighted mean of the per-pair penalty on Δ. weights (B,) default to 1."""
    margin = dpo_margin(chosen_logps, rejected_logps, ref_chosen_logps, ref_rejected_logps)
    per_pair = PREFERENCE_PENALTIES[preference](margin, beta)  # (B,)
    if weights is None:
        return per_pair.mean()
    return (per_pair * weights).sum() / weights.sum()


def helpful_loss(chosen_logps, rejected_logps, ref_chosen_logps, ref_rejected_logps, beta: float,
                 preference: str = "dpo") -> torch.Tensor:
    """L_helpful: chosen = helpful answer to a benign prompt, rejected = a refusal of it."""
    return preference_loss(chosen_logps, rejected_logps, ref_chosen_logps, ref_rejected_logps, beta, preference)


def safe_loss(chosen_logps, rejected_logps, ref_chosen_logps, ref_rejected_logps, beta: float,
              severity: torch.Tensor, preference: str = "dpo") -> torch.Tensor:
    """L_safe: chosen = refusal of a harmful prompt, rejected = compliance; weighted by severity (B,)."""
    return preference_loss(chosen_logps, rejected_logps, ref_chosen_logps, ref_rejected_logps, beta, preference,
                           weights=severity)


@dataclass(frozen=True)
class LossTerms:
    total: torch.Tensor
    lm: torch.Tensor
    helpful: torch.Tensor
    safe: torch.Tensor

    def as_floats(self) -> dict[str, float]:
        return {k: float(getattr(self, k).detach()) for k in ("total", "lm", "helpful", "safe")}


def total_loss(lm: torch.Tensor, helpful: torch.Tensor, safe: torch.Tensor,
               lambda_helpful: float, lambda_safe: float) -> LossTerms:
    """L_total = L_LM + λ_helpful·L_helpful + λ_safe·L_safe, with every term kept for logging."""
    return LossTerms(total=lm + lambda_helpful * helpful + lambda_safe * safe, lm=lm, helpful=helpful, safe=safe)
