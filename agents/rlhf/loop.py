"""The loop itself: :class:`RLHFLoop` runs rounds of sample -> select -> ask -> fit -> PPO -> measure.

See :mod:`agents.rlhf` for what one round does. Vocabulary: the *reward model* is the learned model
(fitted each round, saved in the round's ``reward_model/`` directory); the *proxy reward* is its
score, which the training env pays; the *gold reward* is the task's hidden utility, which only the
(simulated) human's answers reveal.
"""

from __future__ import annotations

import math
import os
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from agents.rlhf.answer_journal import JOURNAL_FILE
from agents.rlhf.config import PPO_PRESET, RLHFConfig
from agents.rlhf.humans import Human, rating_values
from agents.rlhf.metrics import concordance, label_agreement
from agents.rlhf.persistence import (
    RunDirectory,
    check_same_settings,
    episode_from_json,
    episode_to_json,
    human_state,
    restore_human_state,
)
from agents.rlhf.queries import select_pairs
from agents.rlhf.reward_fitting import (
    fit_reward_model,
    fit_reward_model_on_ratings,
    token_mark_targets,
)
from agents.rlhf.streams import Stream, stream_seed
from rlhf_envs.errors import BudgetExhaustedError, ConfigError, FeedbackError
from rlhf_envs.feedback.base import Episode

if TYPE_CHECKING:
    from rlhf_envs.feedback.learned import RewardModel

#: the env whose prompts the loop samples, asks about and evaluates on (it pays the gold reward)
SAMPLE_ENV_ID = "RLHF/Sentiment-v0"
#: the env PPO trains on: the same prompts, paying the current reward model's score
TRAIN_ENV_ID = "RLHF/SimulatedHuman-v0"


class RLHFLoop:
    """Rounds of sample -> select -> ask -> fit -> PPO -> measure (see the module docstring).

    Args:
        config: an :class:`RLHFConfig` (or ``None`` for the defaults).
        human: anything with ``compare(a, b)`` (see :class:`~agents.rlhf.humans.Human`); default a
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
            if self.run_dir.exists() and not self.run_dir.is_dir():
                raise ConfigError(
                    f"run_dir {str(run_dir)!r} is a file; give a directory (new, or a run to resume)"
                )
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.files = RunDirectory(self.run_dir)
        state = self.files.read_state() if self.persist else None  # a corrupt run fails here, at once
        if state is not None:
            if not resume:
                raise ConfigError(
                    f"{str(self.run_dir)!r} already holds a run; pass resume=True or a new run_dir"
                )
            check_same_settings(
                state["config"], cfg.to_json_dict(), self.run_dir, RLHFConfig().to_json_dict()
            )
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
                seed=stream_seed(cfg.seed, 0, Stream.HUMAN),
                cost_per_comparison=cfg.cost_per_comparison,
                seconds_per_query=cfg.seconds_per_query,
                seconds_per_word=cfg.seconds_per_word,
            )
        if not callable(getattr(human, "compare", None)):
            raise ConfigError(f"human must have a compare(a, b) method, got {type(human).__name__}")
        if cfg.query_kind == "rating" and not callable(getattr(human, "rate", None)):
            raise ConfigError(
                f"query_kind='rating' asks the human for Likert ratings, but {type(human).__name__} "
                "has no rate(episodes) method (SimulatedHuman and WebHuman have one)"
            )
        attach = getattr(human, "attach_journal", None)
        if self.persist and callable(attach):  # a person's answers: durable as they are given
            attach(self.run_dir / JOURNAL_FILE)
        self.human = human
        self.history: list[dict[str, Any]] = []
        self.feedback: list[dict[str, Any]] = []
        self.initial: dict[str, float] = {}
        #: the learned reward model the training env pays (its score is the "proxy reward")
        self.reward_model: RewardModel | None = None
        self.reward_model_dir: Path | None = None
        self.agent: Any = None
        self.stop_reason: str | None = None
        self.rounds_done = 0
        self.ppo_tokens_total = 0
        if state is not None:
            self._restore(state)
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
            "preset": PPO_PRESET,
            "policy": "lm",
            "n_envs": cfg.n_envs,
            "learning_rate": cfg.learning_rate,
            "kl_coef": cfg.kl_coef,
            **cfg.ppo_kwargs,
        }

    def _build_agent(self) -> None:
        from agents.ppo import PPO

        # Built on the gold-paying sampling env only for its spaces: before every learn() the
        # training env (paying the current reward model) is swapped in, see _train_against.
        env = self._env(SAMPLE_ENV_ID, self.config.n_envs)
        self.agent = PPO(env, seed=self.config.seed, model=self.config.model, **self._ppo_kwargs())

    def _train_env(self, reward_model_dir: Path) -> Any:
        """A fresh ``RLHF/SimulatedHuman-v0`` vector env paying the reward model in ``reward_model_dir``."""
        return self._env(TRAIN_ENV_ID, self.config.n_envs, proxy=str(reward_model_dir))

    def _train_against(self, reward_model_dir: Path) -> None:
        """Point PPO at a training env that pays the reward model saved in ``reward_model_dir``."""
        env = self._train_env(reward_model_dir)
        old = self.agent.env
        self.agent.set_env(env)
        if old is not env and old not in self._envs.values():
            old.close()

    # -- sampling -----------------------------------------------------------------------------------

    def sample(
        self, seeds: Sequence[int], generator_seed: int
    ) -> tuple[list[Episode], dict[str, np.ndarray]]:
        """One completion per entry of ``seeds`` (the prompt's reset seed) from the current policy.

        Returns the episodes and per-episode arrays: ``logp`` and ``ref_logp`` sums (the KL to the
        initial policy's numerator), and ``length``.
        """
        env = self._env(SAMPLE_ENV_ID, len(seeds))
        sampled = self.agent.sample_episodes(env, [int(s) for s in seeds], generator_seed)
        episodes = sampled.to_feedback_episodes(self.tokenizer)
        stats = {
            "logp": sampled.log_prob_sums(),
            "ref_logp": sampled.ref_log_prob_sums(),
            "length": sampled.completion_lengths().astype(np.float64),
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

    def ask_ratings(self, episodes: Sequence[Episode]) -> list[float | None]:
        """Ask the human for a 1-5 rating of each episode (``None``: skipped); refuses
        (``BudgetExhaustedError``, nothing asked) if they do not fit in what is left of ``config.budget``."""
        left = self._queries_left()
        if len(episodes) > left:
            raise BudgetExhaustedError(
                f"RLHFLoop: {len(episodes)} queries requested but only {left} of the budget "
                f"{self.config.budget} are left; nothing was asked"
            )
        values = rating_values(self.human.rate(list(episodes)))
        if len(values) != len(episodes):
            raise ConfigError(f"the human rated {len(values)} of {len(episodes)} episodes")
        return values

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
        if cfg.query_kind == "rating":
            return self._collect_ratings(r, n)
        t0 = time.perf_counter()
        pool = cfg.pool_factor * n
        base = stream_seed(cfg.seed, r, Stream.POOL_PROMPTS) % (2**30)
        seeds = np.repeat(base + np.arange(pool), 2)  # each prompt twice: a pair per prompt
        eps, _ = self.sample(seeds.tolist(), stream_seed(cfg.seed, r, Stream.POOL_SAMPLING))
        a, b = eps[0::2], eps[1::2]
        t1 = time.perf_counter()
        rule = cfg.selection if self.reward_model is not None else "random"
        dis = self.reward_model.disagreement(a, b) if self.reward_model is not None else None
        rng = np.random.default_rng(stream_seed(cfg.seed, r, Stream.QUERY_SELECTION))
        idx = select_pairs(n, pool, rule, rng, dis)
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
            "a": [episode_to_json(e) for e in sa],
            "b": [episode_to_json(e) for e in sb],
            "labels": labels,
            "disagreement": None if dis is None else [float(dis[i]) for i in idx],
            "pool_disagreement": None if dis is None else float(np.mean(dis)),
            "pool_disagreement_values": None if dis is None else [float(x) for x in dis],
            "gold_a": gold_a.tolist(),
            "gold_b": gold_b.tolist(),
            "seconds": {"sample": t1 - t0, "select": t2 - t1, "ask": t3 - t2},
        }

    def _collect_ratings(self, r: int, n: int) -> dict[str, Any]:
        """A round of Likert queries: ``n`` of ``pool_factor * n`` fresh episodes (one per prompt),
        chosen at random or where the ensemble's members disagree most about the score."""
        cfg = self.config
        t0 = time.perf_counter()
        pool = cfg.pool_factor * n
        base = stream_seed(cfg.seed, r, Stream.POOL_PROMPTS) % (2**30)
        eps, _ = self.sample(
            (base + np.arange(pool)).tolist(), stream_seed(cfg.seed, r, Stream.POOL_SAMPLING)
        )
        t1 = time.perf_counter()
        rule = cfg.selection if self.reward_model is not None else "random"
        spread = self.reward_model.uncertainty(eps) if self.reward_model is not None else None
        rng = np.random.default_rng(stream_seed(cfg.seed, r, Stream.QUERY_SELECTION))
        idx = select_pairs(n, pool, rule, rng, spread)
        chosen = [eps[i] for i in idx]
        t2 = time.perf_counter()
        ratings = self.ask_ratings(chosen)
        t3 = time.perf_counter()
        return {
            "round": r,
            "kind": "rating",
            "selection": rule,
            "pool": pool,
            "a": [episode_to_json(e) for e in chosen],
            "b": [],
            "labels": ratings,
            "disagreement": None if spread is None else [float(spread[i]) for i in idx],
            "pool_disagreement": None if spread is None else float(np.mean(spread)),
            "pool_disagreement_values": None if spread is None else [float(x) for x in spread],
            "gold_a": self.gold_of(chosen).tolist(),
            "gold_b": [],
            "seconds": {"sample": t1 - t0, "select": t2 - t1, "ask": t3 - t2},
        }

    def _usable_labels(self) -> int:
        """Answers so far that a fit can use (not skipped)."""
        return sum(x is not None for rec in self.feedback for x in rec["labels"])

    def gold_of(self, episodes: Sequence[Episode]) -> np.ndarray:
        """The gold utility of each episode (the task's hidden scripted feedback)."""
        from rlhf_envs.feedback.base import score_episodes

        return score_episodes(self.gold, list(episodes)).astype(np.float64)

    def _fit(self, r: int) -> tuple[RewardModel, dict[str, Any]]:
        """Refit the reward model from scratch on every answer so far: Bradley-Terry on pairwise
        answers, regression on ratings (``config.query_kind``; a run holds one kind), then the
        web app's per-token marks, if any, as dense targets."""
        seed = stream_seed(self.config.seed, r, Stream.REWARD_MODEL_FIT)
        labels = [x for rec in self.feedback for x in rec["labels"]]
        a = [episode_from_json(x) for rec in self.feedback for x in rec["a"]]
        marks = token_mark_targets(self.human)
        if self.config.query_kind == "rating":
            return fit_reward_model_on_ratings(self.config, a, labels, seed, marks)
        b = [episode_from_json(x) for rec in self.feedback for x in rec["b"]]
        return fit_reward_model(self.config, a, b, labels, seed, marks)

    def evaluate(self, r: int) -> dict[str, float]:
        """Proxy, gold and KL to the initial policy on ``eval_episodes`` fresh episodes.

        The prompts are the same every round (one eval seed per run); the completions are fresh
        samples of the current policy, never the queried ones.
        """
        cfg = self.config
        base = stream_seed(cfg.seed, 0, Stream.EVAL_PROMPTS) % (2**30) + (2**30)
        generator_seed = stream_seed(cfg.seed, r + 1, Stream.EVAL_SAMPLING)
        eps, st = self.sample((base + np.arange(cfg.eval_episodes)).tolist(), generator_seed)
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
            proxy_reward = self.reward_model.score(eps).astype(np.float64)
            out["proxy_reward"] = float(proxy_reward.mean())
            out["proxy_gold_accuracy"] = concordance(proxy_reward, gold)
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
            if all(x is None for x in rec["labels"]) and not self._usable_labels():
                raise FeedbackError(
                    f"round {r}: none of the {len(rec['labels'])} queries got a usable answer (all "
                    "skipped, or the raters' time-out ran out), and no earlier round has one: there is "
                    "nothing to fit a reward model on; nothing was saved, so a rerun asks the same questions"
                )
            self.feedback.append(rec)
            t0 = time.perf_counter()
            self.reward_model, fit_info = self._fit(r)
            times["fit_seconds"] = time.perf_counter() - t0
            self.reward_model_dir = self._save_reward_model(r)
        self._train_against(self.reward_model_dir)
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
                + (f"reward model fitted on {row['rm_labels']} labels, " if "rm_labels" in row else "")
                + f"{row['round_seconds']:.0f} s"
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
            "ties": sum(x == 0.5 for x in labels) if cfg.query_kind == "pairwise" else 0,
            "label_gold_agreement": label_agreement(rec) if rec else float("nan"),
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

    def _save_reward_model(self, r: int) -> Path:
        """Write round ``r``'s reward model; data-parallel with a run directory: rank 0 writes it
        and the others wait for it (the run directory must be shared by every node)."""
        from agents.distributed import World

        world = World.current()
        if not (self.persist and world.active):  # one process, or a private temporary dir per rank
            return self.files.save_reward_model(r, self.reward_model)
        if world.is_main:
            self.files.save_reward_model(r, self.reward_model)
        world.barrier("reward-model save")
        return self.files.reward_model_dir(r)

    def _commit(self) -> None:
        """Save the round just finished (see :mod:`agents.rlhf.persistence`); data-parallel: rank 0
        writes, every rank waits for the commit."""
        if not self.persist:
            return
        from agents.distributed import World

        world = World.current()
        if not world.is_main:
            world.barrier("round commit")
            return
        state = {
            "config": self.config.to_json_dict(),
            "rounds_done": self.rounds_done,
            "reward_model_dir": self.files.relative(self.reward_model_dir),
            "history": self.history,
            "initial": self.initial,
            "ppo_tokens_total": self.ppo_tokens_total,
            "human": human_state(self.human),
            "stop_reason": self.stop_reason,
        }
        self.files.commit(self.rounds_done - 1, self.feedback, self.agent, state)
        world.barrier("round commit")

    def _restore(self, state: dict[str, Any]) -> None:
        from agents.ppo import PPO
        from rlhf_envs.feedback.learned import RewardModel

        self.feedback = self.files.read_feedback(state)
        self.history = list(state["history"])
        self.initial = dict(state["initial"])
        self.rounds_done = int(state["rounds_done"])
        self.ppo_tokens_total = int(state["ppo_tokens_total"])
        self.stop_reason = state.get("stop_reason")
        self.reward_model_dir = self.files.resolve(state.get("reward_model_dir"))
        if self.reward_model_dir is not None:
            self.reward_model = RewardModel.load(self.reward_model_dir)
        restore_human_state(self.human, state.get("human"))
        env = (
            self._train_env(self.reward_model_dir)
            if self.reward_model_dir is not None
            else self._env(SAMPLE_ENV_ID, self.config.n_envs)
        )
        self.agent = PPO.load(str(self.files.committed_agent_dir(state)), env=env)

    def close(self) -> None:
        """Close the envs and remove the temporary directory (if ``run_dir`` was not given)."""
        for env in self._envs.values():
            env.close()
        self._envs.clear()
        if self.agent is not None and self.agent.env is not None:
            self.agent.env.close()
        journal = getattr(self.human, "journal", None)
        if callable(getattr(journal, "close", None)):
            journal.close()
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None
