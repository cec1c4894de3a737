"""Which MD frames ``hdnnp learn`` sends to the reference (query by committee).

A stored frame of an exploration trajectory is a *candidate* when the committee's force spread
σ_F (the largest standard deviation of a force component over the members, eV/Å) exceeds
``spread_threshold``, or when a scaled feature lies more than ``extrapolation_threshold`` beyond
the training range [-1, 1]. Candidates with σ_F above ``spread_max`` (if set) are left out: the
networks are so far off there that the configuration is unphysical (DP-GEN's trust_hi). Its score
is max(σ_F / spread_threshold, excess / extrapolation_threshold).

From all trajectories of one iteration at most ``max_frames`` are taken: the earliest
candidates of each trajectory first, one trajectory after the other in turn (round robin), each
at least ``min_separation_ps`` from any frame already taken from the same trajectory (MD frames
a few steps apart are near-copies: one label teaches as much as several). The earliest
candidates are where the run first left what the committee knows (the frontier); once they are
learned the next exploration goes further, while the frames after them are often consequences
of the first error (DP-GEN and Schran et al. pick candidates without regard to how extreme they
are, for the same reason). A run that a guard stopped without any candidate gives its last stored
frame, the one nearest the failure.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Candidate:
    condition: str  # label of the trajectory, e.g. "nvt-773K"
    frame: int  # index of the stored frame in its md.h5
    time_ps: float
    force_spread: float  # eV/Å (NaN: no committee)
    extrapolation_excess: float
    score: float


def trajectory_candidates(condition: str, time_ps, force_spread, extrapolation_excess, spread_threshold: float,
                          extrapolation_threshold: float, spread_max: float = np.inf,
                          stopped: bool = False) -> list[Candidate]:
    """The candidates among the stored frames of one trajectory (arrays per frame)."""
    time_ps = np.asarray(time_ps, float)
    spread = np.asarray(force_spread, float)
    excess = np.asarray(extrapolation_excess, float)
    with np.errstate(invalid="ignore", divide="ignore"):
        s_score = np.where(np.isfinite(spread), spread / spread_threshold, 0.0)
        e_score = np.where(excess > 0, excess / extrapolation_threshold if extrapolation_threshold > 0 else np.inf, 0.0)
    score = np.maximum(s_score, e_score)
    keep = ((s_score > 1.0) | (e_score > 1.0)) & ~(np.isfinite(spread) & (spread > spread_max))
    out = [Candidate(condition, int(k), float(time_ps[k]), float(spread[k]), float(excess[k]), float(score[k]))
           for k in np.flatnonzero(keep)]
    if not out and stopped and len(time_ps):
        k = len(time_ps) - 1
        out = [Candidate(condition, k, float(time_ps[k]), float(spread[k]), float(excess[k]), float(score[k]))]
    return out


def select(candidates: list[Candidate], max_frames: int, min_separation_ps: float) -> list[Candidate]:
    """At most ``max_frames`` candidates, earliest first in each trajectory, trajectories in
    turn, no two of one trajectory closer in time than ``min_separation_ps``; returned in
    (condition, time) order."""
    queues: dict[str, list[Candidate]] = {}
    for c in sorted(candidates, key=lambda c: (c.condition, c.time_ps, c.frame)):
        queues.setdefault(c.condition, []).append(c)
    chosen: list[Candidate] = []
    last: dict[str, float] = {}
    while len(chosen) < max_frames and any(queues.values()):
        for condition in sorted(queues):
            queue = queues[condition]
            while queue and condition in last and queue[0].time_ps - last[condition] < min_separation_ps:
                queue.pop(0)
            if queue and len(chosen) < max_frames:
                c = queue.pop(0)
                chosen.append(c)
                last[condition] = c.time_ps
    return sorted(chosen, key=lambda c: (c.condition, c.time_ps))
