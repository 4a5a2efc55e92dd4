"""The loihi2 backend."""
