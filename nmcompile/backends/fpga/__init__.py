"""The fpga backend."""
