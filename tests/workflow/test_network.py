import socket

import pytest


def test_network_connections_are_refused():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock, pytest.raises(RuntimeError, match="network"):
        sock.connect(("192.0.2.1", 9))  # TEST-NET-1: never routed; loopback stays allowed
