"""%%descend's --data, --batch-size, --epochs and --validate: checked against the
namespace before anything changes, into a data.DataSpec (or None without --data), with
the steps that --epochs asks for. (What excludes what: exclusions.py.)"""

import numpy as np
from IPython.core.error import UsageError

from tfmagic.options.declared import BATCH_SIZE


def _names(option, text):
    names = [n.strip() for n in (text or "").split(",") if n.strip()]
    bad = [n for n in names if not n.isidentifier()]
    if not names or bad:
        raise UsageError(f"{option} takes comma-separated names, e.g. {option} X,Y; got {text!r}")
    if len(set(names)) < len(names):
        raise UsageError(f"{option} names {', '.join(n for n in names if names.count(n) > 1)} twice")
    return names


def _ragged(value):
    """Where a list's rows first differ in length ('row 0 has 2, row 3 has 1'), or ''."""
    try:
        lengths = [len(row) for row in value]
    except TypeError:
        return ""
    first = next((i for i, k in enumerate(lengths) if k != lengths[0]), None)
    return "" if first is None else f"row 0 has {lengths[0]}, row {first} has {lengths[first]}"


def _as_array(option, name, value, tf):
    """The samples of `value` as a numpy array or tensor (checked: one shape, a number
    dtype, every number finite); UsageError with one line saying what is wrong."""
    kind = type(value).__name__
    if isinstance(value, tf.RaggedTensor):
        raise UsageError(f"{option}: {name} is a tf.RaggedTensor (rows of different lengths); the steps take "
                         f"batches of one shape: pad it first, e.g. {name} = {name}.to_tensor()")
    if isinstance(value, tf.SparseTensor):
        raise UsageError(f"{option}: {name} is a tf.SparseTensor; make it dense first: {name} = tf.sparse.to_dense({name})")
    if isinstance(value, tf.Variable) or not (tf.is_tensor(value) or isinstance(value, (np.ndarray, list, tuple))
                                             or hasattr(value, "__array__")):
        raise UsageError(f"{option}: {name} is a {kind}, not an array or tensor of samples")
    array = value.numpy() if tf.is_tensor(value) else value
    if not isinstance(array, np.ndarray):  # (a list, a pandas frame, ...)
        try:
            array = np.asarray(array)
        except ValueError:
            array = np.asarray(value, dtype=object) if isinstance(value, (list, tuple)) and _ragged(value) else None
            if array is None:
                raise UsageError(f"{option}: {name} ({kind}) has rows of different shapes; give one row per sample, "
                                 "all of one shape") from None
    if array.dtype == object:  # (rows of different lengths, or Python objects)
        try:
            array = np.array(array.tolist())
        except ValueError:
            pass
        if array.dtype == object:
            where = _ragged(array) if array.ndim == 1 else ""
            kind = "object array" if isinstance(value, np.ndarray) else kind
            what = f"a ragged {kind} (its rows have different lengths: {where})" if where else f"a {kind} of Python objects"
            raise UsageError(f"{option}: {name} is {what}; the steps take batches of one shape: pad the rows to one "
                             f"length (e.g. keras.utils.pad_sequences({name}, dtype='float32')) or give a number array")
    if array.dtype.kind not in "biufcSU":
        raise UsageError(f"{option}: {name} holds {array.dtype} values; give numbers (or strings)")
    if not array.shape:
        raise UsageError(f"{option}: {name} is a single number; give an array with one row per sample")
    if not len(array):
        raise UsageError(f"{option}: {name} has no rows; give an array with one row per sample")
    if array.dtype.kind in "fc" and not np.isfinite(array).all():
        bad = ~np.isfinite(array.reshape(len(array), -1)).all(axis=1)
        rows = np.flatnonzero(bad)
        what = "NaN" if np.isnan(array[rows[0]]).any() else "inf"
        more = f" (and {len(rows) - 1} more row{'s' if len(rows) > 2 else ''} with NaN or inf)" if len(rows) > 1 else ""
        raise UsageError(f"{option}: {name} has {what} in row {rows[0]}{more}: the loss would not be finite at the step "
                         f"that takes it. Drop those rows first: keep = np.isfinite({name}.reshape(len({name}), -1))"
                         f".all(axis=1), then {name}[keep] and the same rows of the other arrays")
    return value if tf.is_tensor(value) else array


def _arrays(option, names, namespace, tf):
    arrays = {}
    for name in names:
        if name not in namespace:
            raise UsageError(f"{option}: name '{name}' is not defined")
        arrays[name] = _as_array(option, name, namespace[name], tf)
    lengths = {n: int(v.shape[0]) for n, v in arrays.items()}
    if len(set(lengths.values())) > 1:
        listed = ", ".join(f"{n} has {k}" for n, k in lengths.items())
        raise UsageError(f"{option}: the arrays must have one row per sample, the same number each; {listed}")
    return arrays, next(iter(lengths.values()))


def _dataset(option, text, namespace, tf):
    """(names, the dataset, its batches in one pass or None when endless) for NAMES=DS."""
    names_text, _, ds_name = text.partition("=")
    names = _names(option, names_text)
    ds_name = ds_name.strip()
    ds = namespace.get(ds_name)
    if not isinstance(ds, tf.data.Dataset):
        what = f"{ds_name} is a {type(ds).__name__}" if ds_name in namespace else f"name '{ds_name}' is not defined"
        raise UsageError(f"{option} {text}: {what}; after = name a tf.data.Dataset of batches, e.g. "
                         f"train = tf.data.Dataset.from_tensor_slices((X, Y)).batch(32), then {option} {names_text}=train")
    spec = ds.element_spec
    if isinstance(spec, dict):
        parts = set(spec)
        if parts != set(names):
            raise UsageError(f"{option}: {ds_name}'s elements have the keys {', '.join(sorted(parts))}; "
                             f"name those: {option} {','.join(sorted(parts))}={ds_name}")
    else:
        count = len(spec) if isinstance(spec, (tuple, list)) else 1
        if count != len(names):
            raise UsageError(f"{option}: each element of {ds_name} holds {count} tensor{'s' if count != 1 else ''}, "
                             f"but {len(names)} name{'s are' if len(names) != 1 else ' is'} given ({', '.join(names)})")
    if not all(isinstance(s, tf.TensorSpec) for s in tf.nest.flatten(spec)) or any(
            isinstance(s, (tuple, list, dict)) for s in (spec.values() if isinstance(spec, dict) else spec
                                                          if isinstance(spec, (tuple, list)) else ())):
        raise UsageError(f"{option}: {ds_name}'s elements are nested; give a dataset of (tensor, tensor, ...) tuples")
    cardinality = int(ds.cardinality())  # (TensorFlow's: or INFINITE_ or UNKNOWN_CARDINALITY)
    if cardinality == 0:
        raise UsageError(f"{option}: {ds_name} is empty")
    return names, ds, cardinality


def shuffle_seed(seed, dataset=False, strategy=None):
    """The seed of --data's sample order: --seed; else 0 where every worker must take the same
    batches (a strategy) or the dataset shuffles itself; else a new one each run."""
    if seed is not None:
        return seed
    if dataset or strategy is not None:
        return 0
    return int(np.random.default_rng().integers(2**31))


def data_spec(line, namespace, tf, strategy=None):
    """(DataSpec, the steps --epochs asks for or None); (None, None) without --data; UsageError
    for anything that does not fit."""
    if not line.data:
        return None, None
    if "=" in line.data:
        return _dataset_spec(line, namespace, tf)
    from tfmagic.descent.data import DataSpec

    names = _names("--data", line.data)
    arrays, n = _arrays("--data", names, namespace, tf)
    batch = BATCH_SIZE if line.batch_size is None else line.batch_size
    if not 0 < batch <= n:
        raise UsageError(f"--batch-size must be between 1 and the {n} samples of {names[0]}, got {batch}")
    validate = None
    if line.validate:
        vnames = _names("--validate", line.validate)
        if len(vnames) != len(names):
            raise UsageError(f"--validate names one array for each of --data's ({', '.join(names)}), "
                             f"in the same order; got {len(vnames)}")
        varrays, _ = _arrays("--validate", vnames, namespace, tf)
        for name, vname in zip(names, vnames):
            if tuple(np.shape(varrays[vname]))[1:] != tuple(np.shape(arrays[name]))[1:]:
                raise UsageError(f"--validate: {vname} has rows of shape {tuple(np.shape(varrays[vname]))[1:]}, "
                                 f"but {name}'s are {tuple(np.shape(arrays[name]))[1:]}")
        validate = {name: varrays[vname] for name, vname in zip(names, vnames)}
    steps = None if line.epochs is None else line.epochs * -(-n // batch)
    return DataSpec(arrays, batch, shuffle_seed(line.seed, strategy=strategy), validate), steps


def _dataset_spec(line, namespace, tf):
    """--data NAMES=DS: a batched tf.data.Dataset, an epoch one pass over it."""
    from tfmagic.descent.data import DataSpec

    names, ds, epoch_steps = _dataset("--data", line.data, namespace, tf)
    ds_name = line.data.partition("=")[2].strip()
    if epoch_steps == tf.data.UNKNOWN_CARDINALITY:  # (a generator, a filter: counting could never end)
        if line.epochs is not None or line.steps is None:
            raise UsageError(f"TensorFlow does not know how many batches {ds_name} has (a generator or a filter): "
                             f"give --steps N, or tell it: {ds_name} = {ds_name}.apply("
                             "tf.data.experimental.assert_cardinality(K))")
        epoch_steps = None  # (no epochs: one step a batch, --steps of them)
    elif epoch_steps == tf.data.INFINITE_CARDINALITY:
        epoch_steps = None
    validate = None
    if line.validate:
        if "=" not in line.validate:
            raise UsageError("with --data NAMES=DS, give --validate NAMES=VALIDATION_DS, the same names first")
        vnames, validate, _ = _dataset("--validate", line.validate, namespace, tf)
        if vnames != names:
            raise UsageError(f"--validate names {', '.join(vnames)}; give --data's names, in its order: {', '.join(names)}")
    steps = None
    if line.epochs is not None:
        if epoch_steps is None:
            raise UsageError(f"--epochs: {ds_name} never ends (it repeats); give --steps")
        steps = line.epochs * epoch_steps
    elif epoch_steps is None and line.steps is None:
        raise UsageError(f"{ds_name} never ends (it repeats): give --steps N")
    spec = DataSpec(dict.fromkeys(names), None, shuffle_seed(line.seed, dataset=True),
                    dict.fromkeys(names) if validate is not None else None,
                    dataset=ds, epoch_steps=epoch_steps, validate_dataset=validate)
    return spec, steps
