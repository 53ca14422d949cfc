"""The %config traits (`%config TfMagics.eta = 0.01`), built from the declared options: the
same default, and the same check, so a bad value is refused at once, keeping the old one."""

from traitlets import Bool, Float, Int, TraitError, Unicode, validate
from traitlets.config import Configurable

from tfmagic.options.declared import DESCEND, Bad

SETTINGS = {option.setting: option for option in DESCEND if option.setting}


def shown_default(option):
    """The default as `%%descend?` lists it."""
    if option.flag:  # (--no-widgets: the setting is `widgets`, on unless set)
        return True
    return {"pace": "off", "device": "TensorFlow's choice"}.get(option.dest, option.default)


def _trait(option):
    if option.flag:
        return Bool(True, help=f"False: {option.about}.")
    kind = {float: Float, int: Int, str: Unicode}[option.type]
    return kind(option.default, allow_none=option.default is None, help=f"Default {option.name}: {option.about}.")


def check_setting(name, value):
    """`value` if TfMagics.`name` takes it, else TraitError with the option's own words."""
    option = SETTINGS[name]
    if option.flag:
        return value
    try:
        return option.checked(value, label=f"TfMagics.{name}")
    except Bad as err:
        raise TraitError(str(err)) from None


def _validate(self, proposal):
    return check_setting(proposal.trait.name, proposal.value)


def _update_config(self, config):
    """A bad value is refused before it enters the config: kept there, it would refuse every
    later %config (and the next %load_ext)."""
    section = config[type(self).__name__] if type(self).__name__ in config else {}
    traits = self.traits(config=True)
    for name, value in section.items():
        if name in SETTINGS and name in traits:
            traits[name]._validate(self, value)
    Configurable.update_config(self, config)


# The traits of TfMagics (a base class of it: `%config TfMagics` lists them under that name).
DescendSettings = type("DescendSettings", (Configurable,), {
    **{name: _trait(option).tag(config=True) for name, option in SETTINGS.items()},
    "_validate_settings": validate(*SETTINGS)(_validate),
    "update_config": _update_config,
    "__doc__": "The defaults of %%descend's options a notebook sets with %config.",
})
