"""The RLHF loop: sample from the policy, ask the human, fit the reward model, optimise the policy.

Each round of :class:`RLHFLoop`:

1. **sample** a pool of candidate pairs from the *current* policy: two completions of the same
   prompt per pair (the sampling env is reset with each seed twice);
2. **select** which pairs to ask about: ``"random"`` or ``"disagreement"`` (the pairs where the
   reward-model ensemble's members disagree most about ``P(A > B)``, Christiano et al. 2017; the
   first round has no ensemble yet and selects at random under both rules);
3. **ask** the human (:class:`~rlhf_envs.feedback.simulated.SimulatedHuman` or anything with the
   same ``compare(a, b)`` method, e.g. :class:`TerminalHuman`), within a feedback budget and a
   per-round query schedule (``"constant"`` or ``"decaying"``);
4. **fit** a bootstrap ensemble :class:`~rlhf_envs.feedback.learned.RewardModel` from scratch on all
   feedback so far, save it, and build the training env ``RLHF/SimulatedHuman-v0`` with
   ``proxy=<that directory>`` so the env pays the new proxy's score;
5. **optimise** the policy with PPO against it. The agent persists across rounds (its weights,
   optimiser and KL controller continue; its frozen reference stays the initial model);
6. **measure** the policy on fresh episodes (not the queried ones): proxy reward, gold reward, KL and
   sqrt(KL) to the initial policy, plus how well the proxy orders those episodes by gold.

Everything is seeded from ``RLHFConfig.seed`` and the round number, so the same seed gives the same
numbers on CPU. With ``run_dir`` set, each round's feedback, reward model and agent checkpoint are
written atomically (temporary name, then rename) and ``state.json`` is replaced last, as the commit
point: a run killed at any moment resumes from the last committed round with the same feedback and
the same numbers as an uninterrupted run.

    from agents.rlhf import RLHFConfig, RLHFLoop
    loop = RLHFLoop(RLHFConfig(seed=0, selection="disagreement"), run_dir="runs/rlhf")
    history = loop.run()        # one dict per round (see RLHFLoop.run)

or ``rlhf-envs rlhf --seed 0 --out runs/rlhf`` on the command line.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from rlhf_envs.errors import BudgetExhaustedError, ConfigError
from rlhf_envs.feedback.base import Episode

SAMPLE_ENV_ID = "RLHF/Sentiment-v0"
TRAIN_ENV_ID = "RLHF/SimulatedHuman-v0"
SCHEDULES = ("constant", "decaying")
SELECTIONS = ("random", "disagreement")
STATE_FILE = "state.json"


class Human(Protocol):
    """What the loop needs from a (simulated or real) human: pairwise answers.

    ``compare(a, b)`` returns an object with ``prob_a()``: per pair 1.0 (A better), 0.0 (B better),
    0.5 (tie) or ``None`` (skipped), like :class:`~rlhf_envs.feedback.simulated.Comparisons`. It may
    raise :class:`~rlhf_envs.errors.BudgetExhaustedError` when it will answer no more.
    """

    def compare(self, a: Sequence[Episode], b: Sequence[Episode]) -> Any: ...


# ---------------------------------------------------------------------------------------------------
# Configuration
# ---------------------------------------------------------------------------------------------------


@dataclass
class RLHFConfig:
    """Settings of the loop. The defaults run 6 rounds on the embedded model in a few minutes.

    Attributes:
        rounds: number of rounds.
        queries_per_round: queries asked in round 0 (and every round for ``"constant"``).
        schedule: ``"constant"`` or ``"decaying"`` (round ``r`` asks
            ``max(min_queries, round(queries_per_round * decay**r))``).
        decay, min_queries: the decaying schedule's rate and floor.
        budget: total queries allowed over the run (``None`` = no limit besides the human's own).
            A round asks at most what is left; once nothing is left the loop stops (or, with
            ``on_budget_exhausted="continue"``, keeps optimising against the last reward model).
        on_budget_exhausted: ``"stop"`` or ``"continue"``.
        selection: ``"random"`` or ``"disagreement"``.
        pool_factor: candidate pairs sampled per query asked (the pool the selection picks from).
        rater: the simulated human's rater (a preset name of
            :mod:`rlhf_envs.feedback.simulated`), used when no ``human`` is given to the loop.
        cost_per_comparison, seconds_per_query, seconds_per_word: the simulated human's ledger.
        n_members, aggregate: the reward-model ensemble.
        rm_epochs, rm_lr, rm_random_fraction: its Bradley-Terry fit (refitted from scratch on all
            feedback each round).
        ppo_tokens_per_round: generated tokens of PPO per round (whole iterations: a little more).
        n_envs, learning_rate, kl_coef: PPO's episodes per batch, learning rate, KL coefficient.
        ppo_kwargs: further :class:`~agents.config.PPOConfig` options.
        eval_episodes: fresh episodes on which proxy, gold and KL are measured each round.
        model: the policy's starting model (``"default"`` = the embedded model, or a directory).
        max_new_tokens: completion length limit (``None`` = the task's default).
        seed: seeds everything.
    """

    rounds: int = 6
    queries_per_round: int = 32
    schedule: str = "constant"
    decay: float = 0.7
    min_queries: int = 8
    budget: int | None = None
    on_budget_exhausted: str = "stop"
    selection: str = "disagreement"
    pool_factor: int = 4
    rater: str = "Mistake"
    cost_per_comparison: float = 0.1
    seconds_per_query: float = 10.0
    seconds_per_word: float = 0.25
    n_members: int = 3
    aggregate: str = "mean"
    rm_epochs: int = 3
    rm_lr: float = 3e-4
    rm_random_fraction: float = 0.1
    ppo_tokens_per_round: int = 4000
    n_envs: int = 64
    learning_rate: float = 1e-4
    kl_coef: float = 0.05
    ppo_kwargs: dict[str, Any] = field(default_factory=dict)
    eval_episodes: int = 64
    model: str = "default"
    max_new_tokens: int | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise :class:`ConfigError` on settings that cannot work, saying what is allowed."""
        for name in ("rounds", "queries_per_round", "pool_factor", "n_members", "rm_epochs"):
            _positive_int(name, getattr(self, name))
        for name in ("ppo_tokens_per_round", "n_envs", "eval_episodes"):
            _positive_int(name, getattr(self, name))
        _positive_int("min_queries", self.min_queries, allow_zero=True)
        if self.eval_episodes < 2:
            raise ConfigError(f"eval_episodes must be >= 2 (pairs are compared), got {self.eval_episodes}")
        if self.budget is not None:
            _positive_int("budget", self.budget, allow_zero=True)
        if self.schedule not in SCHEDULES:
            raise ConfigError(f"schedule must be one of {SCHEDULES}, got {self.schedule!r}")
        if self.selection not in SELECTIONS:
            raise ConfigError(f"selection must be one of {SELECTIONS}, got {self.selection!r}")
        if self.on_budget_exhausted not in ("stop", "continue"):
            raise ConfigError(
                f"on_budget_exhausted must be 'stop' or 'continue', got {self.on_budget_exhausted!r}"
            )
        if not (isinstance(self.decay, int | float) and 0.0 < self.decay <= 1.0):
            raise ConfigError(f"decay must be a number in (0, 1], got {self.decay!r}")
        if self.selection == "disagreement" and self.n_members < 2:
            raise ConfigError("selection='disagreement' needs an ensemble: n_members >= 2")
        for name in ("rm_lr", "learning_rate"):
            v = getattr(self, name)
            if not (isinstance(v, int | float) and 0 < v < 1):
                raise ConfigError(f"{name} must be a number in (0, 1), got {v!r}")
        if not (isinstance(self.kl_coef, int | float) and self.kl_coef >= 0):
            raise ConfigError(f"kl_coef must be a number >= 0, got {self.kl_coef!r}")
        if not 0.0 <= self.rm_random_fraction < 1.0:
            raise ConfigError(f"rm_random_fraction must be in [0, 1), got {self.rm_random_fraction!r}")
        if not isinstance(self.ppo_kwargs, dict):
            raise ConfigError(f"ppo_kwargs must be a dict, got {type(self.ppo_kwargs).__name__}")

    def planned_queries(self, round_index: int) -> int:
        """Queries the schedule asks for in round ``round_index`` (before the budget cap)."""
        if self.schedule == "constant":
            return self.queries_per_round
        return max(self.min_queries, int(round(self.queries_per_round * self.decay**round_index)))

    def to_json_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _positive_int(name: str, v: Any, allow_zero: bool = False) -> None:
    low = 0 if allow_zero else 1
    if isinstance(v, bool) or not isinstance(v, int | np.integer) or v < low:
        raise ConfigError(f"{name} must be an int >= {low}, got {v!r}")


def schedule_counts(config: RLHFConfig, rounds: int | None = None) -> list[int]:
    """Queries per round that the schedule and the loop's budget give (no human-side limits)."""
    left = math.inf if config.budget is None else config.budget
    out = []
    for r in range(config.rounds if rounds is None else rounds):
        n = int(min(config.planned_queries(r), left))
        out.append(n)
        left -= n
    return out


def _seed(*parts: int) -> int:
    """A 31-bit seed derived from the loop seed, the round and a tag (independent streams)."""
    return int(np.random.SeedSequence([int(p) for p in parts]).generate_state(1)[0] & 0x7FFFFFFF)


# ---------------------------------------------------------------------------------------------------
# Pieces used by the loop (module-level so they can be checked on their own)
# ---------------------------------------------------------------------------------------------------


def select_pairs(
    n: int, pool: int, rule: str, rng: np.random.Generator, disagreement: np.ndarray | None = None
) -> np.ndarray:
    """Indices of the ``n`` pairs to ask about among ``pool`` candidates.

    ``rule="random"``: a uniformly random subset (from ``rng``). ``rule="disagreement"``: the ``n``
    largest ``disagreement`` values (ties broken by the lower index), in decreasing order.
    """
    if rule not in SELECTIONS:
        raise ConfigError(f"selection must be one of {SELECTIONS}, got {rule!r}")
    if not 0 <= n <= pool:
        raise ConfigError(f"cannot select {n} pairs from a pool of {pool}")
    if rule == "random":
        return np.sort(rng.choice(pool, size=n, replace=False))
    if disagreement is None or len(disagreement) != pool:
        raise ConfigError("selection='disagreement' needs one disagreement value per candidate pair")
    d = np.asarray(disagreement, dtype=np.float64)
    if not np.all(np.isfinite(d)):
        raise ConfigError("disagreement values must be finite")
    return np.argsort(-d, kind="stable")[:n]


def fit_reward_model(
    config: RLHFConfig,
    a: Sequence[Episode],
    b: Sequence[Episode],
    labels: Sequence[float | None],
    seed: int,
) -> tuple[Any, dict[str, Any]]:
    """A fresh reward-model ensemble fitted on all pairs ``(a[i], b[i])`` with the human's ``labels``.

    The loop's recipe (``config.n_members``, ``aggregate``, ``rm_epochs``, ``rm_lr``,
    ``rm_random_fraction``; normalised scores; no held-out split: every answer is used), on
    ``config.model``. Returns the model and ``{"rm_train_loss", "rm_pairs"}``.
    """
    from rlhf_envs.feedback.learned import RewardModel

    with _quiet_transformers():
        rm = RewardModel(
            None if config.model == "default" else config.model,
            n_members=config.n_members,
            aggregate=config.aggregate,
            normalize=True,
            seed=seed,
        )
    with _quiet_transformers(), torch.random.fork_rng(devices=[]):
        report = rm.fit_preferences(
            a,
            b,
            labels,
            random_fraction=config.rm_random_fraction,
            epochs=config.rm_epochs,
            lr=config.rm_lr,
            val_fraction=0.0,
        )
    return rm, {"rm_train_loss": float(np.mean(report.train_loss)), "rm_pairs": report.n_train}


def concordance(proxy: np.ndarray, gold: np.ndarray) -> float:
    """Share of episode pairs with different gold values that ``proxy`` orders like ``gold``."""
    p, g = np.asarray(proxy, dtype=np.float64), np.asarray(gold, dtype=np.float64)
    i, j = np.triu_indices(len(g), 1)
    keep = g[i] != g[j]
    if not keep.any():
        return float("nan")
    agree = np.sign(p[i] - p[j]) == np.sign(g[i] - g[j])
    return float(agree[keep].mean())


def _atomic_write_json(path: Path, data: Any) -> None:
    """Write JSON to ``path`` through a temporary file and an atomic rename."""
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, indent=1, default=_json_default)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _json_default(obj: Any) -> Any:
    if hasattr(obj, "item"):
        return obj.item()
    if isinstance(obj, tuple | set):
        return list(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def _atomic_dir(path: Path, write: Callable[[Path], None]) -> None:
    """Build directory ``path`` under a temporary name with ``write(tmp)``, then rename it in place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=path.name + ".tmp-", dir=path.parent))
    try:
        write(tmp)
        if path.exists():
            shutil.rmtree(path)
        os.rename(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


# ---------------------------------------------------------------------------------------------------
# A real human at the terminal
# ---------------------------------------------------------------------------------------------------


@dataclass
class TerminalComparisons:
    """Answers typed at the terminal (``labels``: ``"A"``, ``"B"``, ``"tie"`` or ``"skip"``)."""

    labels: list[str]

    def __len__(self) -> int:
        return len(self.labels)

    def prob_a(self) -> list[float | None]:
        table = {"A": 1.0, "B": 0.0, "tie": 0.5, "skip": None}
        return [table[x] for x in self.labels]


class TerminalHuman:
    """A person answering pairwise queries at the terminal: the same ``compare`` as SimulatedHuman.

    Each query shows the prompt and the two completions (in a random order, to spread position
    bias) and reads ``1``/``2`` (the first/second shown is better), ``t`` (tie) or ``s`` (skip).
    ``max_queries`` caps the session (then :class:`~rlhf_envs.errors.BudgetExhaustedError`).
    """

    def __init__(
        self,
        max_queries: int | None = None,
        seed: int = 0,
        input_fn: Callable[[str], str] = input,
        print_fn: Callable[[str], None] = print,
    ) -> None:
        self.max_queries, self.queries = max_queries, 0
        self.rng = np.random.default_rng(seed)
        self.input_fn, self.print_fn = input_fn, print_fn

    def state_dict(self) -> dict[str, Any]:
        return {"queries": self.queries, "rng": self.rng.bit_generator.state}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.queries = int(state["queries"])
        self.rng.bit_generator.state = state["rng"]

    def compare(self, a: Sequence[Episode], b: Sequence[Episode]) -> TerminalComparisons:
        if len(a) != len(b):
            raise ConfigError(f"compare: {len(a)} A episodes but {len(b)} B episodes; they must pair up")
        if self.max_queries is not None and self.queries + len(a) > self.max_queries:
            raise BudgetExhaustedError(
                f"TerminalHuman: {len(a)} more queries would exceed max_queries={self.max_queries} "
                f"({self.queries} answered)"
            )
        labels = []
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            swap = bool(self.rng.random() < 0.5)
            first, second = (y, x) if swap else (x, y)
            self.print_fn(
                f"\n[{i + 1}/{len(a)}] prompt: {x.prompt!r}\n  1: {first.completion!r}\n  2: {second.completion!r}"
            )
            while True:
                ans = self.input_fn("which is better? [1/2/t(ie)/s(kip)] ").strip().lower()
                if ans in ("1", "2", "t", "s"):
                    break
                self.print_fn("please type 1, 2, t or s")
            if ans in ("t", "s"):
                labels.append("tie" if ans == "t" else "skip")
            else:
                first_wins = ans == "1"
                labels.append("A" if first_wins != swap else "B")
            self.queries += 1
        return TerminalComparisons(labels)


# ---------------------------------------------------------------------------------------------------
# The loop
# ---------------------------------------------------------------------------------------------------


class RLHFLoop:
    """Rounds of sample -> select -> ask -> fit -> PPO -> measure (see the module docstring).

    Args:
        config: an :class:`RLHFConfig` (or ``None`` for the defaults).
        human: anything with ``compare(a, b)`` (see :class:`Human`); default a
            :class:`~rlhf_envs.feedback.simulated.SimulatedHuman` over the task's gold utility
            with ``config.rater``, seeded from ``config.seed``.
        run_dir: where rounds are saved (and resumed from); ``None`` keeps reward models in a
            temporary directory and saves nothing else.
        resume: continue from ``run_dir/state.json`` if it exists (the config must match, except
            ``rounds``, which may grow); ``False`` refuses to overwrite an existing run.
        verbose: print one line per round.
    """

    def __init__(
        self,
        config: RLHFConfig | None = None,
        human: Human | None = None,
        run_dir: str | os.PathLike | None = None,
        resume: bool = True,
        verbose: bool = False,
    ) -> None:
        import rlhf_envs  # noqa: F401  (registers the env ids)

        self.config = cfg = config if config is not None else RLHFConfig()
        if not isinstance(cfg, RLHFConfig):
            raise ConfigError(f"config must be an RLHFConfig, got {type(cfg).__name__}")
        cfg.validate()
        self.verbose = verbose
        self._tmp: tempfile.TemporaryDirectory | None = None
        if run_dir is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="rlhf-loop-")
            self.run_dir, self.persist = Path(self._tmp.name), False
        else:
            self.run_dir, self.persist = Path(run_dir), True
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self._envs: dict[tuple[str, int], Any] = {}
        self.env_kwargs: dict[str, Any] = {"ref_logprobs": False, "model": cfg.model}
        if cfg.max_new_tokens is not None:
            self.env_kwargs["max_new_tokens"] = cfg.max_new_tokens
        task = self._env(SAMPLE_ENV_ID, cfg.n_envs).task
        self.gold = task.feedback  # the task's hidden gold utility (VADER for the sentiment task)
        self.tokenizer = task.tokenizer
        if human is None:
            from rlhf_envs.feedback.simulated import SimulatedHuman

            human = SimulatedHuman(
                self.gold,
                cfg.rater,
                seed=_seed(cfg.seed, 0, 1),
                cost_per_comparison=cfg.cost_per_comparison,
                seconds_per_query=cfg.seconds_per_query,
                seconds_per_word=cfg.seconds_per_word,
            )
        if not callable(getattr(human, "compare", None)):
            raise ConfigError(f"human must have a compare(a, b) method, got {type(human).__name__}")
        self.human = human
        self.history: list[dict[str, Any]] = []
        self.feedback: list[dict[str, Any]] = []
        self.initial: dict[str, float] = {}
        self.reward_model: Any = None
        self.rm_dir: Path | None = None
        self.agent: Any = None
        self.stop_reason: str | None = None
        self.rounds_done = 0
        self.ppo_tokens_total = 0
        state_path = self.run_dir / STATE_FILE
        if self.persist and state_path.exists():
            if not resume:
                raise ConfigError(
                    f"{str(self.run_dir)!r} already holds a run; pass resume=True or a new run_dir"
                )
            self._restore(json.loads(state_path.read_text()))
        else:
            self._build_agent()

    # -- envs and agent -----------------------------------------------------------------------------

    def _env(self, env_id: str, n: int, **extra: Any) -> Any:
        """A cached vector env (``extra`` kwargs bypass the cache)."""
        import gymnasium as gym

        if extra:
            return gym.make_vec(
                env_id, num_envs=n, vectorization_mode="vector_entry_point", **self.env_kwargs, **extra
            )
        key = (env_id, n)
        if key not in self._envs:
            self._envs[key] = gym.make_vec(
                env_id, num_envs=n, vectorization_mode="vector_entry_point", **self.env_kwargs
            )
        return self._envs[key]

    def _ppo_kwargs(self) -> dict[str, Any]:
        cfg = self.config
        return {
            "policy": "lm",
            "n_envs": cfg.n_envs,
            "learning_rate": cfg.learning_rate,
            "kl_coef": cfg.kl_coef,
            **cfg.ppo_kwargs,
        }

    def _build_agent(self) -> None:
        from agents.ppo import PPO

        # Built on the gold-paying sampling env only for its spaces: before every learn() the
        # training env (paying the current proxy) is swapped in, see _use_proxy.
        env = self._env(SAMPLE_ENV_ID, self.config.n_envs)
        self.agent = PPO(env, seed=self.config.seed, model=self.config.model, **self._ppo_kwargs())

    def _use_proxy(self, rm_dir: Path) -> None:
        """Point PPO at a fresh ``RLHF/SimulatedHuman-v0`` vector env paying the proxy in ``rm_dir``."""
        env = self._env(TRAIN_ENV_ID, self.config.n_envs, proxy=str(rm_dir))
        old = self.agent.env
        self.agent.env = env
        self.agent.collector.env = env
        if old is not env and old not in self._envs.values():
            old.close()

    # -- sampling -----------------------------------------------------------------------------------

    @torch.no_grad()
    def sample(
        self, seeds: Sequence[int], generator_seed: int
    ) -> tuple[list[Episode], dict[str, np.ndarray]]:
        """One completion per entry of ``seeds`` (the prompt's reset seed) from the current policy.

        Returns the episodes and per-episode arrays: ``logp`` and ``ref_logp`` sums (the KL to the
        initial policy's numerator), and ``length``.
        """
        from rlhf_envs.tokenization import decode_batch

        env = self._env(SAMPLE_ENV_ID, len(seeds))
        gen = torch.Generator(device=self.agent.config.device).manual_seed(int(generator_seed))
        pol = self.agent.policy
        pol.eval()
        obs, actions, logp, _, mask, _ = self.agent.collector.rollout(env, [int(s) for s in seeds], gen)
        _, ref_logp = pol.values_and_ref_logprobs(obs, actions)
        m = mask.float()
        n_prompt = obs["input_ids"].shape[1] - actions.shape[1]
        p_ids = obs["input_ids"][:, :n_prompt].cpu().numpy()
        p_mask = obs["attention_mask"][:, :n_prompt].cpu().numpy().astype(bool)
        c_ids = actions.cpu().numpy()
        c_len = mask.long().sum(1).cpu().numpy()
        # prompts are left-padded: move each to the front for decoding
        p_len = p_mask.sum(1)
        p_rows = np.zeros_like(p_ids)
        for i in range(len(p_ids)):
            p_rows[i, : p_len[i]] = p_ids[i][p_mask[i]]
        prompts = decode_batch(self.tokenizer, p_rows, p_len)
        completions = decode_batch(self.tokenizer, c_ids, c_len)
        eos = self.tokenizer.eos_id
        episodes = []
        for i in range(len(seeds)):
            cids = tuple(int(x) for x in c_ids[i, : c_len[i]])
            episodes.append(
                Episode(
                    str(prompts[i]),
                    str(completions[i]),
                    tuple(int(x) for x in p_rows[i, : p_len[i]]),
                    cids,
                    bool(cids) and cids[-1] == eos,
                    {},
                    int(seeds[i]),
                )
            )
        stats = {
            "logp": (logp * m).sum(1).double().cpu().numpy(),
            "ref_logp": (ref_logp * m).sum(1).double().cpu().numpy(),
            "length": c_len.astype(np.float64),
        }
        return episodes, stats

    # -- one round --------------------------------------------------------------------------------

    def _queries_left(self) -> float:
        return math.inf if self.config.budget is None else self.config.budget - self.queries_used

    @property
    def queries_used(self) -> int:
        """Queries asked so far (all rounds)."""
        return sum(len(r["labels"]) for r in self.feedback)

    def ask(self, a: Sequence[Episode], b: Sequence[Episode]) -> list[float | None]:
        """Ask the human about the pairs ``(a[i], b[i])``; refuses (``BudgetExhaustedError``, nothing
        asked) if they do not fit in what is left of ``config.budget``."""
        left = self._queries_left()
        if len(a) > left:
            raise BudgetExhaustedError(
                f"RLHFLoop: {len(a)} queries requested but only {left} of the budget "
                f"{self.config.budget} are left; nothing was asked"
            )
        answers = self.human.compare(list(a), list(b))
        labels = list(answers.prob_a())
        if len(labels) != len(a):
            raise ConfigError(f"the human answered {len(labels)} of {len(a)} queries")
        return labels

    def _affordable(self, n: int) -> int:
        """Cap ``n`` by the human's own money budget when it states one (SimulatedHuman)."""
        left = getattr(self.human, "remaining_budget", None)
        cost = float(getattr(self.human, "cost_per_comparison", 0.0) or 0.0)
        if callable(left) and cost > 0 and math.isfinite(left()):
            n = min(n, int(math.floor(left() / cost + 1e-9)))
        mq = getattr(self.human, "max_queries", None)
        ledger = getattr(self.human, "ledger", None)
        if isinstance(mq, int) and ledger is not None:
            n = min(n, mq - int(ledger.queries))
        return max(n, 0)

    def _collect_feedback(self, r: int, n: int) -> dict[str, Any]:
        cfg = self.config
        t0 = time.perf_counter()
        pool = cfg.pool_factor * n
        base = _seed(cfg.seed, r, 2) % (2**30)
        seeds = np.repeat(base + np.arange(pool), 2)  # each prompt twice: a pair per prompt
        eps, _ = self.sample(seeds.tolist(), _seed(cfg.seed, r, 3))
        a, b = eps[0::2], eps[1::2]
        t1 = time.perf_counter()
        rule = cfg.selection if self.reward_model is not None else "random"
        dis = self.reward_model.disagreement(a, b) if self.reward_model is not None else None
        idx = select_pairs(n, pool, rule, np.random.default_rng(_seed(cfg.seed, r, 4)), dis)
        sa, sb = [a[i] for i in idx], [b[i] for i in idx]
        t2 = time.perf_counter()
        labels = self.ask(sa, sb)
        t3 = time.perf_counter()
        gold_a = self.gold_of(sa)
        gold_b = self.gold_of(sb)
        return {
            "round": r,
            "selection": rule,
            "pool": pool,
            "a": [_episode_dict(e) for e in sa],
            "b": [_episode_dict(e) for e in sb],
            "labels": labels,
            "disagreement": None if dis is None else [float(dis[i]) for i in idx],
            "pool_disagreement": None if dis is None else float(np.mean(dis)),
            "pool_disagreement_values": None if dis is None else [float(x) for x in dis],
            "gold_a": gold_a.tolist(),
            "gold_b": gold_b.tolist(),
            "seconds": {"sample": t1 - t0, "select": t2 - t1, "ask": t3 - t2},
        }

    def gold_of(self, episodes: Sequence[Episode]) -> np.ndarray:
        """The gold utility of each episode (the task's hidden scripted feedback)."""
        from rlhf_envs.feedback.base import score_episodes

        return score_episodes(self.gold, list(episodes)).astype(np.float64)

    def _fit(self, r: int) -> tuple[Any, dict[str, Any]]:
        a = [_episode(x) for rec in self.feedback for x in rec["a"]]
        b = [_episode(x) for rec in self.feedback for x in rec["b"]]
        labels = [x for rec in self.feedback for x in rec["labels"]]
        return fit_reward_model(self.config, a, b, labels, _seed(self.config.seed, r, 5))

    def evaluate(self, r: int) -> dict[str, float]:
        """Proxy, gold and KL to the initial policy on ``eval_episodes`` fresh episodes.

        The prompts are the same every round (one eval seed per run); the completions are fresh
        samples of the current policy, never the queried ones.
        """
        cfg = self.config
        base = _seed(cfg.seed, 0, 6) % (2**30) + (2**30)
        eps, st = self.sample((base + np.arange(cfg.eval_episodes)).tolist(), _seed(cfg.seed, r + 1, 7))
        gold = self.gold_of(eps)
        kl = st["logp"] - st["ref_logp"]
        out = {
            "gold_reward": float(gold.mean()),
            "gold_reward_std": float(gold.std()),
            "kl": float(kl.mean()),
            "sqrt_kl": math.sqrt(max(float(kl.mean()), 0.0)),
            "eval_length": float(st["length"].mean()),
        }
        if self.reward_model is not None:
            proxy = self.reward_model.score(eps).astype(np.float64)
            out["proxy_reward"] = float(proxy.mean())
            out["proxy_gold_accuracy"] = concordance(proxy, gold)
        return out

    def run_round(self) -> dict[str, Any] | None:
        """Run the next round; returns its log row (``None`` when the loop stopped instead)."""
        cfg = self.config
        r = self.rounds_done
        t_start = time.perf_counter()
        planned = cfg.planned_queries(r)
        n = int(min(planned, self._queries_left()))
        n = min(n, self._affordable(n))
        rec: dict[str, Any] | None = None
        if n > 0:
            try:
                rec = self._collect_feedback(r, n)
            except BudgetExhaustedError as exc:
                rec = None
                self.stop_reason = f"human refused: {exc}"
        if rec is None:
            if self.stop_reason is None:
                self.stop_reason = (
                    f"feedback budget exhausted after {self.queries_used} queries (budget {cfg.budget})"
                )
            if self.reward_model is None or cfg.on_budget_exhausted == "stop":
                if self.verbose:
                    print(f"round {r}: stop: {self.stop_reason}")
                return None
        times: dict[str, float] = {}
        fit_info: dict[str, Any] = {}
        if rec is not None:
            self.feedback.append(rec)
            t0 = time.perf_counter()
            self.reward_model, fit_info = self._fit(r)
            times["fit_seconds"] = time.perf_counter() - t0
            self.rm_dir = self._round_dir(r) / "reward_model"
            _atomic_dir(self.rm_dir, self.reward_model.save)
        self._use_proxy(self.rm_dir)
        t0 = time.perf_counter()
        ppo_metrics: dict[str, float] = {}

        def keep(_agent: Any, m: dict[str, float]) -> None:
            ppo_metrics.update(m)

        # reset_num_timesteps=True: each round is one learn() call of its own, so a resumed run
        # (which starts with a fresh learn call too) consumes the agent's generators identically.
        self.agent.learn(
            cfg.ppo_tokens_per_round, callback=keep, progress_bar=False, reset_num_timesteps=True
        )
        tokens = self.agent.num_timesteps
        self.ppo_tokens_total += int(tokens)
        times["ppo_seconds"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        ev = self.evaluate(r)
        times["eval_seconds"] = time.perf_counter() - t0
        row = self._row(r, rec, planned, fit_info, ev, ppo_metrics, int(tokens), times)
        row["round_seconds"] = time.perf_counter() - t_start
        self.history.append(row)
        self.rounds_done = r + 1
        self._commit()
        if self.verbose:
            print(
                f"round {r}: queries {row['queries']} (total {row['queries_total']}), proxy "
                f"{row['proxy_reward']:+.3f}, gold {row['gold_reward']:+.3f}, KL {row['kl']:.2f} "
                f"(sqrt {row['sqrt_kl']:.2f}), proxy/gold agreement {row['proxy_gold_accuracy']:.3f}, "
                f"{row['round_seconds']:.0f} s"
            )
        return row

    def _row(
        self,
        r: int,
        rec: dict[str, Any] | None,
        planned: int,
        fit_info: dict[str, Any],
        ev: dict[str, float],
        ppo: dict[str, float],
        tokens: int,
        times: dict[str, float],
    ) -> dict[str, Any]:
        cfg = self.config
        labels = rec["labels"] if rec else []
        ledger = getattr(self.human, "ledger", None)
        row: dict[str, Any] = {
            "round": r,
            "selection": rec["selection"] if rec else "none",
            "queries_planned": planned,
            "queries": len(labels),
            "queries_total": self.queries_used,
            "budget_left": float("inf") if cfg.budget is None else cfg.budget - self.queries_used,
            "skipped": sum(x is None for x in labels),
            "ties": sum(x == 0.5 for x in labels),
            "label_gold_agreement": _label_agreement(rec) if rec else float("nan"),
            "selected_disagreement": float(np.mean(rec["disagreement"]))
            if rec and rec["disagreement"]
            else float("nan"),
            "pool_disagreement": rec["pool_disagreement"]
            if rec and rec["pool_disagreement"] is not None
            else float("nan"),
            "cost": float(ledger.money) if ledger is not None else float("nan"),
            "rater_seconds": float(ledger.rater_seconds) if ledger is not None else float("nan"),
            **fit_info,
            "proxy_reward": ev.get("proxy_reward", float("nan")),
            "gold_reward": ev["gold_reward"],
            "gold_reward_std": ev["gold_reward_std"],
            "kl": ev["kl"],
            "sqrt_kl": ev["sqrt_kl"],
            "proxy_gold_accuracy": ev.get("proxy_gold_accuracy", float("nan")),
            "eval_length": ev["eval_length"],
            "ppo_tokens": tokens,
            "ppo_tokens_total": self.ppo_tokens_total,
            "ppo_proxy_reward": ppo.get("reward_task", float("nan")),
            "ppo_kl": ppo.get("kl_ref", float("nan")),
            "kl_coef": ppo.get("kl_coef", float("nan")),
        }
        if rec:
            row["sample_seconds"] = rec["seconds"]["sample"]
        row.update(times)
        return row

    def run(
        self,
        rounds: int | None = None,
        callback: Callable[[RLHFLoop, dict[str, Any]], bool | None] | None = None,
    ) -> list[dict[str, Any]]:
        """Run until ``rounds`` (default ``config.rounds``) rounds are done or the feedback runs out.

        ``callback(loop, row)`` runs after each committed round; returning ``False`` stops (as an
        interruption would: the next ``run`` on the same ``run_dir`` resumes). Returns the log:
        one dict per round with ``queries``, ``queries_total``, ``proxy_reward``, ``gold_reward``,
        ``kl``, ``sqrt_kl``, ``cost``, ``rater_seconds`` and timings (see :meth:`_row`).
        """
        total = self.config.rounds if rounds is None else int(rounds)
        if not self.initial:
            self.initial = self.evaluate(-1)
            self.initial["queries_total"] = 0
        while self.rounds_done < total:
            row = self.run_round()
            if row is None:
                break
            if callback is not None and callback(self, row) is False:
                break
        return self.history

    # -- persistence ------------------------------------------------------------------------------

    def _round_dir(self, r: int) -> Path:
        return self.run_dir / "rounds" / f"round_{r:03d}"

    def _human_state(self) -> dict[str, Any] | None:
        if callable(getattr(self.human, "state_dict", None)):
            return {"kind": "state_dict", "state": self.human.state_dict()}
        ledger = getattr(self.human, "ledger", None)
        if ledger is not None and dataclasses.is_dataclass(ledger):
            return {"kind": "ledger", "state": dataclasses.asdict(ledger)}
        return None

    def _commit(self) -> None:
        """Save this round: feedback, reward model (already written), agent; then state.json last."""
        if not self.persist:
            return
        r = self.rounds_done - 1
        rdir = self._round_dir(r)
        rdir.mkdir(parents=True, exist_ok=True)
        _atomic_write_json(rdir / "feedback.json", self.feedback)
        self.agent.save(str(rdir / "agent"))
        state = {
            "format": 1,
            "config": self.config.to_json_dict(),
            "rounds_done": self.rounds_done,
            "round_dir": str(rdir.relative_to(self.run_dir)),
            "rm_dir": str(self.rm_dir.relative_to(self.run_dir)) if self.rm_dir else None,
            "history": self.history,
            "initial": self.initial,
            "ppo_tokens_total": self.ppo_tokens_total,
            "human": self._human_state(),
            "stop_reason": self.stop_reason,
        }
        _atomic_write_json(self.run_dir / STATE_FILE, state)
        prev = self._round_dir(r - 1) / "agent"  # only the newest agent checkpoint is kept
        if r > 0 and prev.exists():
            shutil.rmtree(prev, ignore_errors=True)

    def _restore(self, state: dict[str, Any]) -> None:
        from agents.ppo import PPO
        from rlhf_envs.feedback.learned import RewardModel

        saved = dict(state["config"])
        mine = self.config.to_json_dict()
        diff = sorted(k for k in mine if k != "rounds" and _jsonish(mine[k]) != _jsonish(saved.get(k)))
        if diff:
            raise ConfigError(
                f"cannot resume {str(self.run_dir)!r}: settings differ from the saved run: "
                + ", ".join(f"{k} (saved {saved.get(k)!r}, given {mine[k]!r})" for k in diff)
            )
        rdir = self.run_dir / state["round_dir"]
        self.feedback = json.loads((rdir / "feedback.json").read_text())
        self.history = list(state["history"])
        self.initial = dict(state["initial"])
        self.rounds_done = int(state["rounds_done"])
        self.ppo_tokens_total = int(state["ppo_tokens_total"])
        self.stop_reason = state.get("stop_reason")
        self.rm_dir = self.run_dir / state["rm_dir"] if state.get("rm_dir") else None
        if self.rm_dir is not None:
            self.reward_model = RewardModel.load(self.rm_dir)
        hs = state.get("human")
        if hs is not None:
            if hs["kind"] == "state_dict" and callable(getattr(self.human, "load_state_dict", None)):
                self.human.load_state_dict(hs["state"])
            elif hs["kind"] == "ledger" and getattr(self.human, "ledger", None) is not None:
                for k, v in hs["state"].items():
                    setattr(self.human.ledger, k, v)
        env = (
            self._env(TRAIN_ENV_ID, self.config.n_envs, proxy=str(self.rm_dir))
            if self.rm_dir is not None
            else self._env(SAMPLE_ENV_ID, self.config.n_envs)
        )
        self.agent = PPO.load(str(rdir / "agent"), env=env)

    def close(self) -> None:
        """Close the envs and remove the temporary directory (if ``run_dir`` was not given)."""
        for env in self._envs.values():
            env.close()
        self._envs.clear()
        if self.agent is not None and self.agent.env is not None:
            self.agent.env.close()
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None


class _quiet_transformers:
    """Silence transformers' load report (a fresh score head is "missing" by design) for a block."""

    def __enter__(self) -> None:
        from transformers.utils import logging as hf_logging

        self._level = hf_logging.get_verbosity()
        hf_logging.set_verbosity_error()

    def __exit__(self, *exc: Any) -> None:
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity(self._level)


def _jsonish(x: Any) -> Any:
    return json.loads(json.dumps(x, default=_json_default))


def _episode_dict(e: Episode) -> dict[str, Any]:
    return {
        "prompt": e.prompt,
        "completion": e.completion,
        "prompt_ids": list(e.prompt_ids),
        "completion_ids": list(e.completion_ids),
        "terminated": e.terminated,
        "seed": e.seed,
    }


def _episode(d: dict[str, Any]) -> Episode:
    return Episode(
        d["prompt"],
        d["completion"],
        tuple(d["prompt_ids"]),
        tuple(d["completion_ids"]),
        bool(d["terminated"]),
        {},
        int(d["seed"]),
    )


def _label_agreement(rec: dict[str, Any]) -> float:
    """Share of the round's decisive answers that agree with the gold ordering (a noise check)."""
    hits = []
    for p, ga, gb in zip(rec["labels"], rec["gold_a"], rec["gold_b"], strict=True):
        if p is None or p == 0.5 or ga == gb:
            continue
        hits.append((p > 0.5) == (ga > gb))
    return float(np.mean(hits)) if hits else float("nan")


# ---------------------------------------------------------------------------------------------------
# Command line: ``rlhf-envs rlhf``
# ---------------------------------------------------------------------------------------------------


def add_rlhf_parser(sub: Any) -> None:
    """Add the ``rlhf`` sub-command to an ``argparse`` sub-parser collection."""
    d = RLHFConfig()
    p = sub.add_parser(
        "rlhf",
        help="the RLHF loop on the embedded model: simulated human -> reward model -> PPO, per round",
    )
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--rounds", type=int, default=d.rounds)
    p.add_argument(
        "--queries", type=int, default=d.queries_per_round, help="queries in round 0 (per round if constant)"
    )
    p.add_argument("--schedule", choices=SCHEDULES, default=d.schedule)
    p.add_argument("--decay", type=float, default=d.decay, help="per-round factor of the decaying schedule")
    p.add_argument("--budget", type=int, default=None, help="total queries allowed (default: no limit)")
    p.add_argument("--selection", choices=SELECTIONS, default=d.selection)
    p.add_argument("--rater", default=d.rater, help="simulated rater preset (Oracle, Stoc, Mistake, ...)")
    p.add_argument("--ppo-tokens", type=int, default=d.ppo_tokens_per_round, help="PPO tokens per round")
    p.add_argument("--members", type=int, default=d.n_members, help="reward-model ensemble size")
    p.add_argument("--human", choices=("simulated", "terminal"), default="simulated")
    p.add_argument("--out", default="runs/rlhf", help="run directory (rounds are saved; reruns resume)")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    p.set_defaults(func=_cmd_rlhf)


def _cmd_rlhf(args: argparse.Namespace) -> int:
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    cfg = RLHFConfig(
        rounds=args.rounds,
        queries_per_round=args.queries,
        schedule=args.schedule,
        decay=args.decay,
        budget=args.budget,
        selection=args.selection,
        rater=args.rater,
        ppo_tokens_per_round=args.ppo_tokens,
        n_members=args.members,
        seed=args.seed,
    )
    human = TerminalHuman(max_queries=args.budget, seed=args.seed) if args.human == "terminal" else None
    loop = RLHFLoop(cfg, human=human, run_dir=args.out, verbose=True)
    if loop.rounds_done:
        print(f"resuming {args.out} after round {loop.rounds_done - 1}")
    t0 = time.perf_counter()
    history = loop.run()
    init = loop.initial
    print(f"\ninitial policy: gold {init['gold_reward']:+.3f} on {cfg.eval_episodes} fresh episodes")
    for row in history:
        print(
            f"  round {row['round']}: queries {row['queries_total']:4d}  proxy {row['proxy_reward']:+.3f}  "
            f"gold {row['gold_reward']:+.3f}  KL {row['kl']:6.2f}  sqrt(KL) {row['sqrt_kl']:.2f}  "
            f"cost {row['cost']:.1f}"
        )
    if loop.stop_reason:
        print(f"stopped: {loop.stop_reason}")
    print(f"log: {os.path.join(args.out, STATE_FILE)}  ({time.perf_counter() - t0:.0f} s)")
    loop.close()
    return 0
