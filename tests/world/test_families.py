"""Scenario families: each family's scenes exercise what the family is for."""
import numpy as np

from irlvla_jax import scene as S


def test_family_specific_content(family_scenes):
    """Each family exercises what it is for."""
    inter = family_scenes["intersection"]
    cmds = {int(np.argmax(sc.command)) for sc in inter}
    assert cmds == {0, 1, 2}                                   # left, straight, right all occur
    assert all(sc.light_on_route[sc.light_valid].any() for sc in inter)
    assert all((sc.drivable_kind[sc.drivable_valid] == S.DRIVABLE_INTERSECTION).sum() == 1 for sc in inter)
    assert any(sc.light_red[sc.light_on_route & sc.light_valid, 0].any() for sc in inter)
    assert any((~sc.light_red[sc.light_on_route & sc.light_valid, 0]).any() for sc in inter)
    assert all(sc.lane_is_connector[sc.lane_valid].any() for sc in inter)
    for sc in family_scenes["pedestrian_crossing"]:
        assert (sc.agent_type[sc.agent_valid[:, 0]] == S.AGENT_PEDESTRIAN).any()
    for sc in family_scenes["blocked_lane"]:
        assert (sc.agent_type[sc.agent_valid[:, 0]] == S.AGENT_STATIC).any()
    lc = family_scenes["lane_change"]
    assert all(int(np.argmax(sc.command)) in (0, 2) for sc in lc)
    assert sum(S.META_PATH[int(sc.meta_path)].startswith("lane_change") for sc in lc) >= len(lc) // 2
    curv = family_scenes["curve"]
    assert sum(abs(sc.expert_future[-1, 2]) > 0.15 for sc in curv) >= len(curv) // 2
    brakes = family_scenes["lead_brake"]
    assert sum(S.META_SPEED[int(sc.meta_speed)] in ("decelerate", "stop") for sc in brakes) >= len(brakes) // 2
    for sc in family_scenes["oncoming"]:
        vv = sc.agent_velocity[sc.agent_valid[:, 0], 0]
        assert (vv[:, 0] < -2.0).any(), "some agent drives towards the ego"
    for sc in family_scenes["cut_in"]:
        lat0 = np.abs(sc.agent_boxes[:, 0, 1])
        lat4 = np.abs(sc.agent_boxes[:, 40, 1])
        moved = sc.agent_valid[:, 0] & (lat0 - lat4 > 1.5) & (sc.agent_type == S.AGENT_VEHICLE)
        assert moved.any(), "some vehicle moves laterally towards the ego lane"
