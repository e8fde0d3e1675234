"""Whole-trace analyses that look across threads rather than at one event: lock order (``lockorder``), the fence
wait-for graph (``fencewait``), coherency races (``races``) and predicted schedules (``predict``); ``common`` holds
what they share."""

from __future__ import annotations

from checker.analysis.lockorder import LOCK_ORDER_CYCLE, LOCK_ORDER_INVERSION, LockOrderGraph, LockOrderResult, analyze

__all__ = ["LOCK_ORDER_CYCLE", "LOCK_ORDER_INVERSION", "LockOrderGraph", "LockOrderResult", "analyze"]
