"""Encode each image once per GRPO group (issue 7). Interim: behaves exactly like stock TRL for now."""

from trl import GRPOTrainer


class GroupSharedGRPOTrainer(GRPOTrainer):
    """Drop-in subclass of ``trl.GRPOTrainer`` (trl 1.16.0); the sharing itself lands with issue 7."""
