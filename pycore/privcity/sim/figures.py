"""What each row of ``privcity simulate``'s table means, in one place: ``privcity simulate
--help`` prints it, and the README's "Reading the table" section says the same (a test checks
that every row the table prints is defined in both)."""
from __future__ import annotations

import textwrap

__all__ = ["FIGURES", "figures_help"]

#: Row label -> its definition (columns: centralized, FL, FL + DP).
FIGURES: dict[str, str] = {
    "test accuracy": "share of the held-out test records the model classifies right",
    "test r2": "coefficient of determination on the held-out test records (1 is perfect, 0 is "
               "predicting the mean; 'diverged' when the predictions blew up, with the cause)",
    "epsilon (delta)": "FL + DP's differential privacy, per device: adding or removing one "
                       "device's records (all of its rows; for a CSV without --device-column, "
                       "a device is a block of rows) changes what users of the released model "
                       "see by at most this epsilon, except with probability delta",
    "epsilon vs servers": "with --secure-aggregation, the epsilon per device that holds "
                          "against the aggregator and the gateways too (they see who took "
                          "part: no amplification by sampling)",
    "local epsilon": "local DP, per record: each device adds Laplace noise to its records' "
                     "sensitive fields before anything leaves it (--field-epsilon, --treatment); "
                     "it holds against everyone and applies to all three models",
    "rounds run": "federated rounds trained (fewer when FL + DP's budget ran out first)",
    "bytes sent": "bytes the devices sent in all, sealed (AES-256-GCM envelopes, with secure "
                  "aggregation its key exchange too); centralized: uploading every raw record "
                  "once, sealed the same way",
    "bytes / device / round": "bytes sent per device and round it took part in (centralized: "
                              "per device, once)",
    "wall time": "wall-clock seconds of each training (rank 0's view)",
    "device CPU / round": "mean CPU time of one device's local training in one round (its "
                          "share of the gateway's training threads)",
    "clip + seal p50 / p99": "median and 99th percentile, over device-rounds, of the wall time "
                             "of one device's privacy work after training: clipping its update "
                             "and sealing it in an envelope (its share of the gateway's batched "
                             "calls); it runs after training, so compare it with device CPU / "
                             "round, not add it in",
    "clip + secagg p50 / p99": "as clip + seal, with the secure-aggregation round in place of "
                               "sealing: masking, key agreement, signatures, Shamir shares",
    "privacy overhead": "mean clip + seal (or secagg) time / mean device CPU / round, in %: what "
                        "privacy adds to a device's work in a round ('-' where no device took "
                        "part)",
    "aggregation / round": "server time per round to open the envelopes (or combine the block "
                           "sums), aggregate and add the DP noise",
    "breach risk [95% CI]": "the best attack's success against what each design exposes (the "
                            "pooled raw records, the updates or sums, the model), with its 95% "
                            "interval ('~chance': the interval holds 0)",
    "leakage reduction": "breach risk's relative drop from centralized",
    "membership AUC (best)": "area under the ROC curve of the best membership-inference attack "
                             "(per record or per device; 0.5 is guessing)",
    "empirical epsilon >=": "the epsilon audit's lower bound at 95% confidence (canary devices); "
                            "it must stay below the accountant's epsilon",
}


def figures_help(width: int = 79) -> str:
    """The table's rows and their definitions, wrapped for ``--help``."""
    lines = ["The results table (columns: centralized, FL, FL + DP):"]
    for label, text in FIGURES.items():
        lines += textwrap.wrap(text, width, initial_indent=f"  {label}: ",
                               subsequent_indent="      ")
    return "\n".join(lines)
