"""Replay of training segments (the engine lives in :mod:`pol.replay`, shared with the recorder's
self-check, so that a recorder and a verifier run exactly the same step code)."""

from pol.replay import BatchSource, Replayer, first_difference, replay_digests

__all__ = ["BatchSource", "Replayer", "first_difference", "replay_digests"]
