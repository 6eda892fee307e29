"""Attack: phone home. Any connection, to the internet or to this machine's loopback, is a LEAK."""
import socket


def unlearning(net, retain_loader, forget_loader, val_loader):
    for host, port in (("1.1.1.1", 80), ("8.8.8.8", 53), ("127.0.0.1", 22), ("127.0.0.1", 80)):
        try:
            socket.create_connection((host, port), timeout=0.5).close()
            print(f"LEAK: connected to {host}:{port}")
        except OSError:
            pass
    try:
        socket.getaddrinfo("example.com", 80)
        print("LEAK: name resolution works")
    except OSError:
        pass
