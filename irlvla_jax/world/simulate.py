"""Running a drawn world over time: the agents' log replay, the expert's plan, the followers re-simulated
behind the expert, and the sanity pass (no agent overlapping the expert's future).

:func:`build` draws a world of a family (``families.build_world``) and simulates it
(:func:`simulate`): every vehicle by IDM along its path (``traffic.simulate_vehicles``), fixed agents as
given; then the expert (``expert.plan``) against all agents but the followers in its own lane, which are
then re-simulated to react to the expert (so the log is plausible). Every other agent ignores the ego;
all of them are fixed log replay for whatever policy is evaluated. Sanity: a key agent of the family
(priority 0) conflicting with the expert re-draws the scene (up to 6 draws); any other conflicting agent
is removed and the expert re-planned without it (up to 4 times).
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from irlvla_jax.geometry import EGO_CENTER, EGO_LENGTH, EGO_WIDTH
from irlvla_jax.scene import T_FUT, T_PAST
from irlvla_jax.world import expert as E
from irlvla_jax.world.families import build_world
from irlvla_jax.world.scaffold import World
from irlvla_jax.world.traffic import boxes_overlap, simulate_vehicles, vehicle_boxes


class Simulation(NamedTuple):
    """The agents' 4 s futures (world frame, vehicles first, then fixed agents) and the expert's plan."""
    boxes: np.ndarray          # [n, T_FUT, 5] (x, y, heading, length, width)
    vel: np.ndarray            # [n, T_FUT, 2]
    types: np.ndarray          # [n] int32 (scene.AGENT_*)
    valid: np.ndarray          # [n, T_FUT] bool
    heights: np.ndarray        # [n] metres
    priority: np.ndarray       # [n] int32; 0 = a key agent of the family
    expert: E.ExpertResult

    def select(self, keep: np.ndarray) -> "Simulation":
        """The agents where ``keep`` [n] (bool) is True; the expert unchanged."""
        return Simulation(self.boxes[keep], self.vel[keep], self.types[keep], self.valid[keep],
                          self.heights[keep], self.priority[keep], self.expert)


class Built(NamedTuple):
    """A sanity-checked world and its simulation (the agents conflicting with the expert removed)."""
    world: World
    sim: Simulation


def ego_boxes(pose: np.ndarray) -> np.ndarray:
    """Rear-axle poses [..., 3] -> ego boxes [..., 5]."""
    x = pose[..., 0] + EGO_CENTER * np.cos(pose[..., 2])
    y = pose[..., 1] + EGO_CENTER * np.sin(pose[..., 2])
    return np.stack([x, y, pose[..., 2], np.full(x.shape, EGO_LENGTH), np.full(x.shape, EGO_WIDTH)], -1)


def simulate(w: World) -> Simulation:
    """Agents, expert, followers of ``w`` over the 4 s future."""
    vs = w.vehicles
    Sv, Vv = simulate_vehicles(vs)
    vb, vv = vehicle_boxes(vs, Sv, Vv)
    fx = w.fixed
    n = len(vs) + len(fx)
    boxes = np.zeros((n, T_FUT, 5))
    vel = np.zeros((n, T_FUT, 2))
    types = np.zeros(n, np.int32)
    valid = np.ones((n, T_FUT), bool)
    heights = np.zeros(n)
    prio = np.zeros(n, np.int32)
    if vs:
        boxes[:len(vs)], vel[:len(vs)] = vb, vv
        types[:len(vs)] = [v.kind for v in vs]
        heights[:len(vs)] = [v.height for v in vs]
        prio[:len(vs)] = [v.priority for v in vs]
    for i, f in enumerate(fx):
        j = len(vs) + i
        boxes[j], vel[j], types[j], heights[j], prio[j] = f.boxes, f.vel, f.kind, f.height, f.priority
        if f.valid is not None:
            valid[j] = f.valid
    # The expert ignores agents behind it in its own lane that follow it (they react to it).
    follow = np.array([v.follows_ego for v in vs] + [False] * len(fx), bool)
    ex = E.plan(w.route, w.s0, w.v0, w.limit, w.params, w.d_of_s, boxes[~follow], vel[~follow],
                valid[~follow], types[~follow], w.lights, a0=w.a0)
    if follow.any():
        ego_s = ex.s[T_PAST:] + EGO_CENTER
        Sv, Vv = simulate_vehicles(vs, ego_s=ego_s, ego_group="ego")
        vb, vv = vehicle_boxes(vs, Sv, Vv)
        fi = np.nonzero(follow[:len(vs)])[0]
        boxes[fi], vel[fi] = vb[fi], vv[fi]
    return Simulation(boxes, vel, types, valid, heights, prio, ex)


def _conflicts(sim: Simulation) -> np.ndarray:
    """Agents [n] that come within ~0.3 m (front / rear) or 0.1 m (sides) of the expert's box."""
    if len(sim.boxes) == 0:
        return np.zeros(0, bool)
    eb = ego_boxes(sim.expert.pose[T_PAST:]).copy()                # [41, 5]
    eb[:, 3] += 0.6
    eb[:, 4] += 0.2
    return (boxes_overlap(eb[None], sim.boxes) & sim.valid).any(1)


def build(spec, family: str, rng) -> Built:
    """Draw a world, simulate it, sanity-check it: re-draw (up to 6 times) while a key agent of the
    family conflicts with the expert; then remove any other conflicting agent and re-plan without it."""
    for attempt in range(6):
        w = build_world(spec, family, rng)
        sim = simulate(w)
        bad = _conflicts(sim)
        if not (bad & (sim.priority == 0)).any():
            break
    w.attempts = attempt + 1
    for _ in range(4):
        if not bad.any():
            break
        w.dropped += int(bad.sum())
        nv = len(w.vehicles)
        w.vehicles = [v for i, v in enumerate(w.vehicles) if not bad[i]]
        w.fixed = [f for i, f in enumerate(w.fixed) if not bad[nv + i]]
        sim = simulate(w)
        bad = _conflicts(sim)
    return Built(w, sim.select(~bad))
