"""`python -m tfmagic.worker NOTEBOOK.ipynb`: one worker of a multi-worker run, from the command line.

Runs the notebook's code cells in order (%%descend included) in an IPython shell with tfmagic
loaded and the live widgets off, as the notebook would run on the chief; the cluster and this
worker's place in it come from TF_CONFIG. The chief's panel steers the run (eta, Pause, Play,
Stop: descent/cluster_controls.py). Exit codes: 0 done, 1 a cell failed, 2 bad input, 130 Ctrl-C.
"""

import json
import os
import sys

USAGE = "usage: python -m tfmagic.worker NOTEBOOK.ipynb   (with TF_CONFIG set for this worker)"
TF_CONFIG_EXAMPLE = ('TF_CONFIG=\'{"cluster": {"worker": ["host1:12345", "host2:12345"]}, '
                     '"task": {"type": "worker", "index": 1}}\'')


class BadInput(Exception):
    """What is wrong with the command line, TF_CONFIG or the notebook: one short line."""


def check_tf_config(text):
    """The task this worker is, from TF_CONFIG's text; raises BadInput saying what is wrong."""
    if not text:
        raise BadInput(f"TF_CONFIG is not set: it says where every worker is and which one this is, e.g. {TF_CONFIG_EXAMPLE}")
    try:
        config = json.loads(text)
    except ValueError as err:
        raise BadInput(f"TF_CONFIG is not JSON ({err}): e.g. {TF_CONFIG_EXAMPLE}") from None
    cluster, task = (config.get("cluster"), config.get("task")) if isinstance(config, dict) else (None, None)
    if not isinstance(cluster, dict) or not isinstance(task, dict) or "type" not in task or "index" not in task:
        raise BadInput(f'TF_CONFIG needs "cluster" and "task" (its "type" and "index"): e.g. {TF_CONFIG_EXAMPLE}')
    hosts = cluster.get(task["type"])
    if not isinstance(hosts, list) or not isinstance(task["index"], int) or not 0 <= task["index"] < len(hosts):
        raise BadInput(f"TF_CONFIG's task {task['type']} {task['index']} is not in its cluster {cluster}")
    return task


def code_cells(path):
    """The notebook's code cells' sources, in order; raises BadInput for a missing or unreadable file."""
    if not os.path.isfile(path):
        raise BadInput(f"no notebook at {path}")
    try:
        with open(path, encoding="utf-8") as f:
            cells = json.load(f)["cells"]
        return ["".join(c["source"]) if isinstance(c["source"], list) else c["source"]
                for c in cells if c["cell_type"] == "code"]
    except (ValueError, KeyError, TypeError) as err:
        raise BadInput(f"{path} is not a notebook (.ipynb JSON with cells): {type(err).__name__}: {err}") from None


def run_cells(cells):
    """Run the cells in a fresh shell; returns (the number of the cell that failed, or None)."""
    from IPython.core.interactiveshell import InteractiveShell

    shell = InteractiveShell.instance(colors="linux" if sys.stdout.isatty() else "nocolor")  # (a log file: no escapes)
    shell.InteractiveTB.set_mode("Minimal")  # a cell's error in one line, not a traceback wall
    shell.config.TfMagics.widgets = False  # no front end here: text progress (read when tfmagic loads)
    for number, source in enumerate(cells, 1):
        if "tfmagic" not in shell.extension_manager.loaded and ("%descend" in source or "%tfgrad" in source):
            shell.run_line_magic("load_ext", "tfmagic")  # (a notebook that never loads it: its profile did)
        result = shell.run_cell(source, store_history=True)
        if not result.success:
            return number
    return None


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    try:
        if len(argv) != 1 or argv[0].startswith("-"):
            raise BadInput(USAGE)
        task = check_tf_config(os.environ.get("TF_CONFIG"))
        cells = code_cells(argv[0])
    except BadInput as err:
        print(f"tfmagic.worker: {err}", file=sys.stderr)
        return 2
    print(f"tfmagic.worker: {task['type']} {task['index']} runs {len(cells)} code cells of {argv[0]}", flush=True)
    try:
        failed = run_cells(cells)
    except KeyboardInterrupt:
        print("tfmagic.worker: interrupted", file=sys.stderr)
        return 130
    if failed is not None:
        print(f"tfmagic.worker: code cell {failed} of {argv[0]} failed (its error above); the cells after it did not run",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
