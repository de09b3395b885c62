"""Evolution strategies (OpenAI-ES; Salimans et al. 2017) on the agents' surface.

ES treats the return of a policy as a black-box function of its parameters ``theta`` and follows a
Gaussian-smoothed estimate of its gradient; no backpropagation, no value function, no per-step
credit assignment. One iteration ("generation"), top to bottom in :meth:`ES.train` and
:class:`PopulationCollector`:

1. **Antithetic noise.** ``population_size / 2`` noise vectors ``eps_j ~ N(0, I)``, each drawn from
   its own seed (taken from the agent's ``numpy`` generator, so checkpoints and replays regenerate
   exactly the same noise without storing it). Member ``2j`` runs ``theta + sigma eps_j`` and member
   ``2j + 1`` runs ``theta - sigma eps_j``.
2. **Fitness.** Every member is scored on the same episodes (common random numbers: the same env
   seeds and, when sampling, the same sampling seed; a vector env that takes only one seed for all
   its sub-envs, such as CartPole's numpy-batched one, gives each sub-env its own start instead): MLP policies play ``episodes_per_member``
   episodes, the population spread over the agent's ``n_envs`` sub-envs and run in lock step
   (one batched forward of all members' networks per step, ``torch.func.vmap``); LM policies
   complete ``n_envs`` prompts per member (members one after another, the decoder's KV cache being
   per model). With ``deterministic_fitness`` (the default, as in OpenAI-ES) members act greedily.
   LM fitness is ``mean return - kl_coef * mean KL(pi || p_ref)`` (the KL exact at every
   generated position), the same KL-regularised objective the gradient agents optimise.
3. **Centred-rank shaping.** Fitnesses are replaced by their ranks scaled to ``[-0.5, 0.5]``
   (ties get their average rank), which makes the update invariant to the scale of the reward and
   robust to outliers.
4. **Gradient estimate and step.** ``g = sum_j (u_j+ - u_j-) eps_j / population_size`` (OpenAI's
   ``es.py``: the ``1 / sigma`` factor of the textbook estimator is folded into the step size, Adam
   being invariant to the gradient's scale), then Adam on ``-g + weight_decay * theta``.

Which parameters ES perturbs (``es_params``): for MLP policies the actor network ("actor"; the
critic is unused); for LM policies the **last transformer block** ("last_block": the parameters of
the highest-numbered layer, e.g. ``transformer.h.<N-1>.*`` of GPT-2 or ``model.layers.<N-1>.*``
of Llama), a small subset whose perturbation changes every token's distribution; "all" perturbs
every parameter. Everything else is frozen. Timesteps are env steps (generated tokens for LM
policies) summed over all members.

**Data-parallel** (under ``torchrun``; :mod:`agents.distributed`): ``n_envs`` is per rank and a
run on ``w`` ranks equals one process with ``w * n_envs`` sub-envs. Every rank draws the same
noise seeds, env seed and sampling seed (their generators are identical), plays its share of the
episodes (MLP: columns ``rank * n_envs ...`` of every chunk of jobs; LM: its share of every
member's prompts) with its rows of each sampling draw, and all-gathers the returns (and KLs), so
every rank holds the whole population's fitness and applies the same update; parameters are
never communicated after the start. A vector env that takes one seed for the whole batch
(CartPole's) draws each rank's start states from ``seed + rank * n_envs``, as for the other
agents, so that case is data-parallel but not bit-identical to one process.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any, ClassVar

import gymnasium as gym
import numpy as np
import torch
from gymnasium.vector import AutoresetMode

from agents.base import OnPolicyAgent, TrainingDivergedError
from agents.checks import check_bool, check_choice, check_float, check_int
from agents.config import OnPolicyConfig
from agents.envs import autoreset_mode
from agents.lm_collector import EpisodeCollector
from agents.policies import MLPActorCritic
from rlhf_envs.errors import ConfigError


@dataclass
class ESConfig(OnPolicyConfig):
    """OpenAI-ES settings. Rollout fields of :class:`OnPolicyConfig` that ES has no use for
    (``n_steps``, ``gamma``, ``gae_lambda``, ``vf_coef``, ``ent_coef``, ``max_grad_norm``, ...) are
    ignored; ``n_envs`` is the number of sub-envs the population is spread over (MLP) or the
    number of prompts each member completes (LM); under torchrun it is per rank."""

    #: members per generation (even: antithetic pairs)
    population_size: int = 32
    #: standard deviation of the parameter noise
    sigma: float = 0.1
    #: Adam step size on the estimated gradient
    learning_rate: float = 0.03
    #: L2 coefficient: Adam follows ``-g + weight_decay * theta`` (OpenAI-ES's ``l2coeff``)
    weight_decay: float = 0.005
    #: episodes per member (MLP policies; LM members complete ``n_envs`` prompts each)
    episodes_per_member: int = 1
    #: members act greedily when scored (False: they sample, with common random numbers)
    deterministic_fitness: bool = True
    #: parameters perturbed: "auto" ("actor" for MLP, "last_block" for LM), "actor", "last_block", "all"
    es_params: str = "auto"
    #: ES anneals nothing by default
    anneal_lr: bool = False
    n_envs: int = 32
    #: LM fitness: mean return - kl_coef * KL to the reference (0: the return alone)
    kl_coef: float = 0.0

    ALGO: ClassVar[str | None] = "es"
    LM_PRESET: ClassVar[str | None] = "lm-default-es"

    def validate(self) -> None:
        super().validate()
        check_int("population_size", self.population_size, 2)
        if self.population_size % 2:
            raise ConfigError(f"population_size must be even (antithetic pairs), got {self.population_size}")
        check_float("sigma", self.sigma, 0.0, low_open=True)
        check_float("weight_decay", self.weight_decay, 0.0)
        check_int("episodes_per_member", self.episodes_per_member, 1)
        check_bool("deterministic_fitness", self.deterministic_fitness)
        check_choice("es_params", self.es_params, ("auto", "actor", "last_block", "all"))
        if self.policy == "transformer":
            raise ConfigError("ES supports policy='mlp' and policy='lm', not 'transformer'")
        if self.use_action_mask:
            raise ConfigError("ES does not support use_action_mask=True")
        wanted = self.resolved_params()
        if (self.policy == "lm") != (wanted in ("last_block", "all")):
            raise ConfigError(
                f"es_params={self.es_params!r} does not fit policy={self.policy!r}: MLP policies "
                "perturb 'actor', LM policies 'last_block' or 'all'"
            )

    def resolved_params(self) -> str:
        """``es_params`` with "auto" resolved for the policy kind."""
        if self.es_params != "auto":
            return self.es_params
        return "last_block" if self.policy == "lm" else "actor"


def centered_ranks(x: np.ndarray) -> np.ndarray:
    """Ranks of ``x`` scaled to ``[-0.5, 0.5]``; tied values share their average rank."""
    x = np.asarray(x, dtype=np.float64).ravel()
    n = x.size
    order = np.argsort(x, kind="stable")
    ranks = np.empty(n, dtype=np.float64)
    ranks[order] = np.arange(n, dtype=np.float64)
    for value in np.unique(x):  # average ranks over ties
        tied = x == value
        if tied.sum() > 1:
            ranks[tied] = ranks[tied].mean()
    return ranks / (n - 1) - 0.5 if n > 1 else np.zeros(n)


def es_gradient(shaped: np.ndarray, noise: torch.Tensor) -> torch.Tensor:
    """OpenAI-ES's gradient estimate from antithetic pairs.

    ``shaped`` is ``(pairs, 2)`` (column 0: ``theta + sigma eps``, column 1: ``theta - sigma eps``),
    ``noise`` is ``(pairs, D)``; returns ``sum_j (u_j0 - u_j1) eps_j / (2 pairs)``.
    """
    w = torch.as_tensor(shaped[:, 0] - shaped[:, 1], dtype=noise.dtype)
    return (w[:, None] * noise).sum(0) / shaped.size


def noise_vector(seed: int, dim: int) -> torch.Tensor:
    """The ``N(0, I)`` noise of one antithetic pair, regenerated from its seed."""
    return torch.randn(dim, generator=torch.Generator().manual_seed(int(seed)))


def last_block_parameters(lm: torch.nn.Module) -> list[tuple[str, torch.nn.Parameter]]:
    """The parameters of ``lm``'s highest-numbered transformer layer (``...h.<i>.``, ``layers.<i>.``)."""
    pattern = re.compile(r"^(.*?\b(?:h|layers|layer|blocks|block))\.(\d+)\.")
    found: dict[tuple[str, int], list[tuple[str, torch.nn.Parameter]]] = {}
    for name, p in lm.named_parameters():
        m = pattern.match(name)
        if m:
            found.setdefault((m.group(1), int(m.group(2))), []).append((name, p))
    if not found:
        raise ConfigError(
            f"es_params='last_block': no numbered transformer layers found in {type(lm).__name__} "
            "(looked for '<...>.h.<i>.', '.layers.<i>.', '.blocks.<i>.'); use es_params='all'"
        )
    key = max(found, key=lambda k: k[1])
    return found[key]


@dataclass
class ESBatch:
    """One generation: the pairs' noise seeds and the members' fitness ``(pairs, 2)``."""

    seeds: np.ndarray
    fitness: np.ndarray

    def __len__(self) -> int:
        return int(self.fitness.size)


class PopulationCollector(EpisodeCollector):
    """Scores a generation of perturbed members (see the module docstring, step 2).

    For LM policies it is also the agent's ordinary episode collector (evaluation, sampling).
    """

    def collect(self, agent: ES) -> tuple[ESBatch, int, dict[str, float]]:
        cfg = agent.config
        pairs = cfg.population_size // 2
        seeds = agent.np_rng.integers(2**31, size=pairs)
        env_seed = int(agent.np_rng.integers(2**31))
        sample_seed = int(agent.np_rng.integers(2**31))
        theta = agent.flat_parameters()

        def members() -> Iterator[torch.Tensor]:  # one at a time: an LM's vectors are large
            for s in seeds:
                eps = noise_vector(int(s), theta.numel())
                yield theta + cfg.sigma * eps
                yield theta - cfg.sigma * eps

        if cfg.policy == "lm":
            fitness, steps, extra = self._score_lm(agent, members(), env_seed, sample_seed)
        else:
            fitness, steps, extra = self._score_mlp(
                agent, torch.stack(list(members())), env_seed, sample_seed
            )
        agent.set_flat_parameters(theta)
        fit = np.asarray(fitness, dtype=np.float64).reshape(pairs, 2)
        metrics = {
            "fitness_mean": float(fit.mean()),
            "fitness_max": float(fit.max()),
            "fitness_min": float(fit.min()),
            "sigma": cfg.sigma,
            "theta_norm": float(theta.norm()),
            **extra,
        }
        return ESBatch(np.asarray(seeds), fit), steps, metrics

    # -- MLP policies: the whole population in lock step ------------------------------------------

    def _score_mlp(
        self, agent: ES, members: torch.Tensor, env_seed: int, sample_seed: int
    ) -> tuple[list[float], int, dict[str, float]]:
        """Every member's mean return over ``episodes_per_member`` episodes.

        The jobs (member, episode) run in chunks of ``N`` sub-envs, ``N = n_envs`` in one process.
        Data-parallel, ``N = world_size * n_envs`` and rank ``r`` plays columns ``r * n_envs`` to
        ``(r + 1) * n_envs - 1`` of every chunk (sub-env ``i`` of the global vector env, as for
        the other agents), with its rows of one draw for the whole chunk; the returns and lengths
        are then all-gathered, so every rank holds the fitness of the whole population.
        """
        cfg = agent.config
        world = self.world
        sharded = world is not None and world.active
        rank, size = (world.rank, world.world_size) if sharded else (0, 1)
        jobs = [(m, e) for m in range(len(members)) for e in range(cfg.episodes_per_member)]
        n = self.env.num_envs
        big = n * size
        gen = torch.Generator(device=cfg.device).manual_seed(sample_seed)
        local_returns, local_lengths = [], []
        for start in range(0, len(jobs), big):
            chunk = jobs[start : start + big]
            rows = [m for m, _ in chunk] + [chunk[0][0]] * (big - len(chunk))
            env_seeds = [env_seed + e for _, e in chunk] + [env_seed] * (big - len(chunk))
            mine = slice(rank * n, (rank + 1) * n)
            n_real = max(0, min(len(chunk) - rank * n, n))
            r, length = self._play(
                agent,
                members[rows[mine]],
                env_seeds[mine],
                n_real,
                gen,
                fallback_seed=env_seeds[0] + rank * n,
            )
            local_returns.append(
                torch.as_tensor(np.where(np.arange(n) < n_real, r, 0.0), dtype=torch.float64)
            )
            local_lengths.append(
                torch.as_tensor(np.where(np.arange(n) < n_real, length, 0), dtype=torch.int64)
            )
        # (chunks, N) in job order (row-major), then the real jobs only
        all_returns = torch.stack(local_returns)
        all_lengths = torch.stack(local_lengths)
        if sharded:
            all_returns = world.gather(all_returns, dim=1, what="ES fitness all-gather")
            all_lengths = world.gather(all_lengths, dim=1, what="ES episode-length all-gather")
        returns = all_returns.reshape(-1)[: len(jobs)].numpy()
        lengths = all_lengths.reshape(-1)[: len(jobs)].numpy()
        per_member = returns.reshape(len(members), cfg.episodes_per_member).mean(1)
        extra = {
            "mean_return": float(returns.mean()),
            "mean_length": float(lengths.mean()),
            "n_episodes": float(len(jobs)),
        }
        return per_member.tolist(), int(lengths.sum()), extra

    @torch.no_grad()
    def _play(
        self,
        agent: ES,
        params: torch.Tensor,
        env_seeds: list[int],
        n_real: int,
        gen: torch.Generator,
        fallback_seed: int | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """One episode per sub-env, sub-env ``i`` acting with the flat actor parameters ``params[i]``.

        ``fallback_seed`` (default ``env_seeds[0]``) seeds a vector env that takes one seed only.
        Data-parallel (an active ``self.world``), the random numbers are this rank's rows of one
        draw for all ranks' sub-envs, and afterwards ``gen`` is advanced by the draws the longest
        rank made after this rank's episodes had ended (as in the LM rollout), so every rank's
        generator stays where one process's would be.
        """
        env, pol, dev = self.env, agent.policy, agent.config.device
        n = env.num_envs
        mode = autoreset_mode(env)
        world = self.world
        sharded = world is not None and world.active
        sampling = not agent.config.deterministic_fitness
        batched = agent.unflatten(params)
        actor = pol.actor

        def forward(p: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
            return torch.func.functional_call(actor, p, (x,))

        def draw(out: torch.Tensor) -> torch.Tensor:
            if pol.discrete:  # inverse-CDF sampling, one uniform per row (as the policies' act)
                if sharded:
                    u = world.uniforms(n, gen, out.device)
                else:
                    u = torch.rand(n, 1, generator=gen, device=out.device)
                cdf = torch.softmax(out, -1).cumsum(-1)
                a = torch.searchsorted(cdf, u * cdf[:, -1:], right=True).squeeze(-1)
                return a.clamp_(max=out.shape[-1] - 1)
            if sharded:
                z = world.normals(out.shape, gen, out.device)
            else:
                z = torch.randn(out.shape, generator=gen, device=out.device)
            return out + pol.log_std.exp() * z

        act_all = torch.func.vmap(forward)
        try:  # common random numbers: member m's episode e is reset with env_seed + e
            obs, _ = env.reset(seed=env_seeds)
        except (TypeError, ValueError, gym.error.Error):
            # vector envs that take one seed only (e.g. CartPole's numpy-batched one): the whole
            # batch's start states come from that one seed, so members differ in their start states
            obs, _ = env.reset(seed=env_seeds[0] if fallback_seed is None else fallback_seed)
        active = np.arange(n) < n_real
        returns = np.zeros(n)
        lengths = np.zeros(n, dtype=np.int64)
        steps = 0
        while active.any():
            out = act_all(batched, pol.encoder(obs, dev))
            if not sampling:
                a = out.argmax(-1) if pol.discrete else out
            else:
                a = draw(out)
            steps += 1
            obs, rewards, term, trunc, _ = env.step(pol.to_env_actions(a))
            returns += np.where(active, np.asarray(rewards, dtype=np.float64), 0.0)
            lengths += active
            done = (np.asarray(term) | np.asarray(trunc)) & active
            active &= ~done
            if mode == AutoresetMode.DISABLED and done.any() and active.any():
                obs, _ = env.reset(options={"reset_mask": done})
        if sharded and sampling:  # the draws of the global loop's remaining steps
            out = act_all(batched, pol.encoder(obs, dev))
            for _ in range(world.max_int(steps, "ES episode length max") - steps):
                draw(out)
        return returns, lengths

    # -- LM policies: one member after another ------------------------------------------------------

    def _score_lm(
        self, agent: ES, members: Iterable[torch.Tensor], env_seed: int, sample_seed: int
    ) -> tuple[list[float], int, dict[str, float]]:
        """Every member's ``mean return - kl_coef * mean KL`` over the same prompts.

        Data-parallel (an active ``self.world``), every member's prompts are the global batch of
        ``world_size * n_envs``: each rank completes its share (:meth:`rollout`'s sharding: reset
        seeds ``env_seed + rank * n_envs``, its rows of each sampling draw), and the per-prompt
        returns and KLs of all members are all-gathered once at the end, so every rank computes
        the whole population's fitness as one process would.
        """
        cfg = agent.config
        world = self.world
        sharded = world is not None and world.active
        returns, kls = [], []
        tokens = 0
        for theta in members:
            agent.set_flat_parameters(theta)
            gen = torch.Generator(device=cfg.device).manual_seed(sample_seed)
            obs, actions, _, rewards, mask, _ = self.rollout(
                self.env, env_seed, gen, cfg.deterministic_fitness, world=world
            )
            returns.append((rewards * mask).sum(1).double().cpu())
            if cfg.kl_coef > 0:
                kl_tok, _ = self.policy.kl_and_ref_logprobs(obs, actions)
                kls.append((kl_tok * mask).sum(1).double().cpu())
            tokens += int(mask.sum())
        per_prompt = torch.stack(returns)  # (members, prompts)
        per_prompt_kl = torch.stack(kls) if kls else torch.zeros_like(per_prompt)
        if sharded:
            per_prompt = world.gather(per_prompt, dim=1, what="ES fitness all-gather")
            per_prompt_kl = world.gather(per_prompt_kl, dim=1, what="ES KL all-gather")
            total = torch.tensor([tokens], dtype=torch.int64)
            world.all_reduce_sum_([total], "ES token count all-reduce")
            tokens = int(total.item())
        ret = per_prompt.mean(1)
        kl = per_prompt_kl.mean(1)
        fitness = ret - cfg.kl_coef * kl
        extra = {"mean_return": float(ret.mean())}
        if cfg.kl_coef > 0:
            extra["kl_ref"] = float(kl.mean())
        return fitness.tolist(), tokens, extra


class ES(OnPolicyAgent):
    """OpenAI-ES agent: ``ES("CartPole-v1", seed=0).learn(n)``; options: :class:`ESConfig`'s fields.

    Example::

        agent = ES("CartPole-v1", seed=0)
        agent.learn(500_000)
        agent.evaluate(20)   # {'mean_return': ..., ...}
        agent.save("runs/es"); agent = ES.load("runs/es")

    With ``policy="lm"`` (``ES("RLHF/Sentiment-v0", policy="lm", model="default")``) it perturbs
    the LM's last transformer block (see the module docstring).
    """

    config_class = ESConfig
    config: ESConfig

    def __init__(self, env_or_id: Any, seed: int = 0, **config: Any) -> None:
        super().__init__(env_or_id, seed=seed, **config)
        cfg = self.config
        named = self._perturbed_parameters()
        keep = {id(p) for _, p in named}
        for p in self.policy.parameters():
            p.requires_grad_(id(p) in keep)
        self.es_names = [n for n, _ in named]
        self.es_params = [p for _, p in named]
        self.optimizer = torch.optim.Adam(self.es_params, lr=cfg.learning_rate)

    def _build_policy(self) -> torch.nn.Module:
        if self.config.policy == "lm":
            from agents.lm_actor_critic import LMActorCritic

            return LMActorCritic.from_config(
                self.config,
                self.observation_space,
                self.action_space,
                self.init_rng,
                env=self.env,
                value_head=False,
            )
        return super()._build_policy()

    def _build_collector(self) -> PopulationCollector:
        return PopulationCollector(self)

    def _perturbed_parameters(self) -> list[tuple[str, torch.nn.Parameter]]:
        which = self.config.resolved_params()
        if which == "actor":
            assert isinstance(self.policy, MLPActorCritic)
            return list(self.policy.actor.named_parameters())
        if which == "last_block":
            return last_block_parameters(self.policy.lm)
        return list(self.policy.lm.named_parameters())

    @property
    def num_es_parameters(self) -> int:
        """How many parameters ES perturbs (the dimension of the search)."""
        return sum(p.numel() for p in self.es_params)

    def flat_parameters(self) -> torch.Tensor:
        """The perturbed parameters as one flat float32 vector (a copy)."""
        return torch.cat([p.detach().reshape(-1).float() for p in self.es_params]).clone()

    @torch.no_grad()
    def set_flat_parameters(self, theta: torch.Tensor) -> None:
        """Write a flat vector back into the perturbed parameters."""
        i = 0
        for p in self.es_params:
            p.copy_(theta[i : i + p.numel()].view_as(p))
            i += p.numel()

    def unflatten(self, thetas: torch.Tensor) -> dict[str, torch.Tensor]:
        """``(M, D)`` flat vectors -> ``{name: (M, *shape)}`` (for the batched MLP forward)."""
        out, i = {}, 0
        for name, p in zip(self.es_names, self.es_params, strict=True):
            out[name] = thetas[:, i : i + p.numel()].reshape(len(thetas), *p.shape)
            i += p.numel()
        return out

    def train(self, batch: ESBatch, progress_remaining: float) -> dict[str, float]:  # type: ignore[override]
        """Centred ranks -> antithetic gradient estimate -> Adam on ``-g + weight_decay * theta``."""
        cfg = self.config
        shaped = centered_ranks(batch.fitness.ravel()).reshape(batch.fitness.shape)
        theta = self.flat_parameters()
        # es_gradient's sum, one regenerated noise vector at a time (an LM's would not fit stacked)
        w = shaped[:, 0] - shaped[:, 1]
        g = torch.zeros_like(theta)
        for wj, s in zip(w, batch.seeds, strict=True):
            g += float(wj) * noise_vector(int(s), theta.numel())
        g /= shaped.size
        step = -g + cfg.weight_decay * theta
        if not torch.isfinite(step).all():
            raise TrainingDivergedError(
                f"non-finite ES gradient at iteration {self.iteration} (fitness {batch.fitness.tolist()}); "
                "weights not updated"
            )
        i = 0
        for p in self.es_params:
            p.grad = step[i : i + p.numel()].view_as(p).to(p.dtype).clone()
            i += p.numel()
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        new = self.flat_parameters()
        return {
            "grad_norm": float(g.norm()),
            "update_ratio": float((new - theta).norm() / max(float(theta.norm()), 1e-12)),
        }

    def __repr__(self) -> str:
        return f"ES(env={self.env_id or type(self.env).__name__}, seed={self.seed}, policy={self.config.policy}, params={self.num_es_parameters})"
