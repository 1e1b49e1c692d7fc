"""
The compute multiplier's analysis: how many steps the tuned baseline needs to reach the loss an arm reaches in L
steps, both at the end of fully decayed runs, with a 95% interval over seeds (docs/results.md, issue 36's study).

    m(L) = S_base(loss_arm(L)) / L

The frontier is the baseline's end points (S_i steps, loss y_i), each a fully decayed run at its own tuned rate.
`monotone` makes it non-increasing (pooling adjacent violators: with few seeds two neighbouring points may cross);
`steps_to` inverts it by linear interpolation of log S against log y between the two points that bracket the loss
(exact on a pure power law; with an asymptote E > 0 it errs by about 1% between doublings).
An arm below the frontier's lowest point (or above its highest) is beyond it: its multiplier is reported as "more
than" S_max / L ("less than" S_min / L), flag '>' ('<'), never extrapolated. `fit` gives the smooth check
y = E + A·S^(−α) beside it.

Intervals: seeds are resampled as pairs (`bootstrap`: the arm and every frontier point that ran a seed share its
data order, so one draw of seeds serves all of them; a point without the arm's seeds is resampled on its own), seeded;
`percentile` reads the 2.5% and 97.5% points. With 5 seeds a percentile interval can be too narrow, so `log_t`
gives the t-interval on the per-seed log multipliers, and `coverage` measures how often each covers a known
multiplier on synthetic frontiers with the measured seed-to-seed noise (a seed's shared offset plus each run's own).
"""
import math
import random
import statistics

from harness import paired


def monotone(points):
    """[(S, y)] sorted by S with y made non-increasing by pooling adjacent violators (equal weights): a later point
    that is higher than an earlier one is averaged with it, so the frontier never says more steps cost loss."""
    blocks = []  # [sum of y, count, [S...]]
    for s, y in sorted(points):
        blocks.append([y, 1, [s]])
        while len(blocks) > 1 and blocks[-2][0] / blocks[-2][1] < blocks[-1][0] / blocks[-1][1]:
            y2, n2, s2 = blocks.pop()
            blocks[-1] = [blocks[-1][0] + y2, blocks[-1][1] + n2, blocks[-1][2] + s2]
    return [(s, total / n) for total, n, ss in blocks for s in ss]


def steps_to(points, loss):
    """(S, flag): the steps the monotone frontier needs to reach `loss`, interpolating log S against log y; the
    first S that reaches it where the frontier is flat. Beyond the frontier: (S_max, '>') below its lowest loss,
    (S_min, '<') above its highest; else flag ''."""
    pts = monotone(points)
    if loss < pts[-1][1]:
        return pts[-1][0], ">"
    if loss > pts[0][1]:
        return pts[0][0], "<"
    for (s0, y0), (s1, y1) in zip(pts, pts[1:]):
        if y0 >= loss >= y1:
            if y0 == y1 or loss == y0:
                return s0, ""
            t = (math.log(y0) - math.log(loss)) / (math.log(y0) - math.log(y1))
            return math.exp(math.log(s0) + t * (math.log(s1) - math.log(s0))), ""
    return pts[0][0], ""  # a single-point frontier whose loss equals it


def multiplier(points, steps, loss):
    """(m, flag): S_base(loss) / steps (see steps_to for the flag)."""
    s, flag = steps_to(points, loss)
    return s / steps, flag


def fit(points, grid=400):
    """(E, A, α) of y = E + A·S^(−α) fitted to the frontier: for each E on a grid below the lowest loss, a line
    through log(y − E) against log S; the E whose fitted curve has the least squared error in y."""
    xs = [math.log(s) for s, _ in points]
    low = min(y for _, y in points)
    best = None
    for i in range(grid):
        e = low * i / grid
        ys = [math.log(y - e) for _, y in points]
        mx, my = statistics.mean(xs), statistics.mean(ys)
        sxx = sum((x - mx) ** 2 for x in xs)
        slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sxx
        a, alpha = math.exp(my - slope * mx), -slope
        sse = sum((e + a * s ** -alpha - y) ** 2 for s, y in points)
        if alpha > 0 and (best is None or sse < best[0]):
            best = (sse, e, a, alpha)
    return best[1:] if best else None


def fit_steps(params, loss):
    """The steps at which the fitted frontier reaches `loss`; None at or below its asymptote E."""
    e, a, alpha = params
    return (a / (loss - e)) ** (1 / alpha) if loss > e else None


def seed_means(by_seed, seeds):
    """The mean of {seed: loss} over `seeds` (a resample, with repeats) where it has them, else over its own."""
    mine = [by_seed[s] for s in seeds if s in by_seed]
    return statistics.mean(mine) if mine else statistics.mean(by_seed.values())


def estimate(frontier, arm, steps, seeds=None):
    """(m, flag) from the seed means: frontier {S: {seed: loss}}, arm {seed: loss}, over `seeds` (default: each
    point's own)."""
    seeds = list(arm) if seeds is None else seeds
    points = [(s, seed_means(by_seed, seeds)) for s, by_seed in frontier.items()]
    return multiplier(points, steps, seed_means(arm, seeds))


def bootstrap(frontier, arm, steps, draws=2000, seed=0):
    """Multipliers of `draws` resamples of the arm's seeds with replacement, each applied to the arm and to every
    frontier point that ran those seeds (a point that ran none of them is resampled over its own seeds), seeded."""
    rng = random.Random(seed)
    seeds = sorted(arm)
    out = []
    for _ in range(draws):
        pick = [rng.choice(seeds) for _ in seeds]
        points = []
        for s, by_seed in frontier.items():
            own = pick if any(p in by_seed for p in pick) else [rng.choice(sorted(by_seed)) for _ in by_seed]
            points.append((s, seed_means(by_seed, own)))
        out.append(multiplier(points, steps, seed_means(arm, pick))[0])
    return out


def percentile(values, level=0.95):
    """(low, high): the (1 − level)/2 and (1 + level)/2 points of the sorted values (nearest rank)."""
    v = sorted(values)
    k = (1 - level) / 2
    rank = lambda q: min(len(v), max(1, math.ceil(q * len(v) - 1e-9)))  # noqa: E731 (1e-9: 0.025·200 is 5, not 5.0…1)
    return v[rank(k) - 1], v[rank(1 - k) - 1]


def log_t(frontier, arm, steps):
    """(low, high): the 95% t-interval of the per-seed log multipliers, exponentiated. A seed's multiplier inverts
    the frontier at that seed where a point ran it, else at the point's mean."""
    mean, _, _, half = paired([math.log(estimate(frontier, arm, steps, [s])[0]) for s in sorted(arm)])
    return math.exp(mean - half), math.exp(mean + half)


def synthetic(params, lengths, arm_steps, m_true, seeds, shared, own, rng):
    """One synthetic study: the frontier y = E + A·S^(−α) at `lengths`, the arm at arm_steps with the loss the
    baseline reaches at m_true·arm_steps, each seed's runs moved by one shared offset (sd `shared`, the seed's data
    order) and each run by its own noise (sd `own`). Returns (frontier {S: {seed: loss}}, arm {seed: loss})."""
    e, a, alpha = params
    offsets = {s: rng.gauss(0, shared) for s in seeds}
    frontier = {n: {s: e + a * n ** -alpha + offsets[s] + rng.gauss(0, own) for s in seeds} for n in lengths}
    arm = {s: e + a * (m_true * arm_steps) ** -alpha + offsets[s] + rng.gauss(0, own) for s in seeds}
    return frontier, arm


def coverage(params, lengths, arm_steps, m_true, seeds, shared, own, replicates=200, draws=400, seed=0):
    """{'percentile': share, 'log_t': share}: how often each 95% interval covers m_true over synthetic studies."""
    rng = random.Random(seed)
    hits = {"percentile": 0, "log_t": 0}
    for r in range(replicates):
        frontier, arm = synthetic(params, lengths, arm_steps, m_true, seeds, shared, own, rng)
        lo, hi = percentile(bootstrap(frontier, arm, arm_steps, draws, seed=r))
        hits["percentile"] += lo <= m_true <= hi
        lo, hi = log_t(frontier, arm, arm_steps)
        hits["log_t"] += lo <= m_true <= hi
    return {k: v / replicates for k, v in hits.items()}
