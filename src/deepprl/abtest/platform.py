"""A simulated video-streaming platform for the online experiment (paper §7).

Consumers carry the paper's features (gender, age, province, city, OS, VIP status, active
days) and videos its video features (genre, view count, comment count, release days,
length). Hidden traits drive the response: a taste vector and genre affinities per
consumer; a latent vector, quality and a "click-bait" flag per video; a consumer's
*patience* (older and VIP consumers are more patient, evenings add patience, mornings
remove it).

A session shows `slots` videos in rank order. The consumer has a time budget (minutes,
longer for patient consumers and in the evening) and, slot by slot while budget is left:

* starts the video with probability sigmoid(click logit): match, click-bait, popularity,
  and a length preference whose sign follows patience;
* watches a fraction of it (match raises it, click-bait and, for impatient consumers,
  length lower it), truncated by the remaining budget;
* CTR = watched >= 10 s, VV = watched >= 90 % of the video, DT = seconds watched;
* a finished, well matched video extends the session (satisfaction).

So the objectives trade off differently by video length (short videos are finished,
long ones bring dwell time), by popularity (popular click-bait is clicked and dropped),
by consumer type (patience) and by hour: the heterogeneity of paper §3.2.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

GENRES = ("drama", "variety", "anime", "movie", "kids", "documentary", "news", "sports")
# median length (minutes) and share of click-bait per genre
_GENRE_LENGTH = (38.0, 55.0, 22.0, 100.0, 10.0, 45.0, 3.0, 6.0)
_GENRE_BAIT = (0.08, 0.25, 0.05, 0.03, 0.05, 0.05, 0.35, 0.30)
PROVINCES = 12
CITIES_PER_PROVINCE = 3
OS_NAMES = ("android", "ios", "harmony")
TASTE_DIM = 4
MAX_LENGTH_MIN = 120.0
DT_CAP_S = MAX_LENGTH_MIN * 60.0
"""No record's dwell time exceeds this (a video is at most 120 minutes)."""


@dataclass(frozen=True)
class PlatformConfig:
    """Sizes and seed of the simulated platform."""

    consumers: int = 20_000
    """Consumers in the experiment population (existing + new)."""
    videos: int = 1_500
    """Videos in the catalogue."""
    new_consumer_share: float = 0.05
    """Share of consumers who join during the experiment (cold start)."""
    premium_share: float = 0.10
    """Share of videos that are premium (shown to VIP consumers only)."""
    sessions_per_day: float = 0.3
    """Mean sessions per consumer and day (scaled by the consumer's activity)."""
    slots: int = 6
    """Videos shown per session."""
    candidates: int = 24
    """Candidate videos per session, ranked by the arm's model."""
    seed: int = 0
    """Seed of the population, catalogue and every response."""


@dataclass(frozen=True)
class Consumers:
    """Observed features [U] and hidden traits of the consumers."""

    user_id: np.ndarray  # [U] str
    gender: np.ndarray  # [U] str
    age: np.ndarray  # [U] int
    province: np.ndarray  # [U] str
    city: np.ndarray  # [U] str
    os: np.ndarray  # [U] str
    vip: np.ndarray  # [U] int 0/1
    active_days: np.ndarray  # [U] int, days active over the past month
    join_day: np.ndarray  # [U] int: first experiment day (<= -1: joined before the log)
    taste: np.ndarray  # [U, TASTE_DIM] hidden
    affinity: np.ndarray  # [U, G] hidden genre affinity
    patience: np.ndarray  # [U] hidden
    rate: np.ndarray  # [U] hidden mean sessions per day

    @property
    def new(self) -> np.ndarray:
        """[U] bool: joined during the experiment."""
        return self.join_day >= 0


@dataclass(frozen=True)
class Videos:
    """Observed features [V] and hidden traits of the catalogue."""

    video_id: np.ndarray  # [V] str
    genre: np.ndarray  # [V] int index into GENRES
    length_min: np.ndarray  # [V] float minutes
    view_count: np.ndarray  # [V] int, views over the past month
    comment_count: np.ndarray  # [V] int
    release_day: np.ndarray  # [V] int: day of release (relative to experiment day 0)
    premium: np.ndarray  # [V] bool
    latent: np.ndarray  # [V, TASTE_DIM] hidden
    quality: np.ndarray  # [V] hidden
    bait: np.ndarray  # [V] float 0/1 hidden click-bait


def make_consumers(config: PlatformConfig, days: int, rng: np.random.Generator) -> Consumers:
    n = config.consumers
    age = np.clip(np.round(rng.normal(31, 10, n)), 16, 70).astype(np.int64)
    os_idx = rng.choice(3, size=n, p=[0.68, 0.28, 0.04])
    vip = (rng.random(n) < _sigmoid(-1.0 + 0.03 * (age - 31) + 0.5 * (os_idx == 1))).astype(
        np.int64)
    prov_p = 1.0 / np.arange(1, PROVINCES + 1) ** 0.8
    prov = rng.choice(PROVINCES, size=n, p=prov_p / prov_p.sum())
    city = rng.choice(CITIES_PER_PROVINCE, size=n, p=[0.6, 0.25, 0.15])
    activity = rng.lognormal(0.0, 0.6, n)
    new = rng.random(n) < config.new_consumer_share
    join_day = np.where(new, rng.integers(0, max(days - 1, 1), n), -10_000)
    active = np.clip(np.round(30 * (1 - np.exp(-0.6 * activity)) + rng.normal(0, 2, n)), 1, 30)
    return Consumers(
        user_id=np.array([f"u{i:06d}" for i in range(n)]),
        gender=np.where(rng.random(n) < 0.5, "female", "male"),
        age=age,
        province=np.array([f"P{p:02d}" for p in prov]),
        city=np.array([f"P{p:02d}-C{c}" for p, c in zip(prov, city, strict=True)]),
        os=np.array(OS_NAMES)[os_idx],
        vip=vip,
        active_days=np.where(new, 0, active).astype(np.int64),
        join_day=join_day.astype(np.int64),
        taste=rng.normal(0, 1, (n, TASTE_DIM)),
        affinity=rng.normal(0, 0.5, (n, len(GENRES))),
        patience=0.6 * vip + 0.025 * (age - 31) + rng.normal(0, 0.7, n),
        rate=activity / activity.mean(),
    )


def make_videos(config: PlatformConfig, pre_days: int, rng: np.random.Generator) -> Videos:
    n = config.videos
    genre = rng.choice(len(GENRES), size=n, p=[0.2, 0.12, 0.1, 0.1, 0.08, 0.08, 0.17, 0.15])
    length = np.clip(np.array(_GENRE_LENGTH)[genre] * rng.lognormal(0, 0.35, n), 0.5,
                     MAX_LENGTH_MIN)
    quality = rng.normal(0, 1, n)
    bait = (rng.random(n) < np.array(_GENRE_BAIT)[genre]).astype(np.float64)
    views = np.round(np.exp(8.0 + 0.5 * quality + 0.8 * bait + rng.normal(0, 1.1, n)))
    comments = np.round(views * 0.01 * rng.lognormal(0, 0.6, n))
    # most videos are old; ~8 % were released during the pre-period (new in week one)
    fresh = rng.random(n) < 0.08
    release = np.where(fresh, -rng.integers(1, pre_days + 1, n),
                       -np.round(rng.exponential(200, n)).astype(np.int64) - pre_days - 1)
    premium = (rng.random(n) < config.premium_share * 2 * (genre < 4)) & (bait == 0)
    return Videos(
        video_id=np.array([f"v{i:05d}" for i in range(n)]),
        genre=genre, length_min=length, view_count=views.astype(np.int64),
        comment_count=comments.astype(np.int64), release_day=release.astype(np.int64),
        premium=premium, latent=rng.normal(0, 1, (n, TASTE_DIM)),
        quality=quality + 0.4 * premium, bait=bait)


@dataclass(frozen=True)
class Platform:
    """Consumers, videos and the response model."""

    config: PlatformConfig
    consumers: Consumers
    videos: Videos

    @classmethod
    def build(cls, config: PlatformConfig, *, days: int, pre_days: int) -> Platform:
        rng = np.random.default_rng(config.seed)
        return cls(config, make_consumers(config, days, rng),
                   make_videos(config, pre_days, rng))

    def match(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """Hidden match of users [B] with videos [B, C] -> [B, C]."""
        c, v = self.consumers, self.videos
        taste = np.einsum("bd,bcd->bc", c.taste[users], v.latent[items]) / 2.0
        affinity = np.take_along_axis(c.affinity[users], v.genre[items], axis=1)
        return taste + affinity + 0.6 * v.quality[items]

    def session_patience(self, users: np.ndarray, hours: np.ndarray) -> np.ndarray:
        """[B] patience of a consumer at an hour: evenings add, mornings remove."""
        evening = (hours >= 19) & (hours <= 23)
        morning = (hours >= 6) & (hours <= 9)
        return self.consumers.patience[users] + 0.6 * evening - 0.5 * morning

    def candidates(self, users: np.ndarray, day: int, rng: np.random.Generator, *,
                   allowed: np.ndarray | None = None) -> np.ndarray:
        """[B, C] distinct candidate videos per session: popularity- and freshness-weighted,
        released by `day`, premium only for VIP consumers, within `allowed` [V] (default:
        all) (Gumbel top-C sampling)."""
        v = self.videos
        base = 0.35 * np.log(v.view_count + 1.0) + 0.8 * (day - v.release_day < 7)
        ok = v.release_day <= day if allowed is None else (v.release_day <= day) & allowed
        base = np.where(ok, base, -np.inf)
        out = np.empty((len(users), self.config.candidates), dtype=np.int64)
        vip = self.consumers.vip[users].astype(bool)
        for lo in range(0, len(users), 2048):
            hi = min(lo + 2048, len(users))
            logits = np.broadcast_to(base, (hi - lo, len(base))).copy()
            logits[~vip[lo:hi][:, None] & v.premium[None, :]] = -np.inf
            keys = logits + rng.gumbel(size=logits.shape)
            part = np.argpartition(-keys, self.config.candidates, axis=1)
            out[lo:hi] = part[:, : self.config.candidates]
        return out

    def respond(self, users: np.ndarray, shown: np.ndarray, hours: np.ndarray,
                rng: np.random.Generator) -> dict[str, np.ndarray]:
        """Responses of users [B] to the videos shown [B, R] in rank order at hours [B]:
        ctr, vv (0/1), dt (seconds) and reward, each [B, R]."""
        v = self.videos
        b, r = shown.shape
        m = self.match(users, shown)
        pat = self.session_patience(users, hours)  # [B]
        log_len = np.log(v.length_min[shown] / 10.0)  # [B, R]
        pop = (np.log(v.view_count[shown] + 1.0) - 8.0) / 1.5
        bait = v.bait[shown]
        remaining = np.exp(np.log(20.0) + 0.45 * pat + rng.normal(0, 0.5, b))  # minutes
        ctr, vv, dt = np.zeros((b, r)), np.zeros((b, r)), np.zeros((b, r))
        for j in range(r):
            alive = remaining > 0
            click_logit = (-1.0 + 0.8 * m[:, j] + 1.4 * bait[:, j] + 0.3 * pop[:, j]
                           + 0.45 * pat * log_len[:, j] - 0.1 * j)
            start = alive & (rng.random(b) < _sigmoid(click_logit))
            frac = _sigmoid(1.0 + 1.1 * m[:, j] - 2.2 * bait[:, j]
                            - (0.5 - 0.45 * pat) * log_len[:, j] + rng.normal(0, 0.8, b))
            frac = np.where(frac > 0.85, 1.0, frac)  # the last minutes are watched whole
            minutes = np.minimum(frac * v.length_min[shown[:, j]], np.maximum(remaining, 0))
            minutes = np.where(start, minutes, 0.0)
            dt[:, j] = np.round(minutes * 60.0)
            ctr[:, j] = dt[:, j] >= 10
            vv[:, j] = start & (minutes >= 0.9 * v.length_min[shown[:, j]])
            satisfied = (vv[:, j] > 0) & (m[:, j] > 0)
            remaining = (remaining - minutes - 0.3
                         + satisfied * 0.4 * v.length_min[shown[:, j]] * _sigmoid(m[:, j]))
        w_dt = _sigmoid(pat)[:, None]  # patient consumers value time, others finishes
        reward = 0.2 * ctr + 0.8 * ((1 - w_dt) * vv + w_dt * np.minimum(dt / 1200.0, 1.0))
        return {"ctr": ctr, "vv": vv, "dt": dt, "reward": reward}


def _sigmoid(x: np.ndarray | float) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.asarray(x, dtype=np.float64)))
