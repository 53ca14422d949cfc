"""The options of %%descend and %%tfgrad, from their one declaration (tfmagic/options/):
every option's default, help and group; a mistyped flag's "did you mean"; every pair of
options that exclude each other; every %config setting refusing a bad value at once."""

import ast
import logging
import pathlib
import re

import pytest
from IPython.core.error import UsageError

from tfmagic.descent.optimizers import OPTIMIZERS
from tfmagic.options import declared
from tfmagic.options.declared import DESCEND, GROUPS, TFGRAD, flags
from tfmagic.options.exclusions import EXCLUDES, REQUIRES

CELL = "y = (x - 2.0) ** 2"


@pytest.fixture
def refused(shell):
    """A magic whose line is refused: run through the session's shell, not reset (that takes
    ~1 s here); `refused.names()` are the names it left."""
    shell.user_ns.pop("x", None)

    class Run:
        def __call__(self, magic, line, cell):
            with pytest.raises(UsageError) as err:
                shell.run_cell_magic(magic, line, cell)
            assert "x" not in shell.user_ns  # (refused before anything changed)
            return str(err.value)

    return Run()
ROOT = pathlib.Path(__file__).resolve().parents[1]


def words(text):
    return " ".join(text.split())


def help_of(ip, magic):
    return ip.find_cell_magic(magic).__doc__


def groups_of(doc):
    """{group title: its text} of a magic's help."""
    titles = "|".join(re.escape(t) for t in GROUPS.values())
    parts = re.split(rf"^({titles}):$", doc, flags=re.M)
    return dict(zip(parts[1::2], parts[2::2]))


# -- help ---------------------------------------------------------------------------------
@pytest.mark.parametrize("magic", ["descend", "tfgrad"])
def test_help_reads_like_a_man_page(shell, magic):
    doc = help_of(shell, magic)
    assert doc.startswith(f"%%{magic} [NAME"), doc[:80]  # (IPython's own: '::' and '%descend')
    assert "::" not in doc.splitlines()[0] and not re.search(rf"(?<!%)%{magic}\b", doc)
    first_group = doc.index(f"{GROUPS['run']}:")
    about = doc[:first_group]
    assert "target" in about and f"    %%{magic} x" in about  # what the cell is, the target, an example
    assert doc.index(GROUPS["run"]) < doc.index(GROUPS["output"])


@pytest.mark.parametrize("magic, option", [("descend", o) for o in DESCEND] + [("tfgrad", o) for o in TFGRAD],
                         ids=lambda v: getattr(v, "dest", v))
def test_help_lists_every_option_in_its_group_with_its_default(shell, magic, option):
    group = groups_of(help_of(shell, magic))[GROUPS[option.group]]
    assert words(option.text()) in words(group)
    shown = option.flags[0] if option.flags else option.metavar
    assert re.search(rf"^  {re.escape(shown)}(\s|,)", group, re.M), group
    if option.default is not None and option.default not in (0, "auto") and not option.flag:
        assert f"default {option.default}" in words(group)  # (the default from its one declaration)


@pytest.mark.parametrize("option", [o for o in DESCEND if o.setting], ids=lambda o: o.dest)
def test_help_lists_every_config_setting(shell, option):
    doc = help_of(shell, "descend")
    assert f"%config TfMagics.{option.setting} = {option.example}" in doc
    shell.run_line_magic("config", "TfMagics")  # (prints; listed under the class's name)


def test_config_lists_every_setting(shell, capsys):
    shell.run_line_magic("config", "TfMagics")
    listed = capsys.readouterr().out
    for option in DESCEND:
        if option.setting:
            assert f"TfMagics.{option.setting}" in listed


# -- defaults from one place ------------------------------------------------------------------
def test_a_bare_cell_runs_with_the_declared_defaults(ip, run):
    res = run("descend", "x=10.0 --no-widgets", CELL)
    assert (res.eta, res.steps, res.optimizer) == (declared.ETA, declared.STEPS, declared.OPTIMIZER)


def test_find_eta_and_data_take_their_declared_defaults(ip, run):
    import numpy as np

    ip.user_ns["X"] = np.linspace(-1, 1, 100, dtype=np.float32)[:, None]
    ip.user_ns["Y"] = 2 * ip.user_ns["X"][:, 0]
    sweep = run("descend", "w=0.0 --find-eta", "loss = tf.reduce_mean((X[:, 0] * w - Y) ** 2)")
    assert len(sweep.etas) <= declared.FIND_ETA_STEPS and sweep.etas[0] == pytest.approx(1e-7)
    fit = run("descend", "w=0.0 --data X,Y --epochs 1 --no-widgets", "loss = tf.reduce_mean((X[:, 0] * w - Y) ** 2)")
    assert fit.steps == -(-100 // declared.BATCH_SIZE)


# -- a mistyped flag -----------------------------------------------------------------------
def misspellings(flag):
    """Typing slips of a flag: two letters swapped, one left out, one doubled."""
    bare = flag.lstrip("-")
    out = set()
    for i in range(len(bare) - 1):
        out.add(bare[:i] + bare[i + 1] + bare[i] + bare[i + 2:])
    for i in range(len(bare)):
        out.add(bare[:i] + bare[i + 1:])
        out.add(bare[:i] + bare[i] + bare[i:])
    every = [f.lstrip("-") for f in flags(DESCEND) + flags(TFGRAD)]
    # (argparse takes a unique prefix of a flag as the flag itself: those are not slips)
    return sorted(f"--{s}" for s in out if len(s) > 1 and not any(e.startswith(s) for e in every)
                  and "-" not in (s[0], s[-1]))


CASES = [(magic, flag, slip) for magic, options in (("descend", DESCEND), ("tfgrad", TFGRAD))
         for flag in flags(options) if flag.startswith("--") for slip in misspellings(flag)]


@pytest.mark.parametrize("magic, flag, slip", CASES)
def test_a_mistyped_flag_gets_did_you_mean(refused, magic, flag, slip):
    assert refused(magic, f"x=1.0 {slip} 5", "y = x * x") == f"unknown option {slip}: did you mean {flag}?"


def test_the_issues_slips(refused):
    for slip, flag in (("--stesp", "--steps"), ("--eat", "--eta"), ("--optimiser", "--optimizer"),
                       ("--Steps", "--steps"), ("--no_widgets", "--no-widgets"), ("-eta", "--eta"),
                       ("--step=5", "--steps"), ("--stesp=5", "--steps")):
        said = refused("descend", f"x=1.0 {slip} 3", CELL)
        assert said == f"unknown option {slip.partition('=')[0]}: did you mean {flag}?" or (
            slip == "--step=5" and said.startswith("unrecognized")), said
    assert refused("descend", "x=1.0 --zzzzzz", CELL) == "unknown option --zzzzzz: the options are listed by %%descend?"


# -- what excludes what ----------------------------------------------------------------------
GIVE = {"find_eta": "--find-eta", "compare": "--compare eta=0.1,0.2", "restarts": "--restarts 2",
        "eta_schedule": "--eta-schedule prev", "eta": "--eta 0.2", "data": "--data X,Y", "jit": "--jit on",
        "batch_size": "--batch-size 4", "epochs": "--epochs 2", "steps": "--steps 5", "strategy": "--strategy mirrored",
        "device": "--device CPU:0", "validate": "--validate Xv,Yv", "logdir": "--logdir /tmp/tfmagic-logs",
        "landscape": "--landscape",
        "sharpness": "--sharpness 10"}


def _given(when):
    return "--data xb,yb=ds" if when.dataset else GIVE[when.dest]


@pytest.mark.parametrize("one, other, why", EXCLUDES, ids=lambda v: str(v)[:30])
@pytest.mark.parametrize("order", [1, -1])
def test_every_exclusion_is_refused_with_its_message(refused, one, other, why, order):
    options = [_given(one), _given(other)][::order]
    if {one.dest, other.dest} & {r[0].dest for r in REQUIRES} and "data" not in (one.dest, other.dest):
        options.append(GIVE["data"])  # (what they need, so only the exclusion is wrong)
    assert refused("descend", f"x=-5:5 {' '.join(options)}", CELL) == why.format(eta_schedule="prev", ds="ds")


@pytest.mark.parametrize("one, other, why", REQUIRES, ids=lambda v: str(v)[:30])
def test_every_option_that_needs_another_says_so(refused, one, other, why):
    assert refused("descend", f"x=1.0 {_given(one)}", CELL) == why


# -- bad values, on the line and with %config ------------------------------------------------
BAD = {  # option -> (bad values, what the message says)
    "eta": (["0", "-1", "nan", "inf", "1e-50"], "eta"),
    "steps": (["0", "-3"], "must be a positive whole number"),
    "optimizer": (["adamm", "SGD", "lbfgs"], "unknown optimizer"),
    "tol": (["0", "-0.001"], "must be a positive number"),
    "pace": (["0", "-2", "inf"], "is steps per second"),
    "print_every": (["-1"], "must be 0 or more"),
    "seed": (["-1"], "must be 0 or more"),
    "epochs": (["0", "-1"], "must be a positive whole number"),
    "restarts": (["-1"], "takes a positive N"),
}
LINE_CASES = [(dest, value, said) for dest, (values, said) in BAD.items() for value in values]


@pytest.mark.parametrize("dest, value, said", LINE_CASES)
def test_a_bad_value_on_the_line_is_refused(refused, dest, value, said):
    option = declared.DECLARED[dest]
    extra = " --data X,Y" if dest == "epochs" else ""
    message = refused("descend", f"x=1.0 {option.name} {value}{extra}", CELL)
    assert said in message and (message.startswith(option.name) or dest == "optimizer"), message


CONFIG_BAD = {  # setting -> (a good value, bad values, what the message says)
    "eta": ("0.05", ["0.0", "-1", "float('nan')", "float('inf')", "'fast'"], "eta"),
    "steps": ("7", ["0", "-5", "'many'"], "steps"),
    "optimizer": ("'adam'", ["'adamm'", "'Adam'", "''"], "unknown optimizer"),
    "pace": ("30", ["0", "-1", "float('inf')"], "pace"),
    "device": ("'CPU:1'", ["'CPU-0'", "'gpu 0'", "'/device:'"], "not a device name"),
    "widgets": ("False", ["'yes'", "2"], "widgets"),
}
CONFIG_CASES = [(name, good, bad, said) for name, (good, bads, said) in CONFIG_BAD.items() for bad in bads]


@pytest.fixture
def magics(ip):
    magics = ip.magics_manager.registry["TfMagics"]
    yield magics
    for name in CONFIG_BAD:
        setattr(magics, name, magics.traits()[name].default())
    ip.config.pop("TfMagics", None)


@pytest.mark.parametrize("name, good, bad, said", CONFIG_CASES)
def test_a_bad_config_value_is_refused_at_once_and_the_old_one_stays(ip, magics, caplog, name, good, bad, said):
    ip.run_line_magic("config", f"TfMagics.{name} = {good}")
    kept = getattr(magics, name)
    with caplog.at_level(logging.ERROR):
        ip.run_line_magic("config", f"TfMagics.{name} = {bad}")
    assert getattr(magics, name) == kept
    assert said in caplog.text and "TfMagics" in caplog.text, caplog.text
    assert "Traceback" not in caplog.text
    # the refused value is not left in the config, where it would refuse every later %config
    other = "steps" if name != "steps" else "eta"
    caplog.clear()
    ip.run_line_magic("config", f"TfMagics.{other} = {CONFIG_BAD[other][0]}")
    assert caplog.text == "" and str(getattr(magics, other)) == CONFIG_BAD[other][0].strip("'")
    assert getattr(magics, name) == kept


def test_the_issues_config_typo_names_the_optimizers(ip, magics, caplog):
    with caplog.at_level(logging.ERROR):
        ip.run_line_magic("config", "TfMagics.optimizer = 'adamm'")
    assert caplog.messages == [f"TfMagics.optimizer: unknown optimizer 'adamm'; choose one of: {', '.join(OPTIMIZERS)}"]
    assert magics.optimizer == declared.OPTIMIZER


def test_a_config_device_is_used_and_the_line_still_wins(ip, run, magics):
    ip.run_line_magic("config", "TfMagics.device = 'CPU:1'")
    assert run("descend", "x=10.0 --steps 3 --no-widgets", CELL).engine.device.endswith("CPU:1")
    assert run("descend", "x=10.0 --steps 3 --no-widgets --device CPU:0", CELL).engine.device.endswith("CPU:0")
    assert run("tfgrad", "x", CELL).tensors  # (%%tfgrad reads it too)


def test_unknown_optimizer_is_worded_once(ip, magics, caplog):
    sentence = f"unknown optimizer 'adamm'; choose one of: {', '.join(OPTIMIZERS)}"
    for line in ("--optimizer adamm", "--compare optimizer=sgd,adamm"):
        with pytest.raises(UsageError) as err:
            ip.run_cell_magic("descend", f"x=1.0 {line}", CELL)
        assert str(err.value) == sentence
    with caplog.at_level(logging.ERROR):
        ip.run_line_magic("config", "TfMagics.optimizer = 'adamm'")
    assert caplog.messages == [f"TfMagics.optimizer: {sentence}"]
    hits = [p for p in (ROOT / "tfmagic").rglob("*.py") if "unknown optimizer" in p.read_text()]
    assert [p.relative_to(ROOT).as_posix() for p in hits] == ["tfmagic/descent/optimizers.py"]


# -- the run reads its options, never writes them ----------------------------------------------
def test_nothing_writes_into_the_parsed_options():
    """No `args.steps = ...` anywhere (on main: magics.py, runs.py, the option modules wrote
    into the parsed line, so the order of calls decided which value won)."""
    writes = []
    for path in (ROOT / "tfmagic").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            targets = node.targets if isinstance(node, ast.Assign) else [getattr(node, "target", None)]
            for target in targets:
                if isinstance(target, ast.Attribute) and isinstance(target.value, ast.Name) \
                        and target.value.id in ("args", "line", "parsed"):
                    writes.append(f"{path.name}:{node.lineno}")
    assert writes == []


def test_the_options_object_is_frozen():
    import dataclasses

    from tfmagic.options.descend import DescendOptions
    from tfmagic.options.tfgrad import TfgradOptions

    assert DescendOptions.__dataclass_params__.frozen and TfgradOptions.__dataclass_params__.frozen
    names = {f.name for f in dataclasses.fields(DescendOptions)}
    assert {o.dest for o in DESCEND} - {"batch_size", "epochs", "validate", "eta_schedule"} <= names
