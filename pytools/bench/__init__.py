"""The training benchmark (`invoke bench`): what one training step costs a board, in memory
and in time, on samples of the model's own kind at a learning rate that does not diverge.

    macs.py           multiply-accumulates of the forward layers and of every step operator
    memory.py         arena, its categories, linker RAM/flash and overflow (PEAK_FORMULA)
    samples.py        what the steps train on: --samples/--dataset through the train loader,
                      a model's own data set, or seeded inputs labelled by a forward pass
    learning_rate.py  the rate, checked on the host twin not to diverge
    measure.py        run_bench(): compile, link, run on the board; the whole step and its
                      parts from the same state and sample; the dispatch overhead
    report.py         the Markdown of a run, per-operator and per-layer tables, COUNT_NOTE
    suite.py          the named models and schemes behind BENCHMARKS.md (write_benchmarks)

The command line is `invoke bench` (tasks.py); there is no other.
"""

from typing import Any

from pytools.bench.macs import graph_macs, model_params, op_macs, step_macs
from pytools.bench.measure import KERNELS, granularity, kernel_variant, reference_kernels, run_bench
from pytools.bench.memory import PEAK_FORMULA, live_tensors
from pytools.bench.report import COUNT_NOTE, comparison_rows, layer_table, markdown, per_layer
from pytools.bench.samples import Samples

__all__ = [
    "COUNT_NOTE",
    "KERNELS",
    "PEAK_FORMULA",
    "Samples",
    "comparison_rows",
    "granularity",
    "graph_macs",
    "kernel_variant",
    "layer_table",
    "live_tensors",
    "markdown",
    "model_params",
    "op_macs",
    "per_layer",
    "reference_kernels",
    "run_bench",
    "step_macs",
    "write_benchmarks",
]


def write_benchmarks(*args: Any, **kwargs: Any) -> dict[str, Any]:
    """suite.write_benchmarks (imported when called: the suite pulls in the zoo's builders)."""
    from pytools.bench.suite import write_benchmarks as write

    return write(*args, **kwargs)
