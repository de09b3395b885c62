"""Check the answers to the exercises in ``docs/exercises.md``.

    python -m docs.exercises.check reinforce [--solution | --module dotted.module.name]
    python -m docs.exercises.check kl --csv runs/kl_sweep.csv --kl {increases,decreases} --reward {increases,decreases}
    python -m docs.exercises.check overopt --csv runs/overopt.csv --gold-peak TOKENS --larger-gain {proxy,gold}

Exit status 0 when every check passes, 1 when one fails (a wrong answer, an unfinished exercise,
an unreadable results file); each check prints ``PASS`` or ``FAIL`` and what it expected.

Exercises (b) and (c) have no fixed answer key: the answer is checked against the numbers *your*
run wrote, so the checker reads the CSV that ``kl_sweep.py`` / ``overoptimization.py`` produced.
"""

from __future__ import annotations

import argparse
import csv
import importlib
import math
import sys
import time
from collections.abc import Callable

import torch

SKELETON = "docs.exercises.reinforce_exercise"
SOLUTION = "docs.exercises.solutions.reinforce"


class CheckFailed(Exception):
    """One check failed; the message says what was expected."""


def _report(name: str, fn: Callable[[], str]) -> bool:
    try:
        detail = fn()
    except CheckFailed as exc:
        print(f"FAIL  {name}: {exc}")
        return False
    except NotImplementedError as exc:
        print(f"FAIL  {name}: not implemented yet ({exc})")
        return False
    except Exception as exc:  # the student's code raised: report it as a failed check
        print(f"FAIL  {name}: {type(exc).__name__}: {exc}")
        return False
    print(f"PASS  {name}" + (f": {detail}" if detail else ""))
    return True


# -- (a) REINFORCE -------------------------------------------------------------------------------


def _answer_key(log_probs: torch.Tensor, rewards: torch.Tensor, gamma: float) -> tuple[float, torch.Tensor]:
    """The expected loss value and its gradient with respect to ``log_probs`` (closed form)."""
    r = rewards.double()
    t_len = len(r)
    g = torch.tensor(
        [sum(gamma ** (k - t) * float(r[k]) for k in range(t, t_len)) for t in range(t_len)],
        dtype=torch.float64,
    )
    adv = (g - g.mean()) / (g.std(unbiased=False) + 1e-8)
    loss = -float((adv * log_probs.detach().double()).mean())
    return loss, -adv / t_len


def _check_case(
    fn: Callable, log_probs: list[float] | torch.Tensor, rewards: list[float], gamma: float
) -> str:
    lp = torch.as_tensor(log_probs, dtype=torch.float32).clone().requires_grad_(True)
    rw = torch.tensor(rewards, dtype=torch.float32)
    rw_before = rw.clone()
    loss = fn(lp, rw, gamma)
    if not isinstance(loss, torch.Tensor) or loss.dim() != 0:
        raise CheckFailed(f"reinforce_loss must return a scalar tensor, got {loss!r}")
    if not loss.requires_grad:
        raise CheckFailed("the loss carries no gradient: it must be computed from log_probs")
    if not torch.equal(rw, rw_before):
        raise CheckFailed("reinforce_loss changed its rewards argument in place")
    want, want_grad = _answer_key(lp, rw, gamma)
    loss.backward()
    value = float(loss.detach())
    if not math.isclose(value, want, rel_tol=1e-4, abs_tol=1e-5):
        raise CheckFailed(f"rewards {_short(rewards)}, gamma {gamma}: loss {value:.6f}, expected {want:.6f}")
    got_grad = lp.grad.double()
    if not torch.allclose(got_grad, want_grad, rtol=1e-4, atol=1e-6):
        raise CheckFailed(
            f"rewards {_short(rewards)}, gamma {gamma}: d loss / d log_probs = {got_grad.numpy().round(4).tolist()}, "
            f"expected {want_grad.numpy().round(4).tolist()} (is the advantage normalised with the population std, and the loss a mean over the steps?)"
        )
    return f"loss {value:.4f}"


def _short(values: list[float]) -> str:
    return str([round(v, 3) for v in values]) if len(values) <= 6 else f"[{len(values)} values]"


def check_reinforce(module: str, episodes: int = 80, threshold: float = 100.0) -> bool:
    """Exercise (a): numeric checks of ``reinforce_loss`` then a CartPole training run."""
    print(f"exercise (a): reinforce_loss from {module}")
    try:
        fn = importlib.import_module(module).reinforce_loss
    except (ImportError, AttributeError) as exc:
        print(f"FAIL  import: {exc}")
        return False
    gen = torch.Generator().manual_seed(0)
    rand_lp = torch.log(torch.rand(50, generator=gen) * 0.9 + 0.05)
    rand_rw = torch.randn(50, generator=gen).tolist()
    cases = [
        ("worked example: rewards [1, 1, 1], gamma 0.5", ([-0.5, -1.0, -2.0], [1.0, 1.0, 1.0], 0.5)),
        ("sparse final reward, gamma 1", ([-0.1, -0.2, -0.3, -0.4], [0.0, 0.0, 1.0, 0.0], 1.0)),
        ("50 random steps, gamma 0.99", (rand_lp, rand_rw, 0.99)),
    ]
    ok = all([_report(name, lambda a=args: _check_case(fn, *a)) for name, args in cases])
    if not ok:
        print("fix the numeric checks first; the training check is skipped")
        return False

    def learns() -> str:
        from docs.exercises.cartpole_loop import train_cartpole

        t0 = time.perf_counter()
        returns = train_cartpole(fn, episodes=episodes, seed=0)
        last = sum(returns[-20:]) / 20
        first = sum(returns[:20]) / 20
        if not last >= threshold:
            raise CheckFailed(
                f"mean return of episodes {episodes - 20}-{episodes - 1} is {last:.1f} (first 20: {first:.1f}); "
                f"expected at least {threshold:g} (a random policy scores about 22)"
            )
        return (
            f"CartPole-v1 mean return {first:.1f} (first 20 episodes) -> {last:.1f} (last 20 of {episodes}), "
            f"{time.perf_counter() - t0:.0f} s"
        )

    return _report(f"training on CartPole-v1 (seed 0, {episodes} episodes)", learns)


# -- results files of (b) and (c) ------------------------------------------------------------------


def _read_csv(path: str, columns: tuple[str, ...]) -> list[dict[str, float]]:
    try:
        with open(path, newline="") as f:
            rows = list(csv.DictReader(f))
    except OSError as exc:
        raise CheckFailed(f"cannot read {path!r}: {exc}") from None
    if not rows:
        raise CheckFailed(f"{path!r} holds no rows")
    missing = [c for c in columns if c not in rows[0]]
    if missing:
        raise CheckFailed(f"{path!r} lacks column(s) {', '.join(missing)}; has {', '.join(rows[0])}")
    try:
        return [{c: float(r[c]) for c in columns} for r in rows]
    except ValueError as exc:
        raise CheckFailed(f"{path!r}: a value is not a number ({exc})") from None


def _direction(first: float, last: float) -> str:
    """``"increases"``, ``"decreases"`` or ``"unchanged"`` (equal to 4 decimals, as the CSV stores)."""
    if round(last, 4) == round(first, 4):
        return "unchanged"
    return "increases" if last > first else "decreases"


def check_kl(path: str, kl_answer: str, reward_answer: str) -> bool:
    """Exercise (b): the directions the student gave against the sweep's printed numbers."""
    print(f"exercise (b): KL coefficient trade-off in {path}")
    try:
        rows = sorted(_read_csv(path, ("kl_coef", "reward", "kl")), key=lambda r: r["kl_coef"])
    except CheckFailed as exc:
        print(f"FAIL  results file: {exc}")
        return False
    coefs = sorted({r["kl_coef"] for r in rows})
    if len(coefs) < 2:
        print(f"FAIL  results file: need at least two different kl_coef values, got {coefs}")
        return False
    lo, hi = rows[0], rows[-1]
    table = "; ".join(f"kl_coef {r['kl_coef']:g}: reward {r['reward']:+.3f}, KL {r['kl']:.2f}" for r in rows)
    print(f"      your numbers: {table}")
    ok = True
    for name, key, answer in (
        ("KL to the reference", "kl", kl_answer),
        ("task reward", "reward", reward_answer),
    ):
        seen = _direction(lo[key], hi[key])

        def verdict(seen: str = seen, answer: str = answer, key: str = key) -> str:
            if seen == "unchanged":
                raise CheckFailed(
                    f"your run shows no difference ({lo[key]:.4f} at kl_coef {lo['kl_coef']:g} and at "
                    f"{hi['kl_coef']:g}): the policies barely trained; run kl_sweep with more --timesteps"
                )
            if answer != seen:
                raise CheckFailed(
                    f"you answered {answer!r}, but from kl_coef {lo['kl_coef']:g} to {hi['kl_coef']:g} it goes "
                    f"{lo[key]:.3f} -> {hi[key]:.3f}"
                )
            return f"{seen} as kl_coef grows ({lo[key]:.3f} -> {hi[key]:.3f})"

        ok &= _report(f"{name} as kl_coef grows", verdict)
    if ok:
        tradeoff = (
            _direction(lo["kl"], hi["kl"]) == "decreases"
            and _direction(lo["reward"], hi["reward"]) == "decreases"
        )
        print(
            "      this run shows the trade-off: a larger coefficient keeps the policy closer to the reference "
            "and earns less reward"
            if tradeoff
            else "      note: this run does not show the usual trade-off (both fall); train longer or spread the "
            "coefficients further apart and look again"
        )
    return ok


def check_overopt(path: str, gold_peak: int, larger_gain: str) -> bool:
    """Exercise (c): the gold peak and which reward gained more, against the student's run."""
    print(f"exercise (c): over-optimisation in {path}")
    try:
        rows = _read_csv(path, ("timesteps", "proxy", "gold"))
    except CheckFailed as exc:
        print(f"FAIL  results file: {exc}")
        return False
    if len(rows) < 3:
        print(f"FAIL  results file: need at least 3 logged iterations, got {len(rows)}")
        return False
    peak = max(rows, key=lambda r: r["gold"])
    first, last = rows[0], rows[-1]
    gains = {"proxy": last["proxy"] - first["proxy"], "gold": last["gold"] - first["gold"]}
    print(
        f"      your run: proxy {first['proxy']:+.3f} -> {last['proxy']:+.3f}, gold {first['gold']:+.3f} -> "
        f"{last['gold']:+.3f} over {int(last['timesteps']):,} tokens"
    )

    def peak_check() -> str:
        best = {int(r["timesteps"]) for r in rows if r["gold"] == peak["gold"]}
        if int(gold_peak) not in best:
            raise CheckFailed(
                f"you answered {gold_peak:,}; look for the row with the highest gold reward (the answer is one of "
                f"the timesteps values in the file)"
            )
        return f"gold peaks at {int(peak['timesteps']):,} tokens ({peak['gold']:+.3f})"

    def gain_check() -> str:
        if round(gains["proxy"], 4) == round(gains["gold"], 4):
            raise CheckFailed(
                f"proxy and gold gained the same ({gains['gold']:+.4f}); train longer and look again"
            )
        seen = max(gains, key=gains.get)
        if larger_gain != seen:
            raise CheckFailed(
                f"you answered {larger_gain!r}; gains: proxy {gains['proxy']:+.3f}, gold {gains['gold']:+.3f}"
            )
        return f"proxy gained {gains['proxy']:+.3f}, gold {gains['gold']:+.3f}"

    ok = _report("where the gold reward peaks", peak_check)
    ok &= _report("which reward gained more", gain_check)
    return ok


def main(argv: list[str] | None = None) -> int:
    """Parse the exercise name and its answers, run the checks, return the exit status."""
    p = argparse.ArgumentParser(prog="python -m docs.exercises.check", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="exercise", required=True)
    a = sub.add_parser("reinforce", help="(a) the REINFORCE loss")
    which = a.add_mutually_exclusive_group()
    which.add_argument("--solution", action="store_true", help=f"check the reference solution ({SOLUTION})")
    which.add_argument(
        "--module", default=SKELETON, help=f"module defining reinforce_loss (default {SKELETON})"
    )
    b = sub.add_parser("kl", help="(b) the KL-coefficient trade-off")
    b.add_argument("--csv", default="runs/kl_sweep.csv", help="the file kl_sweep.py wrote")
    b.add_argument("--kl", required=True, choices=("increases", "decreases"), help="KL as kl_coef grows")
    b.add_argument(
        "--reward", required=True, choices=("increases", "decreases"), help="reward as kl_coef grows"
    )
    c = sub.add_parser("overopt", help="(c) over-optimisation of a learned proxy")
    c.add_argument("--csv", default="runs/overopt.csv", help="the file overoptimization.py wrote")
    c.add_argument("--gold-peak", required=True, type=int, help="timesteps of the row where gold is highest")
    c.add_argument("--larger-gain", required=True, choices=("proxy", "gold"), help="which reward rose more")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    if args.exercise == "reinforce":
        ok = check_reinforce(SOLUTION if args.solution else args.module)
    elif args.exercise == "kl":
        ok = check_kl(args.csv, args.kl, args.reward)
    else:
        ok = check_overopt(args.csv, args.gold_peak, args.larger_gain)
    print("all checks passed" if ok else "some checks failed")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
