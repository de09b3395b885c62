"""The transformer policy's separator-offset positions (``anchor_token``) and the toy-task benchmark."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import rlhf_envs  # noqa: F401
from agents import A2C, PPO
from rlhf_envs.errors import ConfigError
from rlhf_envs.tasks.toy import TOY_TOKENIZER

SEP = TOY_TOKENIZER.encode("=")[0]
SMALL = dict(policy="transformer", d_model=16, n_layers=1, n_heads=2, use_action_mask=True, anchor_token=SEP)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _ids(texts: list[str], length: int = 14) -> tuple[torch.Tensor, torch.Tensor]:
    ids = torch.zeros(len(texts), length, dtype=torch.long)
    mask = torch.zeros(len(texts), length, dtype=torch.bool)
    for i, t in enumerate(texts):
        enc = TOY_TOKENIZER.encode(t)
        ids[i, : len(enc)] = torch.as_tensor(enc)
        mask[i, : len(enc)] = True
    return ids, mask


def test_anchor_offsets_measure_positions_from_the_separator():
    agent = PPO("RLHF/Reverse-v0", seed=0, n_envs=2, **SMALL)
    pol = agent.policy
    L = pol.encoder.length
    ids, mask = _ids(["ab=ba", "abcdef=fe", "abc", "a=b=c"])
    off = pol._anchor_offsets(ids, mask) - (L - 1)
    assert off[0, :5].tolist() == [-2, -1, 0, 1, 2]
    assert off[1, :9].tolist() == [-6, -5, -4, -3, -2, -1, 0, 1, 2]
    assert (off[2] == L).all()  # no separator: the one extra index (2L - 1)
    assert off[3, :5].tolist() == [-1, 0, 1, 2, 3]  # measured from the first separator
    # the k-th generated token has the same anchor embedding whatever the prompt length
    assert off[0, 3] == off[1, 7] == 1
    # a separator hidden under padding does not count
    ids2, mask2 = _ids(["ab"])
    ids2[0, 5] = SEP
    assert (pol._anchor_offsets(ids2, mask2) == 2 * L - 1).all()


def test_anchor_policy_features_ignore_padding_and_differ_from_plain_positions(tmp_path):
    agent = PPO("RLHF/Copy-v0", seed=0, n_envs=4, n_steps=8, n_epochs=1, n_minibatches=2, **SMALL)
    assert agent.policy.anchor_emb is not None
    obs, infos = agent.env.reset(seed=0)
    x = agent.policy.encoder(obs)
    length = agent.policy.encoder.length
    noisy = x.clone()
    noisy[:, :length] = torch.where(x[:, length:] == 0, torch.full_like(x[:, :length], SEP), x[:, :length])
    torch.testing.assert_close(agent.policy.value(x), agent.policy.value(noisy))
    plain = PPO("RLHF/Copy-v0", seed=0, n_envs=4, **{**SMALL, "anchor_token": None})
    assert plain.policy.anchor_emb is None
    assert not any("anchor" in name for name, _ in plain.policy.named_parameters())
    # masking still holds and a checkpoint restores the anchor option and the same behaviour
    agent.learn(64, progress_bar=False)
    actions = agent.predict(obs, deterministic=False, action_masks=infos["action_mask"])
    assert infos["action_mask"][np.arange(4), actions].all()
    loaded = PPO.load(agent.save(str(tmp_path / "ckpt")))
    assert loaded.config.anchor_token == SEP and loaded.policy.anchor_emb is not None
    assert agent.evaluate(8, seed=3) == loaded.evaluate(8, seed=3)


def test_anchor_token_is_validated():
    with pytest.raises(ConfigError, match="anchor_token"):
        PPO("RLHF/Copy-v0", policy="transformer", anchor_token=999)
    with pytest.raises(ConfigError, match="anchor_token"):
        PPO("RLHF/Copy-v0", policy="transformer", anchor_token=-1)
    with pytest.raises(ConfigError, match="anchor_token"):
        PPO("RLHF/Copy-v0", policy="mlp", anchor_token=SEP)
    with pytest.raises(ConfigError, match="anchor_token"):
        A2C("RLHF/Copy-v0", policy="mlp", anchor_token=SEP)


def test_anchor_token_reaches_every_agent_with_a_transformer_policy():
    agent = A2C("RLHF/Copy-v0", seed=0, n_envs=4, **SMALL)
    assert agent.policy.anchor_emb is not None and agent.policy.anchor_token == SEP


@pytest.mark.slow
def test_ppo_transformer_solves_copy():
    """The benchmark's preset ("toy-copy") reaches >= 95% exact-match success on Copy (seed 0) in 200k
    env steps."""
    agent = PPO("RLHF/Copy-v0", seed=0, preset="toy-copy")
    agent.learn(200_000, progress_bar=False)
    ev = agent.evaluate(1000, deterministic=True, seed=20_000)
    assert ev["success_rate"] >= 0.95, ev
