"""The spinnaker2 backend."""
