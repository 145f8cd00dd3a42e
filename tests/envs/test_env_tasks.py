"""Task names, suites, defaults and render settings: what users type and what datasets record."""

from __future__ import annotations

import warnings

import pytest

from diffusion_reward.config import from_dict, to_dict
from diffusion_reward.envs import SUITES, RenderSettings, all_tasks, resolve_suite, resolve_task
from diffusion_reward.errors import UserError


def test_all_metaworld_and_adroit_tasks_resolve_to_themselves_without_warning():
    names = all_tasks()
    assert len(names) == 53
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for name in names:
            assert resolve_task(name).name == name


def test_defaults_of_each_domain():
    reach = resolve_task("reach-v3")
    assert (reach.domain, reach.camera, reach.max_episode_steps) == ("metaworld", "corner2", 100)
    assert [(resolve_task(t).camera, resolve_task(t).max_episode_steps) for t in ("door", "hammer", "pen")] == [
        ("top", 100), ("top", 100), ("vil_camera", 50)]
    assert all(resolve_task(t).domain == "adroit" for t in SUITES["adroit"])


@pytest.mark.parametrize("paper_name, canonical", [
    ("assembly-v2", "assembly-v3"), ("door-open", "door-open-v3"), ("reach", "reach-v3"),
    ("peg_unplug_side-v2", "peg-unplug-side-v3"), ("hammer-v2", "hammer-v3"),
])
def test_paper_names_map_to_v3_with_a_warning(paper_name, canonical):
    with pytest.warns(UserWarning, match=canonical):
        assert resolve_task(paper_name).name == canonical


@pytest.mark.parametrize("alias", ["adroit-door", "AdroitHandDoor-v1", "door", "Door"])
def test_adroit_aliases(alias):
    assert resolve_task(alias).name == "door"


def test_unknown_task_names_close_matches():
    with pytest.raises(UserError, match="unknown task 'reech-v3'.*reach-v3"):
        resolve_task("reech-v3")
    with pytest.raises(UserError, match="unknown task 'walker-walk'"):
        resolve_task("walker-walk")


def test_suites_are_the_papers():
    assert SUITES["metaworld-paper"] == ("assembly-v3", "coffee-push-v3", "dial-turn-v3", "door-close-v3",
                                         "lever-pull-v3", "peg-unplug-side-v3", "reach-v3")
    assert len(SUITES["metaworld-unseen"]) == 8
    assert not set(SUITES["metaworld-unseen"]) & set(SUITES["metaworld-paper"])
    assert SUITES["adroit"] == ("door", "hammer", "pen")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for tasks in SUITES.values():
            assert [resolve_task(t).name for t in tasks] == list(tasks)
    with pytest.raises(UserError, match="metaworld-paper"):
        resolve_suite("metaworld")


def test_render_settings_round_trip_and_validation():
    fast, default = RenderSettings.fast(), RenderSettings.default()
    assert fast == RenderSettings() and not fast.shadows and fast.multisample == 0
    assert default.shadows and default.shadow_size is None and default.multisample is None
    for settings in (fast, default, RenderSettings(shadows=True, shadow_size=512)):
        assert from_dict(RenderSettings, to_dict(settings)) == settings
        assert RenderSettings(**to_dict(settings)) == settings
    with pytest.raises(ValueError, match="shadow"):
        RenderSettings(shadows=True, shadow_size=0)
    with pytest.raises(ValueError, match="multisample"):
        RenderSettings(multisample=-1)
