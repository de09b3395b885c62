"""Reward over-optimisation, reproduced: gold vs proxy vs sqrt(KL) for PPO and best-of-n.

The setting of Gao, Schulman and Hilton (2022), scaled to a laptop. ``RLHF/SimulatedHuman-v0``'s
hidden gold utility (VADER sentiment of the continuation) is seen only through a noisy, biased
simulated rater (mistakes 0.25: a quarter of the answers flipped; plus a length bias: with some
probability the longer text wins whatever its sentiment). A reward model (the proxy) is fitted to a
few hundred of that rater's comparisons of the embedded model's own completions; the policy is then
optimised against the proxy, and the gold utility is measured on fresh episodes:

* **PPO** (``agents.PPO``, ``policy="lm"``) at several KL coefficients and, separately, against a
  3-member bootstrap ensemble whose members' scores combine with ``min`` (a pessimistic reward);
  gold, proxy and KL(pi || pi_init) (k1, the sum over completion tokens of
  ``log pi - log pi_init`` for sampled tokens: an unbiased Monte-Carlo estimate in nats per
  episode) are measured on ``eval_episodes`` fresh episodes at checkpoints;
* **best-of-n** (``agents.best_of_n``) for n = 1..``max_n``, from one pool of samples per prompt,
  with the analytic KL ``log n - (n-1)/n`` and a measured one (see that module).

Each method's gold is fitted with Gao et al.'s functional forms in ``d = sqrt(KL)``: RL
``gold(d) - gold(0) = d (alpha - beta log d)``, best-of-n ``d (alpha - beta d)`` (scipy's
``curve_fit``). Results: ``benchmarks/results/overoptimization.csv`` (one row per checkpoint or n),
``overoptimization_fits.json`` (fits, gold peaks per setting, run settings) and
``overoptimization.png``.

    python -m benchmarks.overoptimization            # the full benchmark (~30 min on 2 busy cores)
    python -m benchmarks.overoptimization --quick    # a shortened seeded run (the slow test)
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch

from benchmarks import common
from benchmarks.common import eval_seed, init_torch, pyplot, save_figure, sem, write_json

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")
ENV_ID = "RLHF/SimulatedHuman-v0"
CSV_FIELDS = (
    "method", "setting", "kl_coef", "aggregate", "step", "n", "kl", "kl_analytic", "sqrt_kl",
    "gold", "gold_se", "proxy", "vader", "base_logp_per_token", "length_words", "seconds",
)  # fmt: skip


@dataclass
class ProxySpec:
    """How the proxy is built: the simulated rater and the comparisons it answers."""

    epsilon: float = 0.25
    length_bias: float = 0.5
    n_comparisons: int = 100
    fit_epochs: int = 3
    proxy_seed: int = 0
    gold: str = "fluent_vader"

    def rater(self) -> Any:
        from rlhf_envs.feedback.simulated import RaterConfig

        return RaterConfig(
            mistake_rate=self.epsilon,
            length_bias=self.length_bias,
            name=f"Mistake{self.epsilon}+length{self.length_bias}",
        )

    def env_kwargs(self, n_members: int = 1, aggregate: str | None = None) -> dict[str, Any]:
        kw: dict[str, Any] = {
            "rater": self.rater(),
            "n_comparisons": self.n_comparisons,
            "fit_epochs": self.fit_epochs,
            "proxy_seed": self.proxy_seed,
            "gold": self.gold,
            "ref_logprobs": False,  # the agent computes KL itself; the env need not run a reference
        }
        if n_members != 1:
            kw["n_members"] = n_members
        if aggregate is not None:
            kw["aggregate"] = aggregate
        return kw


@dataclass
class PPOSetting:
    """One PPO run: its name, KL coefficient and proxy aggregation."""

    name: str
    kl_coef: float
    n_members: int = 1
    aggregate: str | None = None


@dataclass
class Config:
    """Everything a run depends on (saved next to the results)."""

    seed: int = 0
    proxy: ProxySpec = field(default_factory=ProxySpec)
    settings: tuple[PPOSetting, ...] = (
        PPOSetting("PPO kl=0.01", 0.01),
        PPOSetting("PPO kl=0.1", 0.1),
        PPOSetting("PPO kl=0.01 ens3-min", 0.01, 3, "min"),
    )
    timesteps: int = 60_000
    #: PPO's settings (agents/presets.py); each setting overrides its kl_coef
    preset: str = "lm-rlhf-loop"
    eval_every: int = 3  # PPO iterations between evaluations
    eval_episodes: int = 128
    bon_prompts: int = 64
    bon_pool: int = 64
    bon_n: tuple[int, ...] = (1, 2, 4, 8, 16, 32, 64)
    threads: int = 1


def quick_config() -> Config:
    """The shortened seeded run of the slow test: the low-KL PPO setting only, fewer tokens."""
    return Config(
        settings=(PPOSetting("PPO kl=0.01", 0.01),),
        timesteps=30_000,
        eval_every=3,
        eval_episodes=64,
        bon_prompts=16,
        bon_pool=32,
        bon_n=(1, 2, 4, 8, 16, 32),
    )


def _print(*args: Any) -> None:
    print(*args, flush=True)


# ---------------------------------------------------------------------------------------------------
# Measuring a policy on fresh episodes
# ---------------------------------------------------------------------------------------------------


@torch.no_grad()
def evaluate_policy(agent: Any, env: Any, n_episodes: int, seed: int) -> dict[str, float]:
    """Gold, proxy, length and KL(pi || pi_init) of ``agent``'s policy on fresh episodes of ``env``.

    KL is k1 summed over each completion (sampled-token ``log pi - log pi_ref``, an unbiased
    estimate of the sequence KL), averaged over episodes. Uses its own generator (seeded by
    ``seed``), so training is unaffected.
    """
    from rlhf_envs.feedback.base import Episode
    from rlhf_envs.feedback.scripted import Sentiment

    gen = torch.Generator().manual_seed(seed)
    policy = agent.policy
    policy.eval()
    kls, gold, proxy, base_lp, texts = [], [], [], [], []
    tok = env.task.tokenizer
    s = seed
    while len(gold) < n_episodes:
        obs, actions, logp, _, mask, episodes = agent.collector.rollout(env, s, gen)
        s += env.num_envs
        _, ref_logp = policy.values_and_ref_logprobs(obs, actions)
        m = mask.float()
        kls.extend(((logp - ref_logp) * m).sum(1).tolist())
        base_lp.extend(((ref_logp * m).sum(1) / m.sum(1).clamp(min=1)).tolist())
        gold.extend(e["reward_gold"] for e in episodes)
        proxy.extend(e["reward_task"] for e in episodes)
        for row, mk in zip(actions, mask, strict=True):
            texts.append(tok.decode(row[mk].tolist()))
    g = np.array(gold[:n_episodes])
    texts = texts[:n_episodes]
    vader = Sentiment().score([Episode("", t, (), (), True) for t in texts])
    return {
        "kl": float(np.mean(kls[:n_episodes])),
        "gold": float(g.mean()),
        "gold_se": sem(g),
        "proxy": float(np.mean(proxy[:n_episodes])),
        "vader": float(np.mean(vader)),
        "base_logp_per_token": float(np.mean(base_lp[:n_episodes])),
        "length_words": float(np.mean([len(t.split()) for t in texts])),
        "samples": texts[:3],
    }


def run_ppo(
    cfg: Config, setting: PPOSetting, log: Any = None, configs: dict[str, Any] | None = None
) -> list[dict[str, Any]]:
    """Train PPO (``cfg.preset`` with the setting's KL coefficient) against the setting's proxy;
    evaluate at step 0 and every ``eval_every`` iterations. ``configs[setting.name]`` receives the
    agent's full resolved config."""
    log = log or _print
    from agents.envs import make_vector_env
    from agents.ppo import PPO

    env_kwargs = cfg.proxy.env_kwargs(setting.n_members, setting.aggregate)
    agent = PPO(
        ENV_ID, seed=cfg.seed, preset=cfg.preset, model="default", kl_coef=setting.kl_coef,
        env_kwargs=env_kwargs, tensorboard=False,
    )  # fmt: skip
    if configs is not None:
        configs[setting.name] = agent.config.to_json_dict()
    eval_env = make_vector_env(ENV_ID, min(agent.config.n_envs, cfg.eval_episodes), env_kwargs)
    rows: list[dict[str, Any]] = []
    samples: dict[int, list[str]] = {}
    t0 = time.perf_counter()

    def record() -> None:
        m = evaluate_policy(agent, eval_env, cfg.eval_episodes, seed=eval_seed(cfg.seed))
        rows.append(
            {
                "method": "ppo", "setting": setting.name, "kl_coef": setting.kl_coef,
                "aggregate": setting.aggregate or "single", "step": agent.num_timesteps, "n": "",
                "kl": m["kl"], "kl_analytic": "", "sqrt_kl": math.sqrt(max(m["kl"], 0.0)),
                "gold": m["gold"], "gold_se": m["gold_se"], "proxy": m["proxy"], "vader": m["vader"],
                "base_logp_per_token": m["base_logp_per_token"], "length_words": m["length_words"],
                "seconds": time.perf_counter() - t0,
            }
        )  # fmt: skip
        samples[agent.num_timesteps] = m["samples"]
        log(
            f"  {setting.name:24s} tokens {agent.num_timesteps:6d}  KL {m['kl']:6.2f}  gold {m['gold']:+.3f}"
            f"  proxy {m['proxy']:+.3f}  vader {m['vader']:+.3f}  base logp/token {m['base_logp_per_token']:.2f}"
            f"  words {m['length_words']:.1f}  ({time.perf_counter() - t0:.0f} s)  e.g. {m['samples'][0]!r}"
        )

    def callback(a: Any, metrics: dict[str, float]) -> None:
        if a.iteration % cfg.eval_every == 0:
            record()

    record()
    agent.learn(cfg.timesteps, callback=callback, progress_bar=False)
    if agent.iteration % cfg.eval_every:
        record()
    eval_env.close()
    agent.close()
    return rows


def run_best_of_n(cfg: Config, log: Any = None) -> list[dict[str, Any]]:
    """Best-of-n with the single proxy (and with the ensemble-min proxy if a setting uses it)."""
    log = log or _print
    import gymnasium as gym

    from agents.best_of_n import BestOfN, pool_curve
    from rlhf_envs.feedback.base import score_episodes

    t0 = time.perf_counter()
    proxies = {"single": cfg.proxy.env_kwargs()}
    for s in cfg.settings:
        if s.aggregate is not None:
            proxies[s.aggregate] = cfg.proxy.env_kwargs(s.n_members, s.aggregate)
    env = gym.make(ENV_ID, **proxies["single"])
    task = env.unwrapped.task
    rng = np.random.default_rng([cfg.seed, 77])
    prompts = [task.sample_prompt(rng) for _ in range(cfg.bon_prompts)]
    samples = BestOfN.from_task(task, seed=cfg.seed).sample(prompts, cfg.bon_pool)
    shape = (cfg.bon_prompts, cfg.bon_pool)
    gold = score_episodes(task.gold, samples.episodes).astype(np.float64).reshape(shape)
    words = np.array([len(e.completion.split()) for e in samples.episodes], dtype=np.float64).reshape(shape)
    logp = samples.logp.reshape(shape)
    rows: list[dict[str, Any]] = []
    for agg, kw in proxies.items():
        proxy_model = task.proxy if agg == "single" else gym.make(ENV_ID, **kw).unwrapped.task.proxy
        proxy = score_episodes(proxy_model, samples.episodes).astype(np.float64).reshape(shape)
        name = "best-of-n" if agg == "single" else f"best-of-n ens{kw['n_members']}-{agg}"
        for p in pool_curve(proxy, gold, logp, cfg.bon_n, words):
            rows.append(
                {
                    "method": "bon", "setting": name, "kl_coef": "", "aggregate": agg, "step": "",
                    "n": p.n, "kl": p.kl_measured, "kl_analytic": p.kl_analytic,
                    "sqrt_kl": math.sqrt(max(p.kl_analytic, 0.0)), "gold": p.gold, "gold_se": p.gold_se,
                    "proxy": p.proxy, "length_words": p.length, "seconds": time.perf_counter() - t0,
                }
            )  # fmt: skip
            log(
                f"  {name:24s} n {p.n:3d}  KL analytic {p.kl_analytic:5.2f} measured {p.kl_measured:5.2f}"
                f"  gold {p.gold:+.3f}  proxy {p.proxy:+.3f}  words {p.length:.1f}"
            )
    env.close()
    return rows


# ---------------------------------------------------------------------------------------------------
# Gao et al.'s functional forms and the gold peak
# ---------------------------------------------------------------------------------------------------


def rl_form(d: np.ndarray, alpha: float, beta: float) -> np.ndarray:
    """RL: ``d (alpha - beta log d)`` (0 at d = 0)."""
    d = np.asarray(d, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(d > 0, d * (alpha - beta * np.log(np.where(d > 0, d, 1.0))), 0.0)


def bon_form(d: np.ndarray, alpha: float, beta: float) -> np.ndarray:
    """Best-of-n: ``d (alpha - beta d)``."""
    d = np.asarray(d, dtype=np.float64)
    return d * (alpha - beta * d)


def fit_form(kind: str, sqrt_kl: np.ndarray, gold: np.ndarray) -> dict[str, float]:
    """Fit ``gold - gold[0]`` against ``d`` with the RL or best-of-n form; returns alpha, beta, R^2
    and the fitted peak (``d* = exp(alpha/beta - 1)`` for RL, ``alpha / (2 beta)`` for best-of-n;
    ``None`` when ``beta <= 0``, i.e. the fitted gold never turns down)."""
    from scipy.optimize import curve_fit

    if kind not in ("rl", "bon"):
        raise ValueError(f"kind must be 'rl' or 'bon', got {kind!r}")
    d = np.asarray(sqrt_kl, dtype=np.float64)
    y = np.asarray(gold, dtype=np.float64) - float(gold[0])
    f = rl_form if kind == "rl" else bon_form
    (alpha, beta), _ = curve_fit(f, d, y, p0=(0.1, 0.01), maxfev=20_000)
    resid = y - f(d, alpha, beta)
    r2 = 1.0 - float(np.sum(resid**2) / max(np.sum((y - y.mean()) ** 2), 1e-12))
    d_peak = None  # beta <= 0: the fitted curve never turns down
    if beta > 0:
        d_peak = float(math.exp(alpha / beta - 1.0) if kind == "rl" else alpha / (2 * beta))
    return {
        "alpha": float(alpha),
        "beta": float(beta),
        "r2": r2,
        "gold0": float(gold[0]),
        "d_peak_fit": d_peak,
    }


def gold_peak(rows: list[dict[str, Any]]) -> dict[str, float]:
    """Where the measured gold peaks: KL, sqrt(KL), gold, the proxy there, and the gold at the end."""
    golds = [float(r["gold"]) for r in rows]
    i = int(np.argmax(golds))
    return {
        "peak_index": i,
        "n_points": len(rows),
        "peak_kl": float(rows[i]["kl"]),
        "peak_sqrt_kl": float(rows[i]["sqrt_kl"]),
        "peak_gold": golds[i],
        "peak_proxy": float(rows[i]["proxy"]),
        "start_gold": golds[0],
        "final_gold": golds[-1],
        "final_kl": float(rows[-1]["kl"]),
        "final_proxy": float(rows[-1]["proxy"]),
        "drop_from_peak": golds[i] - golds[-1],
    }


def summarize(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Per setting: the fit of Gao et al.'s form and the measured gold peak."""
    out: dict[str, Any] = {}
    for name in dict.fromkeys(r["setting"] for r in rows):
        rs = [r for r in rows if r["setting"] == name]
        kind = "rl" if rs[0]["method"] == "ppo" else "bon"
        d = np.array([float(r["sqrt_kl"]) for r in rs])
        g = np.array([float(r["gold"]) for r in rs])
        try:
            fit = fit_form(kind, d, g)
        except RuntimeError as exc:  # curve_fit did not converge: say so instead of guessing
            fit = {"error": str(exc)}
        out[name] = {"form": kind, "fit": fit, "peak": gold_peak(rs)}
    return out


# ---------------------------------------------------------------------------------------------------
# Output
# ---------------------------------------------------------------------------------------------------


def write_csv(rows: list[dict[str, Any]], path: str) -> None:
    """The benchmark's CSV: one row per checkpoint or n, floats to 6 significant digits."""
    formatted = [{k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in r.items()} for r in rows]
    common.write_csv(path, formatted, CSV_FIELDS)


def read_csv(path: str) -> list[dict[str, Any]]:
    """Rows of a CSV written by :func:`write_csv`, numbers as floats (empty cells stay "")."""
    out = []
    with open(path, newline="") as f:
        for r in csv.DictReader(f):
            row: dict[str, Any] = {}
            for k, v in r.items():
                try:
                    row[k] = float(v) if k not in ("method", "setting", "aggregate") and v != "" else v
                except ValueError:
                    row[k] = v
            out.append(row)
    return out


GOLD_LABELS = {"vader": "VADER", "fluent_vader": "VADER x fluency"}


def plot(
    rows: list[dict[str, Any]], summary: dict[str, Any], path: str, title: str, gold: str = "fluent_vader"
) -> None:
    """Gold (with the fitted forms and the peaks) and proxy against sqrt(KL), one line per setting."""
    plt = pyplot()
    names = list(dict.fromkeys(r["setting"] for r in rows))
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.4))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for c, name in zip(colors * 3, names, strict=False):
        rs = [r for r in rows if r["setting"] == name]
        d = np.array([float(r["sqrt_kl"]) for r in rs])
        g = np.array([float(r["gold"]) for r in rs])
        p = np.array([float(r["proxy"]) for r in rs])
        style = "o-" if rs[0]["method"] == "ppo" else "s--"
        axes[0].plot(d, g, style, color=c, ms=4, label=name)
        fit = summary[name]["fit"]
        if "alpha" in fit:
            dd = np.linspace(0, d.max(), 100)
            f = rl_form if summary[name]["form"] == "rl" else bon_form
            axes[0].plot(dd, fit["gold0"] + f(dd, fit["alpha"], fit["beta"]), ":", color=c, lw=1)
        pk = summary[name]["peak"]
        axes[0].plot([pk["peak_sqrt_kl"]], [pk["peak_gold"]], "*", color=c, ms=12)
        axes[1].plot(d, p, style, color=c, ms=4, label=name)
    axes[0].set(xlabel="sqrt(KL(pi || pi_init))  [sqrt nats]", ylabel=f"gold reward ({GOLD_LABELS.get(gold, gold)})",
                title="gold (dotted: Gao et al. fit; star: peak)")  # fmt: skip
    axes[1].set(
        xlabel="sqrt(KL(pi || pi_init))  [sqrt nats]", ylabel="proxy reward (reward model)", title="proxy"
    )
    axes[0].legend(fontsize=7)
    fig.suptitle(title, fontsize=9)
    save_figure(fig, path)


def _title(epsilon: float, length_bias: float, n_comparisons: int, seed: int) -> str:
    return (
        f"Over-optimisation on {ENV_ID}: proxy from a rater with mistakes {epsilon} and length bias "
        f"{length_bias} ({n_comparisons} comparisons), seed {seed}"
    )


def replot(out_prefix: str) -> None:
    """Redraw ``<out_prefix>.png`` from the saved CSV and ``_fits.json`` (no training)."""
    rows = read_csv(out_prefix + ".csv")
    with open(out_prefix + "_fits.json") as f:
        meta = json.load(f)
    p = meta["config"]["proxy"]
    title = _title(p["epsilon"], p["length_bias"], p["n_comparisons"], meta["config"]["seed"])
    plot(rows, meta["summary"], out_prefix + ".png", title, p.get("gold", "vader"))


def run(cfg: Config, out_prefix: str, log: Any = None) -> dict[str, Any]:
    """Run best-of-n and every PPO setting; write ``<out_prefix>.csv``, ``_fits.json``, ``.png``."""
    log = log or _print
    init_torch(cfg.threads)
    t0 = time.perf_counter()
    log(f"proxy: rater mistakes {cfg.proxy.epsilon} + length bias {cfg.proxy.length_bias}, "
        f"{cfg.proxy.n_comparisons} comparisons; seed {cfg.seed}")  # fmt: skip
    rows = run_best_of_n(cfg, log)
    configs: dict[str, Any] = {}
    for s in cfg.settings:
        rows += run_ppo(cfg, s, log, configs)
    summary = summarize(rows)
    for name, s in summary.items():
        pk = s["peak"]
        log(
            f"{name:24s} gold peak {pk['peak_gold']:+.3f} at KL {pk['peak_kl']:.2f} (sqrt {pk['peak_sqrt_kl']:.2f}); "
            f"start {pk['start_gold']:+.3f}, end {pk['final_gold']:+.3f} at KL {pk['final_kl']:.2f}; fit {s['fit']}"
        )
    os.makedirs(os.path.dirname(out_prefix) or ".", exist_ok=True)
    write_csv(rows, out_prefix + ".csv")
    meta = {
        "config": asdict(cfg),
        "preset": cfg.preset,
        "resolved_config": configs,
        "summary": summary,
        "seconds": time.perf_counter() - t0,
    }
    write_json(out_prefix + "_fits.json", meta)
    plot(rows, summary, out_prefix + ".png", _title(cfg.proxy.epsilon, cfg.proxy.length_bias,
         cfg.proxy.n_comparisons, cfg.seed), cfg.proxy.gold)  # fmt: skip
    log(f"wrote {out_prefix}.csv, _fits.json, .png ({time.perf_counter() - t0:.0f} s)")
    return {"rows": rows, "summary": summary}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="the shortened seeded run (one PPO setting)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--out", default=None, help="output prefix (default benchmarks/results/overoptimization)"
    )
    parser.add_argument("--replot", action="store_true", help="redraw the PNG from the saved CSV and JSON")
    args = parser.parse_args(argv)
    cfg = quick_config() if args.quick else Config()
    cfg.seed = args.seed
    default = "overoptimization_quick" if args.quick else "overoptimization"
    out = args.out or os.path.join(RESULTS, default)
    if args.replot:
        replot(out)
        return
    run(cfg, out)


if __name__ == "__main__":
    main()
