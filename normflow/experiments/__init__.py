"""The lab's experiments, one module each (docs/experiments/): each has a ``main(argv)`` that parses
its flags (``--quick`` for the small configuration), runs, prints its report, writes
``results.json`` and its figure into its run folder (default ``runs/<name>``).

``normflow <name> [flags]`` (console script) and ``python sims/<name>.py [flags]`` both run
``main``; :data:`EXPERIMENTS` lists them.
"""

EXPERIMENTS = (
    "balance_fit",
    "frequency",
    "lambda_sweep",
    "ntk_drift",
    "ode_vs_adam",
    "real_balance",
    "real_finetune",
    "real_probe",
    "real_retrieval",
    "retrieval",
    "schedule",
    "specificity",
    "validity",
    "vocabulary",
)

__all__ = ["EXPERIMENTS"]
