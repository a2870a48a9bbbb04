"""The controllers: Zoph & Le's LSTM trained with REINFORCE (Sec. 3.1-3.3, 4.1), and random search.

:class:`RLController` emits a child token by token (:meth:`SearchSpace.steps`): a two-layer LSTM
whose input at each step is its own embedding of the previous token (Sec. 3.1: "Every prediction
is carried out by a softmax classifier and then fed into the next time step as input"), with one
softmax and one embedding per decision kind (filter height, filter width, filters, stride), and
for the skip connections Sec. 3.3's anchor points: at layer N the anchor step's hidden state h_N
gives, for every earlier layer j,

    P(layer j feeds layer N) = sigmoid(v^T tanh(W_prev h_j + W_curr h_N)),

h_j being layer j's anchor hidden state.  After an anchor step the next input is a learned vector
plus the mean of the chosen layers' anchor states (the paper does not say what follows an anchor).

Training (Sec. 3.2) is REINFORCE with a baseline: for one child with reward R (its validation
accuracy after a short training),

    loss = -(R - b) * sum_t log p(token_t) - entropy_weight * sum_t H(p_t),

``b`` "an exponential moving average of the previous architecture accuracies" (decay
``baseline_decay``; the first reward starts it, so the first child teaches nothing), followed by
one Adam step.  The entropy bonus is not the paper's: a small weight keeps the early policy from
collapsing on the first lucky child (Williams & Peng 1991).  :meth:`update` recomputes the log
probabilities of the given tokens under the current parameters, so children that finish out of
order (parallel workers; Sec. 3.4 updates the controller asynchronously too) update it correctly.

Hyper-parameters (Sec. 4.1): two LSTM layers of 35 units, every parameter initialised uniformly in
[-0.08, 0.08], Adam at learning rate 0.0006.

:class:`RandomController` is the control: every categorical decision uniform, every anchor bit
1/2 (what an untrained controller gives on average), and ``update`` only counts.

Both draw samples from their own ``torch.Generator`` only; :meth:`state` holds that generator's
state with the parameters and Adam's moments, so :meth:`load_state` continues exactly (the same
next samples, the same next updates).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from cnnzoo.errors import ConfigError
from cnnzoo.search.space import Architecture, SearchSpace, Step

CONTROLLERS = ("rl", "random")

#: RLController's hyper-parameters and their defaults (Sec. 4.1, and the two that are ours)
RL_HYPER: dict[str, Any] = {
    "hidden_size": 35,
    "num_layers": 2,
    "init_range": 0.08,
    "lr": 0.0006,
    "baseline_decay": 0.95,
    "entropy_weight": 0.0001,
}


@dataclass
class Sample:
    """A child the controller drew: its flat tokens and the architecture they decode to."""

    tokens: list[int]
    arch: Architecture


def _check_tokens(space: SearchSpace, tokens: list[int]) -> list[int]:
    tokens = [int(t) for t in tokens]
    space.decode(tokens)  # a one-line ConfigError for a list this space cannot emit
    return tokens


class _Policy(nn.Module):
    """The LSTM, the per-kind embeddings and softmax layers, and the anchor attention."""

    def __init__(self, space: SearchSpace, hidden_size: int, num_layers: int) -> None:
        super().__init__()
        kinds = {step.kind: step.num_choices for step in space.steps() if step.kind != "anchor"}
        self.start = nn.Parameter(torch.zeros(hidden_size))  # the first step's input
        self.lstm = nn.LSTM(hidden_size, hidden_size, num_layers=num_layers)
        self.embed = nn.ModuleDict({kind: nn.Embedding(n, hidden_size) for kind, n in kinds.items()})
        self.softmax = nn.ModuleDict({kind: nn.Linear(hidden_size, n) for kind, n in kinds.items()})
        if space.skips:
            self.w_prev = nn.Linear(hidden_size, hidden_size, bias=False)
            self.w_curr = nn.Linear(hidden_size, hidden_size, bias=False)
            self.v = nn.Linear(hidden_size, 1, bias=False)
            self.after_anchor = nn.Parameter(torch.zeros(hidden_size))

    def run(self, steps: list[Step], tokens: list[int] | None, generator: torch.Generator | None):
        """Walk the steps: sample each token (``tokens`` None) or score the given ones.

        Returns the tokens, the sum of their log probabilities, the sum of the entropies, and per
        token the probability vector it was drawn from.
        """
        x = self.start.view(1, 1, -1)
        state = None
        drawn: list[int] = []
        log_prob = x.new_zeros(())
        entropy = x.new_zeros(())
        distributions: list[Tensor] = []
        anchors: list[Tensor] = []  # h_j of every anchor step so far
        anchor_keys: list[Tensor] = []  # W_prev h_j
        position = 0
        for step in steps:
            out, state = self.lstm(x, state)
            h = out.view(-1)
            if step.kind == "anchor":
                if anchors:
                    keys = torch.stack(anchor_keys)  # (N - 1, hidden)
                    logits = self.v(torch.tanh(keys + self.w_curr(h))).view(-1)  # Sec. 3.3
                    if tokens is None:
                        bits = torch.bernoulli(torch.sigmoid(logits).detach(), generator=generator)
                        chosen = [int(b) for b in bits]
                    else:
                        chosen = tokens[position : position + step.num_tokens]
                    target = torch.tensor(chosen, dtype=logits.dtype)
                    log_p1, log_p0 = nn.functional.logsigmoid(logits), nn.functional.logsigmoid(-logits)
                    log_prob = log_prob + (target * log_p1 + (1 - target) * log_p0).sum()
                    p1 = torch.sigmoid(logits)
                    entropy = entropy - (p1 * log_p1 + (1 - p1) * log_p0).sum()
                    distributions += list(torch.stack([1 - p1, p1], dim=1))
                    picked = [anchors[j] for j, bit in enumerate(chosen) if bit]
                else:
                    chosen, picked = [], []
                drawn += chosen
                context = torch.stack(picked).mean(0) if picked else torch.zeros_like(h)
                anchors.append(h)
                anchor_keys.append(self.w_prev(h))
                x = (self.after_anchor + context).view(1, 1, -1)
            else:
                logits = self.softmax[step.kind](h)
                log_probs = torch.log_softmax(logits, dim=-1)
                if tokens is None:
                    token = int(torch.multinomial(log_probs.detach().exp(), 1, generator=generator))
                else:
                    token = tokens[position]
                drawn.append(token)
                log_prob = log_prob + log_probs[token]
                entropy = entropy - (log_probs.exp() * log_probs).sum()
                distributions.append(log_probs.exp())
                x = self.embed[step.kind](torch.tensor([token])).view(1, 1, -1)
            position += step.num_tokens
        return drawn, log_prob, entropy, distributions


class RLController:
    """Zoph & Le's controller: an LSTM policy over the space's steps, trained with REINFORCE."""

    name = "rl"

    def __init__(self, space: SearchSpace, seed: int, **hyper) -> None:
        unknown = sorted(set(hyper) - set(RL_HYPER))
        if unknown:
            raise ConfigError(f"the rl controller has no setting {unknown[0]!r} (settings: {', '.join(RL_HYPER)})")
        self.hyper = {**RL_HYPER, **hyper}
        for key in ("hidden_size", "num_layers"):
            if isinstance(self.hyper[key], bool) or not isinstance(self.hyper[key], int) or self.hyper[key] < 1:
                raise ConfigError(f"the rl controller's {key} must be a positive integer, got {self.hyper[key]!r}")
        for key in ("init_range", "lr", "baseline_decay", "entropy_weight"):
            value = self.hyper[key]
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
                raise ConfigError(f"the rl controller's {key} must be a number >= 0, got {value!r}")
            self.hyper[key] = float(value)
        if not 0 <= self.hyper["baseline_decay"] < 1:
            raise ConfigError(f"the rl controller's baseline_decay must be in [0, 1), got {self.hyper['baseline_decay']}")
        self.space = space
        self.seed = int(seed)
        self._steps = space.steps()
        self.policy = _Policy(space, self.hyper["hidden_size"], self.hyper["num_layers"])
        init = torch.Generator().manual_seed(self.seed)
        with torch.no_grad():
            for parameter in self.policy.parameters():  # Sec. 4.1: uniform in [-0.08, 0.08]
                parameter.uniform_(-self.hyper["init_range"], self.hyper["init_range"], generator=init)
        self.optimizer = torch.optim.Adam(self.policy.parameters(), lr=self.hyper["lr"])
        self.generator = torch.Generator().manual_seed(self.seed + 1)  # samples: a stream of their own
        self.baseline: float | None = None
        self.samples = 0
        self.updates = 0

    def sample(self) -> Sample:
        with torch.no_grad():
            tokens, *_ = self.policy.run(self._steps, None, self.generator)
        self.samples += 1
        return Sample(tokens, self.space.decode(tokens))

    def token_probabilities(self, tokens: list[int]) -> list[list[float]]:
        """For each of ``tokens``, the distribution the controller draws it from (given the earlier ones)."""
        with torch.no_grad():
            _, _, _, distributions = self.policy.run(self._steps, _check_tokens(self.space, tokens), None)
        return [d.tolist() for d in distributions]

    def update(self, tokens: list[int], reward: float) -> dict[str, float]:
        """One REINFORCE step for the child ``tokens`` that earned ``reward``."""
        tokens = _check_tokens(self.space, tokens)
        reward = float(reward)
        if not math.isfinite(reward):
            raise ConfigError(f"a reward must be a finite number, got {reward}")
        baseline = reward if self.baseline is None else self.baseline  # the previous rewards' average
        _, log_prob, entropy, _ = self.policy.run(self._steps, tokens, None)
        advantage = reward - baseline
        loss = -advantage * log_prob - self.hyper["entropy_weight"] * entropy
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        decay = self.hyper["baseline_decay"]
        self.baseline = decay * baseline + (1 - decay) * reward
        self.updates += 1
        return {"loss": loss.item(), "reward": reward, "advantage": advantage, "baseline": self.baseline,
                "log_prob": log_prob.item(), "entropy": entropy.item(), "updates": float(self.updates)}  # fmt: skip

    def state(self) -> tuple[dict[str, Tensor], dict]:
        """Tensors (parameters, Adam's moments, the sampling generator) and JSON-ready meta."""
        tensors = {f"policy.{k}": v.detach().clone() for k, v in self.policy.state_dict().items()}
        names = dict(zip(map(id, self.policy.parameters()), (n for n, _ in self.policy.named_parameters())))
        for parameter, moments in self.optimizer.state.items():
            for key, value in moments.items():
                value = torch.as_tensor(value).detach().clone()
                # Adam's step count is a 0-d tensor: kept as one element, which every writer stores
                tensors[f"adam.{names[id(parameter)]}.{key}"] = value.reshape(1) if key == "step" else value
        tensors["generator"] = self.generator.get_state()
        return tensors, self._meta()

    def _meta(self) -> dict:
        return {"controller": self.name, "space": self.space.to_dict(), "seed": self.seed, "hyper": dict(self.hyper),
                "baseline": self.baseline, "samples": self.samples, "updates": self.updates}  # fmt: skip

    def load_state(self, tensors: dict[str, Tensor], meta: dict) -> None:
        """Continue exactly where :meth:`state` was taken (same space and hyper-parameters)."""
        _check_meta(self, meta)
        self.policy.load_state_dict({k[len("policy."):]: v for k, v in tensors.items() if k.startswith("policy.")})
        state: dict[int, dict[str, Tensor]] = {}
        for index, (name, parameter) in enumerate(self.policy.named_parameters()):
            moments = {k.rsplit(".", 1)[1]: v for k, v in tensors.items() if k.rsplit(".", 1)[0] == f"adam.{name}"}
            if moments:
                moments["step"] = moments["step"].reshape(())
                state[index] = {k: v.clone() for k, v in moments.items()}
        optimizer_state = self.optimizer.state_dict()
        optimizer_state["state"] = state
        self.optimizer.load_state_dict(optimizer_state)
        self.generator.set_state(tensors["generator"].clone())
        self.baseline = meta["baseline"]
        self.samples, self.updates = int(meta["samples"]), int(meta["updates"])


class RandomController:
    """Random search at the same budget: every decision uniform; ``update`` only counts."""

    name = "random"

    def __init__(self, space: SearchSpace, seed: int) -> None:
        self.space = space
        self.seed = int(seed)
        self.hyper: dict[str, Any] = {}
        self._steps = space.steps()
        self.generator = torch.Generator().manual_seed(self.seed + 1)
        self.samples = 0
        self.updates = 0

    def sample(self) -> Sample:
        tokens: list[int] = []
        for step in self._steps:
            if step.num_tokens:
                drawn = torch.randint(step.num_choices, (step.num_tokens,), generator=self.generator)
                tokens += [int(t) for t in drawn]
        self.samples += 1
        return Sample(tokens, self.space.decode(tokens))

    def token_probabilities(self, tokens: list[int]) -> list[list[float]]:
        _check_tokens(self.space, tokens)
        return [[1 / step.num_choices] * step.num_choices for step in self._steps for _ in range(step.num_tokens)]

    def update(self, tokens: list[int], reward: float) -> dict[str, float]:
        _check_tokens(self.space, tokens)
        self.updates += 1
        return {"reward": float(reward), "updates": float(self.updates)}

    def state(self) -> tuple[dict[str, Tensor], dict]:
        return {"generator": self.generator.get_state()}, {
            "controller": self.name, "space": self.space.to_dict(), "seed": self.seed, "hyper": {},
            "samples": self.samples, "updates": self.updates}  # fmt: skip

    def load_state(self, tensors: dict[str, Tensor], meta: dict) -> None:
        _check_meta(self, meta)
        self.generator.set_state(tensors["generator"].clone())
        self.samples, self.updates = int(meta["samples"]), int(meta["updates"])


def _check_meta(controller, meta: dict) -> None:
    """A one-line ConfigError when a saved state belongs to another controller, space or settings."""
    if not isinstance(meta, dict) or meta.get("controller") != controller.name:
        saved = meta.get("controller") if isinstance(meta, dict) else meta
        raise ConfigError(f"the saved controller state is for {saved!r}, not the {controller.name} controller")
    if SearchSpace.from_dict(meta.get("space") or {}) != controller.space:
        raise ConfigError("the saved controller state is for another search space")
    if dict(meta.get("hyper") or {}) != controller.hyper:
        differing = sorted(k for k in set(meta.get("hyper") or {}) | set(controller.hyper)
                           if (meta.get("hyper") or {}).get(k) != controller.hyper.get(k))  # fmt: skip
        raise ConfigError(f"the saved controller state has other settings: {', '.join(differing)}")


def make_controller(name: str, space: SearchSpace, seed: int, **hyper):
    """``"rl"`` (:class:`RLController` with ``hyper``) or ``"random"`` (which has no settings)."""
    if name == "rl":
        return RLController(space, seed, **hyper)
    if name == "random":
        unknown = sorted(set(hyper) - set(RL_HYPER))
        if unknown:
            raise ConfigError(f"the random controller has no setting {unknown[0]!r}")
        return RandomController(space, seed)  # the rl controller's settings do not apply to it
    raise ConfigError(f"unknown controller {name!r}; choose from {', '.join(CONTROLLERS)}")


__all__ = ["CONTROLLERS", "RL_HYPER", "RLController", "RandomController", "Sample", "make_controller"]
