"""Unlearning methods, each one short file over the shared loop (loop.py); see base.py for the contract."""

from orthograd_cli.methods import (finetune, gdr_gma, neggrad, neggrad_plus, orthograd, random_label, salun,
                                   scrub)

METHODS = {
    "orthograd": orthograd,
    "finetune": finetune,
    "neggrad": neggrad,
    "neggrad_plus": neggrad_plus,
    "random_label": random_label,
    "scrub": scrub,
    "salun": salun,
    "gdr_gma": gdr_gma,
}
# Methods that relabel samples, or distil class posteriors, are defined for classification only.
CLASSIFICATION_ONLY = {"random_label", "salun", "scrub"}


def check_method_fits_task(name: str, task: str) -> None:
    from orthograd_cli.errors import UsageError

    if task != "classification" and name in CLASSIFICATION_ONLY:
        raise UsageError(f"method '{name}' relabels samples or distils class posteriors, which only makes sense "
                         f"for classification, not '{task}'", "use orthograd, neggrad_plus, neggrad, gdr_gma or finetune")
