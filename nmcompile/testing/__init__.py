"""Tools for testing boards: the pytest plugin (`pytest --board URL`, nmcompile.testing.pytest_plugin) and a UDP
proxy that injects faults between a host and a board (nmcompile.testing.udp_faults)."""
