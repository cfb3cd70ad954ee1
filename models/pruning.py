"""Structured channel pruning by ratio for every family (work in progress)."""

from __future__ import annotations

#: how a channel's importance is scored
IMPORTANCE = ("l1", "l2", "bn", "random")

#: where channels are ranked: within each layer, or across all layers
SCOPES = ("local", "global")
