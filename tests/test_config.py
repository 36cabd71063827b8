"""vaejax.config: each preset reads only its own fields."""

import pytest

from experiments.configs import mnist
from experiments.configs import test as test_config
from vaejax import build
from vaejax import config as config_lib
from vaejax import workdir as workdir_lib
from vaejax.fields import ConfigError


@pytest.mark.parametrize("preset", sorted(config_lib.PRESETS))
def test_each_preset_reads_its_own_fields_and_builds(preset):
    config = mnist.get_config(preset)
    cfg = config_lib.read(config).model
    own = {f for f in type(cfg.net).__dataclass_fields__ if f in config.model}
    assert type(cfg.net) is config_lib.PRESETS[preset]
    assert set(config.model) == own | set(config_lib.SHARED)
    build.build_model(cfg, (28, 28, 1), build.build_likelihood(cfg))


def test_a_field_of_another_preset_is_refused_by_name():
    config = test_config.get_config()  # "mlp": latent_dim, hidden_sizes, ...
    config.model.preset = "ladder"
    with pytest.raises(ConfigError, match=r"'ladder' takes .*latent_sizes.*latent_dim \(.*mlp"):
        config_lib.read(config)
    with pytest.raises(ConfigError, match="did you mean model.latent_dim"):
        config_lib.read(mnist.get_config().to_dict() | {"model": {"latent_dimm": 3}})


def test_set_preset_swaps_the_fields_and_refuses_unknown_ones():
    model = test_config.get_config().model
    config_lib.set_preset(model, "ladder", latent_sizes=(4, 2))
    assert "hidden_sizes" not in model and "latent_dim" not in model
    assert model.latent_sizes == (4, 2) and model.layer_hidden_sizes == ()
    assert model.likelihood == "bernoulli"  # the shared fields stay
    with pytest.raises(ConfigError, match="did you mean model.latent_sizes"):
        config_lib.set_preset(model, "stacked", latent_size=(4,))
    with pytest.raises(ConfigError, match="preset = 'ladderr' is not a valid name"):
        config_lib.set_preset(model, "ladderr")


def test_a_record_with_every_presets_fields_still_reads():
    # What runs saved before each preset had its own fields: all of them, unused ones too.
    old = mnist.get_config().to_dict()
    old["model"] |= dict(latent_sizes=(), hidden_sizes=(200, 200), activation="tanh")
    with pytest.raises(ConfigError, match="fields of other presets"):
        config_lib.read(old)
    assert (
        config_lib.read(config_lib.own_fields(old)).model
        == config_lib.read(mnist.get_config()).model
    )


def test_a_hierarchy_takes_gaussian_layers_only():
    config = mnist.get_config("ladder")
    config.model.posterior = "softplus"
    with pytest.raises(ConfigError, match="diagonal Gaussian layers"):
        config_lib.read(config)


def test_a_run_recorded_with_every_presets_fields_resumes(tmp_path):
    settings = mnist.get_config().to_dict()
    old = settings | {"model": settings["model"] | {"hidden_sizes": (200, 200)}}
    workdir_lib.record_training(old, str(tmp_path))
    workdir_lib.check_same_training(settings, str(tmp_path), resuming=True)
    changed = settings | {"model": settings["model"] | {"latent_dim": 3}}
    with pytest.raises(ValueError, match=r"'model.latent_dim': \(50, 3\)"):
        workdir_lib.check_same_training(changed, str(tmp_path), resuming=True)
