"""Options that lost their study left the code: stored configs at their off value load, asking for them is refused."""
import dataclasses
import json

import pytest

from model.presets import REMOVED_IN, get_preset
from train.weights import build


def stored_tiny(**extra) -> dict:
    """A tiny model's config as an older version wrote it (the removed fields present), updated by extra."""
    dit, diffusion = get_preset("tiny")
    config = {"model": dict(dataclasses.asdict(dit), cond_direct=False),
              "diffusion": dict(dataclasses.asdict(diffusion), loss_weighting="none", min_snr_gamma=5.0)}
    for key, value in extra.items():
        config["model" if key == "cond_direct" else "diffusion"][key] = value
    return json.loads(json.dumps(config))


def test_a_stored_config_with_the_removed_options_off_still_builds():
    net, diffusion = build(stored_tiny())
    assert diffusion.config.prediction == "v" and not hasattr(net.cfg, "cond_direct")


@pytest.mark.parametrize("key,value,shown", [("cond_direct", True, "cond_direct=true"),
                                             ("prediction", "x0", 'prediction="x0"'),
                                             ("loss_weighting", "min_snr", 'loss_weighting="min_snr"')])
def test_a_removed_option_is_refused_in_one_line_naming_its_last_commit(key, value, shown):
    for attempt in (lambda: build(stored_tiny(**{key: value})), lambda: get_preset("tiny", **{key: value})):
        with pytest.raises(ValueError) as e:
            attempt()
        message = str(e.value)
        assert shown in message and "removed" in message and REMOVED_IN in message and "\n" not in message
