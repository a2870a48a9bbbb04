"""Architecture search (issue 15): the LSTM controller with REINFORCE and random search (Zoph & Le 2017,
Sec. 3.1-3.3 and 4.1).  No child trains here: the rewards are toy functions of the architecture."""

from __future__ import annotations

import json
import math

import pytest
import torch
from safetensors.torch import load as load_tensors
from safetensors.torch import save as save_tensors

from cnnzoo.errors import ConfigError
from cnnzoo.search.controller import CONTROLLERS, RandomController, RLController, make_controller
from cnnzoo.search.space import SearchSpace

torch.set_num_threads(1)

#: small enough for hundreds of updates in seconds: 3 layers, 4 steps each (no stride decision)
SPACE = SearchSpace(depth=3, strides=(1,))


def position(space: SearchSpace, kind: str, layer: int) -> int:
    """Index in the flat token list of the first token of layer ``layer``'s ``kind`` step."""
    index = 0
    for step in space.steps():
        if (step.kind, step.layer) == (kind, layer):
            return index
        index += step.num_tokens
    raise KeyError((kind, layer))


def test_paper_hyper_parameters_and_initialisation():
    controller = RLController(SearchSpace(), seed=0)
    assert (controller.policy.lstm.num_layers, controller.policy.lstm.hidden_size) == (2, 35)
    assert controller.optimizer.param_groups[0]["lr"] == pytest.approx(0.0006)
    values = torch.cat([p.detach().flatten() for p in controller.policy.parameters()])
    assert values.abs().max() <= 0.08 and values.std() > 0.04  # uniform in [-0.08, 0.08]: std 0.046


@pytest.mark.parametrize("name", CONTROLLERS)
def test_samples_decode_and_come_from_the_controllers_own_generator(name):
    first = make_controller(name, SPACE, seed=3)
    torch.manual_seed(0)
    a = [first.sample() for _ in range(5)]
    second = make_controller(name, SPACE, seed=3)
    torch.manual_seed(1)  # the global generator plays no part
    torch.rand(7)
    b = [second.sample() for _ in range(5)]
    assert [s.tokens for s in a] == [s.tokens for s in b]
    assert all(SPACE.decode(s.tokens) == s.arch for s in a)
    assert len({str(s.arch) for s in a}) > 1
    other = make_controller(name, SPACE, seed=4)
    assert [other.sample().tokens for _ in range(5)] != [s.tokens for s in a]


@pytest.mark.parametrize("name", CONTROLLERS)
def test_state_round_trip_continues_exactly(name):
    """Sample 3, save, sample 3 more and update; a fresh controller loaded from the save does the same."""
    controller = make_controller(name, SearchSpace(depth=4), seed=0)
    for reward in (0.2, 0.6, 0.4):
        controller.update(controller.sample().tokens, reward)
    tensors, meta = controller.state()
    tensors, meta = load_tensors(save_tensors(tensors)), json.loads(json.dumps(meta))  # as the files keep them
    after = [controller.sample() for _ in range(3)]
    stats = controller.update(after[0].tokens, 0.9)
    fresh = make_controller(name, SearchSpace(depth=4), seed=99)
    fresh.load_state(tensors, meta)
    again = [fresh.sample() for _ in range(3)]
    assert [s.tokens for s in again] == [s.tokens for s in after]
    assert fresh.update(after[0].tokens, 0.9) == stats
    assert fresh.token_probabilities(after[1].tokens) == controller.token_probabilities(after[1].tokens)


def test_reinforce_raises_the_rewarded_choice_and_random_search_stays_at_chance():
    """Reward 1 when layer 1 has 64 filters (one of four values), else 0: within 300 updates at the
    paper's learning rate the RL controller puts most of its probability there; random search,
    updated with the same rewards, keeps drawing it a quarter of the time."""
    where = position(SPACE, "filters", 1)
    rl, rand = RLController(SPACE, seed=0), RandomController(SPACE, seed=0)
    start = rl.token_probabilities(rl.sample().tokens)[where][3]
    assert abs(start - 0.25) < 0.05  # an untrained controller is near uniform
    hits = {"rl": [], "random": []}
    for _ in range(300):
        for name, controller in (("rl", rl), ("random", rand)):
            sample = controller.sample()
            reward = float(sample.arch.layers[0].filters == 64)
            hits[name].append(reward)
            controller.update(sample.tokens, reward)
    probability = rl.token_probabilities(rl.sample().tokens)[where][3]
    assert probability > 0.6
    assert sum(hits["rl"][-50:]) / 50 > 0.5
    # random search: 300 draws at 1/4 stay within 4 standard deviations of 75
    assert abs(sum(hits["random"]) - 75) < 4 * math.sqrt(300 * 0.25 * 0.75)
    assert rand.token_probabilities(rand.sample().tokens)[where] == [0.25] * 4
    assert rand.updates == 300


def test_anchor_points_learn_a_skip_connection():
    """Reward the connection 1 -> 3 (an anchor bit, Sec. 3.3's sigmoid): its probability rises from 1/2."""
    where = position(SPACE, "anchor", 3)  # bits for layers 1 and 2 feeding layer 3
    rl = RLController(SPACE, seed=1, lr=0.003)
    for _ in range(150):
        sample = rl.sample()
        rl.update(sample.tokens, float(1 in sample.arch.layers[2].inputs))
    assert rl.token_probabilities(rl.sample().tokens)[where][1] > 0.8


def test_baseline_is_the_moving_average_of_previous_rewards():
    rl = RLController(SPACE, seed=0, baseline_decay=0.9)
    tokens = rl.sample().tokens
    stats = rl.update(tokens, 0.5)
    assert stats["advantage"] == 0 and rl.baseline == pytest.approx(0.5)  # the first reward starts it
    expected = 0.5
    for reward in (1.0, 0.0, 0.8, 0.8, 0.8):
        stats = rl.update(tokens, reward)
        assert stats["advantage"] == pytest.approx(reward - expected)  # against the previous rewards
        expected = 0.9 * expected + 0.1 * reward
        assert rl.baseline == pytest.approx(expected)
    for _ in range(60):
        rl.update(tokens, 0.8)
    assert rl.baseline == pytest.approx(0.8, abs=0.01)  # it follows the rewards


def test_update_scores_the_given_tokens_under_the_current_parameters():
    """Trials finish out of order: an update for an old sample uses its tokens, not the last sample's."""
    rl = RLController(SPACE, seed=0)
    old, new = rl.sample(), rl.sample()
    probabilities = rl.token_probabilities(old.tokens)
    log_prob = sum(math.log(p[t]) for p, t in zip(probabilities, old.tokens))
    stats = rl.update(old.tokens, 1.0)
    assert stats["log_prob"] == pytest.approx(log_prob, rel=1e-5)
    assert rl.update(new.tokens, 0.0)["log_prob"] != pytest.approx(log_prob)
    entropy_only = RLController(SPACE, seed=0, entropy_weight=1.0, baseline_decay=0.0)
    before = entropy_only.update(old.tokens, 0.5)["entropy"]  # advantage 0: only the entropy bonus acts
    assert entropy_only.update(old.tokens, 0.5)["entropy"] > before


@pytest.mark.parametrize("call, message", [
    (lambda: make_controller("evolution", SPACE, 0), "unknown controller 'evolution'; choose from rl, random"),
    (lambda: make_controller("rl", SPACE, 0, learning_rate=1.0), "the rl controller has no setting 'learning_rate'"),
    (lambda: make_controller("random", SPACE, 0, momentum=1.0), "the random controller has no setting 'momentum'"),
    (lambda: make_controller("rl", SPACE, 0, baseline_decay=1.0), "baseline_decay must be in [0, 1)"),
    (lambda: make_controller("rl", SPACE, 0, hidden_size=0), "hidden_size must be a positive integer"),
    (lambda: make_controller("rl", SPACE, 0).update([0], 1.0), "takes 12 tokens per child, got 1"),
    (lambda: make_controller("rl", SPACE, 0).update([0] * 12, float("nan")), "a reward must be a finite number"),
])  # fmt: skip
def test_bad_settings_are_one_line_errors(call, message):
    with pytest.raises(ConfigError) as caught:
        call()
    assert message in str(caught.value) and "\n" not in str(caught.value)


def test_a_saved_state_of_another_controller_or_space_is_refused():
    tensors, meta = make_controller("rl", SPACE, 0).state()
    with pytest.raises(ConfigError, match="is for 'rl', not the random controller"):
        make_controller("random", SPACE, 0).load_state(tensors, meta)
    with pytest.raises(ConfigError, match="for another search space"):
        make_controller("rl", SearchSpace(depth=2), 0).load_state(tensors, meta)
    with pytest.raises(ConfigError, match="other settings: lr"):
        make_controller("rl", SPACE, 0, lr=0.1).load_state(tensors, meta)
